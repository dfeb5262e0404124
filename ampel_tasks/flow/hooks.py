"""A team's own checks and notices around a deploy: executables named in
ampel.hooks (pre_deploy, post_deploy, on_failure), run on the operator's machine.

pre_deploy runs once the deploy lock is taken, before the first change (a failure
stops the run); post_deploy after the manifest of a successful run is written;
on_failure with the error. All three run while the lock is held. Each gets the
run in AMPEL_* variables: AMPEL_EVENT, AMPEL_VERSION, AMPEL_RUNNING (the version
that ran before), AMPEL_OPERATOR, AMPEL_PLAN (the plan as JSON), AMPEL_CHANGED
(the steps that changed something), AMPEL_RESULT (ok / failed) and AMPEL_ERROR.
Under --dry they are printed, not run. A failing on_failure hook is reported and
never hides the original error.
"""
from __future__ import annotations

import json
import os
import subprocess

from ..config import console
from ..config.errors import DeployError

EVENTS = ("pre_deploy", "post_deploy", "on_failure")


def environment(r, event: str, error: str = "", running: str = "") -> dict:
    return {
        "AMPEL_EVENT": event,
        "AMPEL_VERSION": r.version or "",
        "AMPEL_RUNNING": running,
        "AMPEL_OPERATOR": r.settings.operator,
        "AMPEL_PLAN": json.dumps(r.outcome.plan),
        "AMPEL_CHANGED": ",".join(sorted(r.changed)),
        "AMPEL_RESULT": "failed" if error else ("ok" if event == "post_deploy" else ""),
        "AMPEL_ERROR": error,
    }


def run(r, event: str, error: str = "", running: str = "") -> None:
    """Run the hook of `event`, if one is configured; DeployError when it fails.
    `running`: the version that ran when the run began."""
    path = os.path.expanduser(r.settings.hooks[event])
    if not path:
        return
    if r.dry:
        console.command("local", f"{path}   ({event} hook: not run under --dry)")
        return
    console.step(f"hook {event}", path)
    try:
        p = subprocess.run([path], env=dict(os.environ, **environment(r, event, error, running)), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"{event} hook {path} could not run: {exc}") from None
    for line in p.stdout.splitlines():
        console.out(f"    | {line}")
    if p.returncode != 0:
        raise DeployError(f"{event} hook {path} failed with exit {p.returncode}")


def on_failure(r, error: str, running: str = "") -> None:
    try:
        run(r, "on_failure", error, running)
    except DeployError as exc:
        console.warn(f"{exc.text}; the deploy's own error follows")


def show_dry(r) -> None:
    """Under --dry: the hooks a real run would run."""
    for event in EVENTS:
        run(r, event, "" if event != "on_failure" else "(the error)")
