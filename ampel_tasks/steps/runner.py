"""The one runner of a runbook step: from the table (`STEPS`) and the step's own module
(`steps/<name>.py`), which offers

    decide_<name>(r) -> Decision | None  what the plan prints (None: not knowable yet)
    parts(r) -> iterable of Part          optional: a part per host, each decided when it
                                          is reached (default: the whole step, decided once)
    announce(r, part) -> str              optional: what acting does, for the run line
    act(r, part) -> str | None            carry out a part that runs (its summary result)
    act_together(r, parts)                instead of act: every running part at once (pull)
    skipped(r, part)                      optional: what a skip still does (the image reused)
    finish(r)                             optional: after every part

The runner prints each part's run or skip, applies --force where the table and the
part let it reach, takes the deploy lock before the first part that acts on a host
(`where` of the table: not for the steps on this machine), hands the part with the
decision it printed to the step, and writes the summary's row of a part on a host.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import replace

from ..config import console
from ..flow import run as runs, runrecord
from ..flow.plan import Decision, Part
from . import STEPS


def owner(name: str):
    """The module of step `name` (`steps/<name>.py`: the table's names are the modules')."""
    return importlib.import_module(f"{__package__}.{name}")


def task(c, name: str, version=None, dry=False, force=()) -> None:
    """`invoke <name>`: the run the task belongs to, then the step (its options and help:
    ampel_tasks/tasks/). `force`: steps a task's own --force flag names (image's)."""
    r = runs.start(c, version=version, dry=dry)
    if force:
        r.options = replace(r.options, force=r.options.force | frozenset(force))
    run(r, name)


def decide(r, name: str):
    """Step `name`'s own decision; where it fixes the deployment's target (the image's:
    the tag AMPEL_TAG names, a reused digest), the run takes that target from it here."""
    d = getattr(owner(name), f"decide_{name}")(r)
    if d is not None and d.target is not None:
        r.target = d.target
    return d


def run(r, name: str) -> None:
    """Carry out step `name`: each part run or skipped as decided, or forced."""
    mod = owner(name)
    parts = mod.parts(r) if hasattr(mod, "parts") else [Part(decide(r, name), name)]
    together = []
    for part in parts:
        if not acts(r, name, part):
            _skip(r, name, mod, part)
            continue
        if STEPS[name].where != "local":
            runrecord.lock(r)
        console.step(part.label, _doing(r, mod, part))
        if hasattr(mod, "act_together"):
            together.append(part)
        else:
            _act(r, name, mod, part)
    if together:
        mod.act_together(r, together)
    if hasattr(mod, "finish"):
        mod.finish(r)


def acts(r, name: str, part: Part) -> bool:
    """Whether a part acts: its decision runs (or is unknown), or --force reaches it."""
    d = part.decision
    return d is None or d.action != "skip" or forced(r, name, part)


def forced(r, name: str, part: Part) -> bool:
    return name in r.force and STEPS[name].forceable and part.forceable


def _skip(r, name: str, mod, part: Part) -> None:
    unforced = name in r.force and not forced(r, name, part)
    console.skip(part.label, part.decision.reason + (" (--force cannot override this)" if unforced else ""))
    if hasattr(mod, "skipped"):
        mod.skipped(r, part)
    if part.host:
        r.row(name, part.host, "skipped", 0.0)


def _doing(r, mod, part: Part) -> str:
    said = part.doing or (mod.announce(r, part) if hasattr(mod, "announce") else "")
    d: Decision = part.decision
    return said or (d.reason if d is not None else "evidence unknown, running it")


def _act(r, name: str, mod, part: Part) -> None:
    t0 = time.time()
    result = mod.act(r, part)
    if part.host:
        r.row(name, part.host, result or "changed", time.time() - t0)
    if part.then:
        run(r, part.then)
