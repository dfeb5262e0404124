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

from ..config import console
from ..facts.site import Target
from ..steps import ORDER, STEPS, UNFORCEABLE


@dataclass
class Decision:
    step: str
    action: str  # run | skip | maybe
    reason: str
    data: dict = field(default_factory=dict)
    target: Optional[Target] = None  # the deployment's target, where this decision fixes it (the image's)

    def as_json(self) -> dict:
        out = {"step": self.step, "action": self.action, "reason": self.reason}
        if self.hosts:
            out["hosts"] = [{"host": h, "action": d.action, "reason": d.reason} for h, d in self.hosts.items()]
        return out

    @property
    def hosts(self) -> Dict[str, "Decision"]:
        """Each host's own decision, for a step that acts on burst and transit alike."""
        return self.data.get("per_host") or {}


@dataclass
class Part:
    """What the one runner (steps/runner.py) carries out: a step's part on one host, or
    the whole step, with the decision printed for it."""
    decision: Optional[Decision]  # None: its evidence could not be read (it runs)
    label: str  # the line's head: "db", "up transit"
    host: Optional[str] = None  # the host it acts on, for the summary (None: the whole step)
    doing: str = ""  # what acting does, printed when it runs (default: the decision's reason)
    forceable: bool = True  # --force of the step reaches this part
    site: object = None  # the step's view of the host (a Site)
    evidence: object = None  # what the decision was made on, for the act
    then: Optional[str] = None  # a step the act asks the runner to run right after it


def host_label(step: str, host: str, settings) -> str:
    """The head of a step's line for its part on one stack host: the host is named only
    where the site has more than one (transit's archive besides burst)."""
    return f"{step} {host}" if settings.archive_host else step


def per_host(step: str, own: Dict[str, Optional[Decision]]) -> Optional[Decision]:
    """One decision from each stack host's (pure): run where any host runs; unknown
    (None) where one cannot be read and none runs; else skip. With one host, that
    host's decision as it is."""
    if len(own) == 1:
        return next(iter(own.values()))
    known = {h: d for h, d in own.items() if d is not None}
    if not any(d.action == "run" for d in known.values()) and len(known) < len(own):
        return None
    action = "run" if any(d.action == "run" for d in known.values()) else "skip"
    hosts = {h: d or Decision(step, "maybe", "its evidence could not be read") for h, d in own.items()}
    reason = "; ".join(f"{h} {d.action}: {d.reason}" for h, d in hosts.items())
    return Decision(step, action, reason, {"per_host": hosts})


def combine(own: Dict[str, Optional[Decision]], forced=()) -> List[Decision]:
    """Decisions in runbook order, from each step's own evidence (pure). A step that
    runs makes later skips it can void `maybe`; it makes them `run` where it certainly
    brings something new (steps.Step: follows, relays)."""
    out: List[Decision] = []
    done: Dict[str, Decision] = {}
    new = set()  # steps whose run certainly changes what later steps read
    for step in ORDER:
        if step not in own:
            continue
        d = _combined(step, own[step], forced, done, new)
        spec = STEPS[step]
        if d.action == "run" and (not spec.relays or new & set(spec.inputs)):
            new.add(step)
        done[step] = d
        out.append(d)
    return out


def _combined(step: str, d: Optional[Decision], forced, done: Dict[str, Decision], new: set) -> Decision:
    if step in forced and step not in UNFORCEABLE:
        return Decision(step, "run", "--force " + step)
    spec = STEPS[step]
    movers = [e for e in spec.inputs if e in done and done[e].action in ("run", "maybe")]
    fresh = [e for e in movers if e in new]
    if spec.follows and fresh and (d is None or d.action != "run"):
        # a new image must be tested, pushed and pulled, and a changed stack redeployed
        return Decision(step, "run", f"{', '.join(fresh)} brings something new"
                        + (f" (now: {d.reason})" if d is not None else ""), d.data if d is not None else {})
    if d is None:
        if spec.needs in done and done[spec.needs].action in ("run", "maybe"):
            return Decision(step, "maybe", f"cannot be known before {spec.needs} runs")
        return Decision(step, "maybe", "its evidence could not be read (listed at the end)")
    if d.action == "skip" and movers:
        return Decision(step, "maybe", f"{', '.join(movers)} may change what this step sees (now: {d.reason})", d.data)
    return d


def site_summary(settings) -> dict:
    """What the plan says about the hosts: the runtime flavour whose command forms
    are configured, and the shell set-up every remote command starts with."""
    return {"runtime": settings.runtime, "shell_preamble": list(settings.preamble),
            "service_user": settings.service_user}


def show(decisions: List[Decision], version: str, site: Optional[dict] = None) -> None:
    if site:
        console.out(f"hosts run {site['runtime']}; every command there starts with: "
                    + ("; ".join(site["shell_preamble"]) or "(no shell set-up)"))
    console.out(f"plan for {version}:")
    for d in decisions:
        if not d.hosts:
            console.out(f"  {d.step:8} {d.action:5}  {d.reason}")
            continue
        console.out(f"  {d.step:8} {d.action:5}  on {', '.join(d.hosts)}")
        for host, hd in d.hosts.items():
            console.out(f"    {host:8} {hd.action:5}  {hd.reason}")
