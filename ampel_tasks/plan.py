"""Which runbook steps are necessary, and why: one decision function for `plan` and `deploy`.

Each step module offers `decide_<step>(run) -> Decision | None` reading evidence
from the hosts, the registry, the engine and git; None means the evidence does
not exist yet. `combine` (pure) then accounts for the order of the runbook: a
step whose evidence an earlier step will change is "maybe", never a confident
skip (pyinfra-dev/pyinfra#387).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

ORDER = ["image", "test", "push", "pull", "src", "db", "tag", "secrets", "up"]
# A skip of the key step is void when one of these earlier steps runs.
INVALIDATED_BY = {
    "test": ["image"],
    "push": ["image"],
    "pull": ["push"],
    "db": ["src"],
    "tag": ["src", "db"],
    "secrets": ["src"],
    "up": ["image", "push", "pull", "src", "db", "tag", "secrets"],
}
# What a step needs in order to be decided at all.
NEEDS = {"test": "image", "db": "src", "tag": "src", "secrets": "src", "push": "image", "pull": "push"}
# An existing AMPEL_SRC is never overwritten, --force or not.
UNFORCEABLE = {"src"}


@dataclass
class Decision:
    step: str
    action: str  # run | skip | maybe
    reason: str
    data: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"step": self.step, "action": self.action, "reason": self.reason}


def combine(own: Dict[str, Optional[Decision]], forced=()) -> List[Decision]:
    """Decisions in runbook order, from each step's own evidence (pure)."""
    out: List[Decision] = []
    done: Dict[str, Decision] = {}
    for step in ORDER:
        if step not in own:
            continue
        d = own[step]
        if step in forced and step not in UNFORCEABLE:
            d = Decision(step, "run", "--force " + step)
        elif d is None:
            dep = NEEDS.get(step)
            if dep in done and done[dep].action in ("run", "maybe"):
                d = Decision(step, "maybe", f"cannot be known before {dep} runs")
            else:
                d = Decision(step, "maybe", "its evidence could not be read (listed at the end)")
        elif d.action == "skip":
            movers = [e for e in INVALIDATED_BY.get(step, []) if e in done and done[e].action in ("run", "maybe")]
            if movers:
                # a new image must be tested, and whatever changed must be redeployed
                certain = step in ("up", "test") and any(done[e].action == "run" for e in movers)
                action = "run" if certain else "maybe"
                d = Decision(step, action, f"{', '.join(movers)} may change what this step sees (now: {d.reason})", d.data)
        done[step] = d
        out.append(d)
    return out


def decide(r, steps: List[str]) -> List[Decision]:
    """Gather each step's evidence (read-only) and combine."""
    from . import gitops, image, publish, testrun
    from .steps import db, pull, secrets, src, up

    deciders = {
        "image": image.decide_image, "test": testrun.decide_test, "push": publish.decide_push,
        "pull": pull.decide_pull,
        "src": src.decide_src, "db": db.decide_db, "tag": gitops.decide_tag,
        "secrets": secrets.decide_secrets, "up": up.decide_up,
    }
    own = {}
    for step in ORDER:
        if step in steps:
            own[step] = deciders[step](r)
    return combine(own, forced=r.force)


def proceed(r, step: str, d: Optional[Decision], what: str = "") -> bool:
    """Print the step's decision; True when it must act, and then the deploy lock is held."""
    from . import console, state

    if d is not None and d.action == "skip" and not (step not in UNFORCEABLE and step in r.force):
        console.skip(step, d.reason + (" (--force cannot override this)" if step in r.force else ""))
        return False
    state.lock(r)
    console.step(step, what or (d.reason if d is not None else "evidence unknown, running it"))
    return True


def site_summary(settings) -> dict:
    """What the plan says about the hosts: the runtime flavour whose command forms
    are configured, and the shell set-up every remote command starts with."""
    return {"runtime": settings.runtime, "shell_preamble": list(settings.preamble),
            "service_user": settings.service_user}


def show(decisions: List[Decision], version: str, site: Optional[dict] = None) -> None:
    from . import console

    if site:
        console.out(f"hosts run {site['runtime']}; every command there starts with: "
                    + ("; ".join(site["shell_preamble"]) or "(no shell set-up)"))
    console.out(f"plan for {version}:")
    for d in decisions:
        console.out(f"  {d.step:8} {d.action:5}  {d.reason}")
