"""The runbook's steps, their order and how they depend on each other: the one table
that invoke's pre-task chains, the plan's run/skip/maybe propagation, the re-reading
of evidence after a change, the executor and `up`'s redeploy rule are derived from.

One module per step, named as the step, each with its facts, `decide_<step>`, its
parts and its act, carried out by the one runner (`runner.py`); the logs task beside
them; the tasks' options and help are in `ampel_tasks/tasks/`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Step:
    pre: Tuple[str, ...] = ()  # the tasks invoke runs first when this one is called alone
    inputs: Tuple[str, ...] = ()  # earlier steps whose change voids what this one read
    needs: Optional[str] = None  # the step without whose result it cannot be decided at all
    follows: bool = False  # runs whenever an input brought something new (else it looks again)
    relays: bool = False  # its run brings something new only when an input did (a push again
    # of the same image changes no digest)
    where: str = "service"  # the summary's host: local (this machine), service (burst), archive (transit)
    forceable: bool = True  # `--force STEP` runs it though the plan skips it


STEPS = {  # in the runbook's order
    "image": Step(where="local"),
    "test": Step(pre=("image",), inputs=("image",), needs="image", follows=True, where="local"),
    "push": Step(pre=("test",), inputs=("image",), needs="image", follows=True, relays=True, where="local"),
    "pull": Step(pre=("push",), inputs=("push",), needs="push", follows=True),
    # an existing AMPEL_SRC is never overwritten, --force or not
    "src": Step(pre=("pull",), forceable=False),
    "db": Step(pre=("src",), inputs=("src",), needs="src"),
    "tag": Step(pre=("src",), inputs=("src", "db"), needs="src"),
    "secrets": Step(inputs=("src",), needs="src"),
    # the archive's migrations, read in transit's tree at the wanted commit (src brings it)
    "schema": Step(pre=("src",), inputs=("src",), needs="src", where="archive", forceable=False),  # (applied once)
    # what the running stack is made from: the hosts' image files, sources, dryrun.env,
    # secrets (an image built and pushed again changes nothing there while the files
    # keep their digest); a migration (the archive's clients read its schema at their start)
    "up": Step(pre=("src", "db", "secrets", "schema"), inputs=("pull", "src", "db", "tag", "secrets", "schema"),
               follows=True),
}
ORDER = tuple(STEPS)
UNFORCEABLE = {name for name, step in STEPS.items() if not step.forceable}


def inputs(step: str) -> Tuple[str, ...]:
    """The earlier steps after whose change `step`'s evidence is read again."""
    return STEPS[step].inputs


def evidence(r, step: str, gather, foresees: bool = False):
    """What `step` decides on, read once per run and again after one of its inputs
    changed (`Run.evidence` under "<step> evidence")."""
    return r.evidence(f"{step} evidence", gather, after=inputs(step), foresees=foresees)


def wire(tasks: dict, deploy_task, plan_task) -> None:
    """Give each step's invoke task its pre-tasks from the table; `deploy` runs the
    plan, then every step in order."""
    for name, step in STEPS.items():
        tasks[name].pre = [tasks[p] for p in step.pre]
    deploy_task.pre = [plan_task] + [tasks[name] for name in ORDER]
