"""Tasks plan and deploy: the runbook as one decided run (status, history: status.py; rollback: rollback.py)."""
from __future__ import annotations

import json as jsonlib
import sys
import time


from ..config import console
from ..flow import plan as planning, run as runs
from . import readahead
from ..config.errors import DeployError
from ..steps import ORDER, runner


def plan(c, version=None, json=False, dry=False):
    """`invoke plan` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, version=version, dry=dry)
    v = r.require_version()
    in_deploy = "deploy" in r.steps
    steps = [s for s in ORDER if s in r.steps] if in_deploy else ORDER
    with readahead.reading(r):
        decisions = planning.combine({s: runner.decide(r, s) for s in steps}, forced=r.force)
    r.outcome.plan = [d.as_json() for d in decisions]  # for the hooks (AMPEL_PLAN)
    site = planning.site_summary(r.settings)
    if json and not in_deploy:
        print(jsonlib.dumps({"version": v, "site": site, "steps": [d.as_json() for d in decisions]}, indent=2))
        return
    planning.show(decisions, v, site)
    if in_deploy and not r.dry and not r.yes:
        _confirm(r, decisions)


def _confirm(r, decisions) -> None:
    """A terminal's yes to the plan (which also answers what a step would ask); off a
    terminal, a step that must be confirmed (a migration rewriting a table) stops the run here."""
    asked = [x for d in decisions if d.action == "run" for x in (d.data or {}).get("confirm", [])]
    if not sys.stdin.isatty():
        if asked:
            raise DeployError(f"{'; '.join(asked)}: a migration that rewrites a table needs --yes (or a terminal to "
                              "confirm); nothing was changed")
        return
    if all(d.action == "skip" for d in decisions):
        return
    answer = input("proceed with this plan? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise DeployError("deploy cancelled at the plan; nothing was changed")
    r.yes = True  # (the plan showed what the steps would ask)


def deploy(c, version=None, dry=False):
    """`invoke deploy` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, version=version, dry=dry)
    elapsed = time.time() - r.t0
    changed = [s for s in ORDER if s in r.changed]
    if r.dry:
        console.out(f"dry run of {r.version}: nothing was changed")
    elif changed:
        console.out(f"deployed {r.version} in {elapsed:.0f} s; changed: {', '.join(changed)}")
    else:
        console.out(f"{r.version} is up to date; nothing to do ({elapsed:.1f} s)")

