"""The health gate after `deploy/up`: the runbook's "Check logs for health", decided.

Healthy means, all at once: every configured replica of every service of the
stack file runs, by its processes (replicas.py: its nanny alive with a live child,
the service, that has run for ampel.health.stable seconds and was never replaced),
every published port answers, and no new output line matches an error pattern or
is one of the nanny's lines (`<inst> instance is gone!`, `sleeping N before
restart`, `failed permanently with status N`). A replica whose service ended or was
started again (a restart), or whose nanny went, fails the gate at once, named with
its restart count. Each poll is one command on the service host: the processes, the
ports, and what the replicas wrote since the previous poll (at most
ampel.health.max_bytes per file). One timeout (ampel.health.timeout) bounds the
whole wait. Nothing is stopped on failure.
"""
from __future__ import annotations

import re
import time
from typing import Dict, List

from ..config import console
from . import envfile, replicas, stacklist, state
from .stackfollow import AFTER_UP, Follow, Observation, Poller
from ..config.errors import DeployError


def expected(doc: dict, env: dict) -> dict:
    """{service: (replicas, [ports])} from the stack file, variables from dryrun.env."""
    def expand(value):  # (an unknown variable stays as it is, and is no number)
        return str(envfile.expand(value, env, "", []))

    out = {}
    for name, svc in (doc.get("services") or {}).items():
        reps = expand((svc.get("deploy") or {}).get("replicas", 1))
        if not str(reps).isdigit():
            raise DeployError(f"service {name}: replicas {reps!r} is not a number after expanding dryrun.env")
        ports = [expand(p).split(":")[-1] for p in (svc.get("ports") or [])]
        bad = [p for p in ports if not p.isdigit()]
        if bad:
            raise DeployError(f"service {name}: port {bad[0]} is not a number after expanding dryrun.env; "
                              f"is {bad[0].strip('${}')} defined there?")
        ports = [int(p) for p in ports]
        out[name] = (int(reps), ports)
    return out


SECRETS_IN = "/run/secrets/"
REFUSED = re.compile(r'password authentication failed for user "([^"]+)"')


def service_environment(svc: dict) -> Dict[str, str]:
    """A service's `environment:` of the stack file, as a mapping (it may be a list)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env if "=" in item)
    return {k: str(v) for k, v in env.items()}


def refused_secret(line: str, doc: dict):
    """Which secret a login refused in `line` used (pure): the user the line names, the
    service whose environment gives that user, its *_PASSWORD_FILE under /run/secrets."""
    m = REFUSED.search(line)
    for svc in (doc.get("services") or {}).values() if m else ():
        env = service_environment(svc or {})
        for key, value in env.items():
            secret = env.get(key[: key.rindex("_USER")] + "_PASSWORD_FILE", "") if "_USER" in key else ""
            if value == m.group(1) and secret.startswith(SECRETS_IN):
                return (f"the archive refuses {m.group(1)}'s password: secret {secret[len(SECRETS_IN):]} "
                        "is not the password that user was created with")
    return None


def check(want: dict, live: Dict[str, int], ports_ok: dict, lines: List[stacklist.LogLine], patterns) -> tuple:
    """(waiting problems, fatal problems) for one snapshot. Pure: tested without hosts."""
    waiting, fatal = [], []
    for name, (reps, ports) in want.items():
        got = live.get(name, 0)
        if got == 0:
            waiting.append(f"{name}: not running")
        elif got != reps:
            waiting.append(f"{name}: {got} of {reps} replicas running")
        for p in ports:
            if not ports_ok.get(p):
                waiting.append(f"{name}: port {p} does not answer")
    for line in lines:
        nanny = stacklist.nanny_failure(line.msg) if line.source == "stdout" else None
        if nanny:
            fatal.append(f"{line.service}:{line.replica} {nanny}: {line.msg}")
        elif any(re.search(p, line.msg) for p in patterns):
            fatal.append(f"{line.service}:{line.replica} {line.source}: {line.msg}")
    return waiting, fatal


def starting(want: dict, running: dict, stable: float) -> list:
    """Services some of whose replicas run but have not yet held for `stable` s (pure)."""
    out = []
    for name, (reps, _) in want.items():
        held, live = running.get(name, (0, 0))
        if live and held < live:
            out.append(f"{name}: {live - held} of {reps} replicas started less than {stable:g} s ago")
    return out


class _Evidence:
    """What a gate has read so far: the replicas followed across reads, the last lines
    read, the problem lines."""

    def __init__(self, poller: Poller, patterns):
        self.watch, self.patterns = replicas.Watch(poller.instances), patterns
        self.seen, self.fatal = [], []

    def add(self, o: Observation, want: dict) -> tuple:
        """(live counts, waiting problems) of the read `o`."""
        self.watch.feed(o.replicas, o.answered)
        self.seen = (self.seen + o.lines)[-400:]
        live = replicas.live_counts(self.watch.instances, o.replicas)
        waiting, problems = check(want, live, o.ports, o.lines, self.patterns)
        self.fatal += problems  # (each poll reads only new lines: kept across the confirming read)
        return live, waiting


def gate(r, site, poller=None, follow: Follow = None):
    """Wait until the stack is healthy (or fail with the evidence); `poller`: one that
    already follows the stack (e.g. from the end of its replica files); `follow`: the
    reads made while deploy/up ran, judged first (the verdict is the latest read's)."""
    h = r.settings.health
    doc = site.stack_doc() or {}
    poller = follow.poller if follow else poller or Poller(r, site, expected(doc, _env(site)), read_logs=True)
    earlier, ev = (follow.taken() if follow else []), _Evidence(poller, h["error_patterns"])
    t0, last_note, confirm = time.time(), "", False
    while True:
        elapsed = time.time() - t0
        o = earlier.pop(0) if earlier else poller.observe()
        live, waiting = ev.add(o, poller.want)
        failing = [] if earlier else ev.watch.failures()
        if failing and not confirm:  # one more read: the youngest nannies' first child is due too
            confirm = True
            time.sleep(replicas.FIRST_CHILD_GRACE + replicas.ETIMES_OVER)
            continue
        if earlier:
            continue
        if failing or ev.fatal:
            refused = [x for x in (refused_secret(l.msg, doc) for l in ev.seen) if x]
            _report(failing, ev.fatal, ev.seen, elapsed, after_failure(r, site), refused[:1])
        waiting += starting(poller.want, ev.watch.running(o.replicas, h["stable"], o.asked), h["stable"])
        if not waiting:
            return _healthy(site, live, h["stable"], elapsed)
        last_note = _waiting(waiting, elapsed, last_note)
        if elapsed > h["timeout"]:
            raise DeployError(
                f"stack not healthy after {elapsed:.0f} s (ampel.health.timeout={h['timeout']}): "
                + "; ".join(waiting) + f"; {after_failure(r, site)}")
        time.sleep(AFTER_UP)


def _healthy(site, live: dict, stable: float, elapsed: float) -> None:
    ap = f" (alertprocessor x{live['alertprocessor']})" if "alertprocessor" in live else ""
    console.note(f"{site.stack_host.name} healthy after {elapsed:.0f} s: {len(live)} services, "
                 f"{sum(live.values())} replicas running for {stable:g} s or more{ap}, no restarts, no errors")


def _waiting(waiting: list, elapsed: float, last_note: str) -> str:
    note = "; ".join(waiting[:3])
    if note != last_note:
        console.detail(f"health: waiting ({elapsed:.0f} s): {note}")
    return note


def following(r, site) -> Follow:
    """A follower of the stack file's replicas started from now on, reading their files (for `gate`)."""
    doc = site.stack_doc() or {}
    return Follow(Poller(r, site, expected(doc, _env(site)), read_logs=True, new_only=True))


def _env(site) -> dict:
    return envfile.read(site.stack_host.read_file(site.env_file, user=site.src_user) or "")


def after_failure(r, site) -> str:
    """What runs after a failed gate, and the exact command that goes back."""
    before = state.running_version(r)  # (the record of the last successful deployment)
    back = (f"back to {before}: `{r.invocation('rollback', '--to', before)}`" if before
            else "no earlier successful deployment is recorded to go back to")
    return f"{site.version} runs now, left for inspection (`{r.invocation('logs', 'SERVICE')}`); {back}"


def _report(failing, fatal, seen, elapsed, then: str, hint=()):
    """Print the evidence (the processes' verdict, problem lines, each failing
    service's last lines), then fail with one line."""
    console.out(f"    health: {len(failing) + len(fatal)} problem(s) after {elapsed:.0f} s:")
    for line in [f"restarting: {f}" for f in failing] + fatal[:20]:
        console.out(f"      {line}")
    services = sorted({f.split(" ")[0] for f in failing} | {f.split(":")[0] for f in fatal})
    for svc in services:
        console.out(f"    last lines of {svc}:")
        for line in [l for l in seen if l.service == svc][-5:]:
            console.out(f"      {line.service}:{line.replica} {line.source} {line.msg}")
    what = "; ".join(([f"restarting: {', '.join(failing)}"] if failing else []) + list(hint) + fatal[:1])  # and the first error line
    raise DeployError(f"stack unhealthy: {what}; " + then.replace("SERVICE", services[0] if services else "SERVICE"))


def quick(r, site, doc=None, env_text=None) -> list:
    """Problems of the running stack right now (replicas' processes, ports), no waiting;
    the stack file and env file are read from its host unless the caller has them."""
    env_text = site.stack_host.read_file(site.env_file, user=site.src_user) if env_text is None else env_text
    doc = site.stack_doc() if doc is None else doc
    if env_text is None or doc is None:
        return None
    want = expected(doc, envfile.read(env_text))
    poller = Poller(r, site, want, read_logs=False)
    now, ports_ok, _ = poller.poll()
    waiting, _ = check(want, replicas.live_counts(poller.instances, now), ports_ok, [], [])
    return waiting + replicas.restarted(poller.instances, now)
