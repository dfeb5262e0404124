"""Task keys: a repo's deploy key, and its clone added to the image recipe."""
from __future__ import annotations

import difflib
import os
import subprocess
from pathlib import Path


from ..config import console
from ..facts import dockerfile
from ..flow import run as runs
from ..config.errors import DeployError


def keys(c, repo, alias=None, dir=None, kind="rsa", dry=False):
    """`invoke keys` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, dry=dry)
    s = r.settings
    org, name, alias, dir = _names(repo, alias, dir, kind, s.source["org"])
    docker_path, env_path = dockerfile.files(s.image_dir)
    keys_dir = s.image_dir / "deploy-keys"
    key = keys_dir / s.source["key_pattern"].format(alias=alias)
    clone = f"git clone git@{s.source['host_alias'].format(alias=alias)}:{org}/{name}.git /Ampel/{dir}"
    # both edits made (and checked) before anything is written
    edits = [(docker_path, dockerfile.add_clone_line(docker_path.read_text(), clone, f"/Ampel/{dir}")),
             (env_path, dockerfile.add_pip_editable(env_path.read_text(), f"/Ampel/{dir}"))]
    console.step("keys", f"deploy key {key.name} for {org}/{name} -> /Ampel/{dir}")
    _make_key(r, key, kind, alias)
    _ignore_keys(keys_dir, r.dry)
    if not [path for path, new in edits if _edit(r, path, new)]:
        console.note("the Dockerfile and environment.yml already include it; nothing to change")
    pub = key.with_name(key.name + ".pub")
    if pub.exists():
        console.out(pub.read_text().strip())
    console.note(f"paste the public key above into {s.source['keys_page'].format(org=org, repo=name)} (read access only)")


def _names(repo: str, alias, dir, kind: str, default_org: str) -> tuple:
    """(org, name, alias, dir), each checked, from what the operator typed."""
    org, _, name = repo.rpartition("/") if repo else ("", "", "")
    org, alias, dir = org or default_org, alias or name.lower(), dir or name.lower()
    for label, value in (("repo", name), ("org", org), ("alias", alias), ("dir", dir)):
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value) or value.startswith((".", "-")):
            raise DeployError(f"{label} {value!r} is not valid; expected something like ampel-contrib-foo")
    if "." in alias:
        raise DeployError(f"alias {alias!r} must not contain '.': the recipe reads it from id_rsa.<alias> with `cut -d. -f 3`")
    if kind not in ("rsa", "ed25519"):
        raise DeployError(f"--kind must be rsa or ed25519, got {kind!r}")
    return org, name, alias, dir


def _edit(r, path: Path, new: str) -> bool:
    """Write the file's new text (shown as a diff under --dry); True when it changes it."""
    old = path.read_text()
    if old == new:
        return False
    if r.dry:
        console.diff("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path), f"{path} (new)")))
    else:
        _atomic_write(path, new)
        console.note(f"edited {path}")
    return True


def _make_key(r, key: Path, kind: str, alias: str) -> None:
    if key.exists():
        console.note(f"{key} exists; keeping it")
    elif r.dry:
        console.command("local", f"ssh-keygen -t {kind}{' -b 4096' if kind == 'rsa' else ''} -N '' -f {key}")
    else:
        key.parent.mkdir(parents=True, exist_ok=True)
        argv = ["ssh-keygen", "-q", "-t", kind] + (["-b", "4096"] if kind == "rsa" else [])
        p = subprocess.run(argv + ["-N", "", "-C", f"deploy-key-{alias}", "-f", str(key)], capture_output=True, text=True)
        if p.returncode != 0:
            raise DeployError(f"ssh-keygen failed: {p.stderr.strip()}")
        os.chmod(key, 0o600)


def _ignore_keys(keys_dir: Path, dry: bool) -> None:
    ignore = keys_dir / ".gitignore"
    text = ignore.read_text() if ignore.exists() else ""
    if "id_*" not in text.split():
        if dry:
            console.command("local", f"add 'id_*' to {ignore}")
        else:
            _atomic_write(ignore, text + ("" if text.endswith("\n") or not text else "\n") + "id_*\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
