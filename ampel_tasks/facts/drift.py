"""What changed on the service host since the running deployment was recorded.

A deploy records fingerprints of what it leaves running (state.record): each host
copy's commit, the sha256 of dryrun.env, the image file and the schema marker. `status` reads the same
facts again, in one command, and names every difference: a copy moved or edited,
dryrun.env edited, the image file replaced, the stack down (after a reboot, say).
"""
from __future__ import annotations

import shlex
from typing import Dict, List, Optional

from . import sources

MARK = "@@sha "


def fingerprint_command(site) -> str:
    """One read: the host copies' state, then the sha256 of dryrun.env, the image
    file and the schema marker."""
    files = " ".join(shlex.quote(p) for p in (site.env_file, site.image_path, site.schema_marker))
    return (f"cd {shlex.quote(site.ampel_src)} 2>/dev/null && {{ {sources.STATUS}; }}; "
            f"for f in {files}; do echo \"{MARK}$(sha256sum \"$f\" 2>/dev/null | cut -d' ' -f1) $f\"; done")


def parse(text: str) -> dict:
    """{"copies": {name: Copy}, "sha256": {path: digest or ""}} from fingerprint_command's output."""
    lines = text.splitlines()
    shas = {}
    for line in lines:
        if line.startswith(MARK):
            digest, _, path = line[len(MARK):].partition(" ")
            shas[path] = digest
    status = "\n".join(line for line in lines if not line.startswith(MARK))
    return {"copies": sources.parse_status(status), "sha256": shas}


def read(site) -> Optional[dict]:
    res = site.service_host.fact(fingerprint_command(site), user=site.src_user)
    return parse(res.stdout) if res is not None else None


def fingerprints(facts: dict, site) -> dict:
    """What a manifest records of the facts: each copy's commit (what the deployment
    runs) and the digests that status and the next deploy compare with."""
    return {"sources": {name: c.head for name, c in facts["copies"].items()},
            "env_sha256": facts["sha256"].get(site.env_file, ""),
            "image_file_sha256": facts["sha256"].get(site.image_path, ""),
            "schema_marker": facts["sha256"].get(site.schema_marker) or None}


def drift(manifest: dict, facts: dict, env_file: str, image_file: str) -> List[str]:
    """Every difference between the manifest and the facts read now (pure)."""
    out = []
    recorded: Dict[str, str] = manifest.get("sources") or {}
    copies = facts["copies"]
    for name, commit in sorted(recorded.items()):
        c = copies.get(name)
        if c is None:
            out.append(f"host copy {name} is gone")
            continue
        if c.head != commit:
            out.append(f"host copy {name} moved from {commit[:10]} to {c.head[:10]} since the deploy")
        if c.dirty:
            out.append(f"host copy {name} has uncommitted changes in {', '.join(c.dirty[:5])}")
    for name in sorted(set(copies) - set(recorded)):
        out.append(f"host copy {name} was added since the deploy")
    for key, path, what in (("env_sha256", env_file, "dryrun.env"), ("image_file_sha256", image_file, "image file")):
        want, have = manifest.get(key), facts["sha256"].get(path)
        if want and not have:
            out.append(f"{what} {path} is gone")
        elif want and have != want:
            out.append(f"{what} {path} changed since the deploy")
    return out


def stack_down(problems: Optional[list], services) -> bool:
    """health.quick's problems say that not one of the stack's services runs."""
    return bool(problems) and bool(services) and all(f"{name}: not running" in problems for name in services)
