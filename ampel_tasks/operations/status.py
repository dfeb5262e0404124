"""Tasks status and history: what runs on burst now, and what ran before."""
from __future__ import annotations

import json as jsonlib


from ..config import console
from ..facts import drift, health, stackinputs, stacklist, state
from ..flow import run as runs
from .prune import size_text
from ..facts.site import Site


def status(c, json=False):
    """`invoke status` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c)
    data = status_data(r)
    if json:
        print(jsonlib.dumps(data, indent=2))
        return
    show_status(data)


def status_data(r) -> dict:
    current, manifest = state.running_version(r), state.running_manifest(r)
    adopted = state.adopt_running(r)  # (first: the archive's read below is for the running version)
    archive = runs.started(lambda: stackinputs.archive_status(r)) if current else None  # (transit's, meanwhile)
    s = r.settings
    listing = r.host(s.service_host.name).read(s.commands["list"], user=s.service_user, warn=True)
    services = stacklist.parse_list(listing.stdout).get(s.stack["name"], {})
    problems, changed = None, []
    if adopted:
        site = Site(r)
        problems = health.quick(r, site)
        facts = drift.read(site)
        changed = drift.drift(manifest, facts, site.env_file, site.image_path) if facts else []
    down = drift.stack_down(problems, services)
    return {
        "version": current, "since": manifest.get("ended"), "operator": manifest.get("operator"),
        "image_digest": manifest.get("image_digest"), "env": manifest.get("env"),
        "ampel_src": manifest.get("ampel_src"), "sources": manifest.get("sources") or {},
        "services": {k: v["replicas"] for k, v in services.items()},
        "healthy": problems == [] if problems is not None else None,
        "problems": problems or [],
        "stack": "down" if down else ("up" if problems == [] else "degraded" if problems else None),
        "drift": changed,
        "lock": state.State(r).lock_info(),
        "archive": archive.result() if archive else None,
    }


def show_status(data: dict) -> None:
    current, problems = data["version"], data["problems"]
    if not current:
        console.out("no deployment recorded on this service host yet")
    else:
        console.out(f"running {current} since {data['since']} (deployed by {data['operator']})")
        console.out(f"image digest {data['image_digest']}")
        for k, v in (data["env"] or {}).items():
            console.out(f"  {k}={v}")
        console.out("sources: " + (", ".join(f"{k} {v[:10]}" for k, v in sorted(data["sources"].items())) or "not recorded"))
    console.out("services configured: " + (", ".join(f"{k} x{v}" for k, v in sorted(data["services"].items())) or "none"))
    if data["stack"] == "down":
        console.out(f"the stack is down: no service of it runs (after a reboot, say); start {current} again with "
                    "`invoke up --same`")
    elif problems:
        console.out("health: " + "; ".join(problems))
    elif data["healthy"]:
        console.out("health: every service and replica of the stack file is up")
    for line in data["drift"]:
        console.out(f"drift: {line}")
    if data["lock"]:
        console.out(f"deploy lock held by {data['lock'].get('operator')} since {data['lock'].get('since')}")
    if data.get("archive"):
        console.out(archive_line(data["archive"]))


def archive_line(a: dict) -> str:
    """The archive in one line (pure)."""
    where = f"archive on {a['host']}" + (f" ({a['path']})" if a.get("path") else "")
    if not a["answers"]:
        return f"{where}: does not answer: {a['problem']}"
    return (f"{where}: answers, schema {a['version']}, {size_text(a['bytes'])}, "
            f"{size_text(a['free'])} free")


def history(c, json=False):
    """`invoke history` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c)
    manifests = state.State(r).manifests()
    if json:
        print(jsonlib.dumps(manifests, indent=2))
        return
    if not manifests:
        console.out("no deployments recorded yet")
    for m in manifests:
        prev = f" (after {m['previous']})" if m.get("previous") else ""
        arch = m.get("archive") or {}
        schema = f" archive schema {arch['version']}, {size_text(arch.get('bytes'))}" if arch.get("version") else ""
        backups = "".join(f"; backup before {b.get('before') or 'by hand'}: {b.get('path')}"
                          for b in m.get("archive_backups") or [])
        console.out(f"{m.get('version', '?'):12} {m.get('result', '?'):10.40} {m.get('operator', '?'):10} "
                    f"{m.get('started', '?')} -> {m.get('ended', '?')}{prev}{schema}{backups}")
