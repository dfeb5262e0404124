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
from . import envfile, replicas, sizes, stacklist, stackpoll, state
from ..config.errors import DeployError

# s between two polls: far shorter than the nanny's restart delay (10 s at the site),
# so a service that died is seen without its child, and a fraction of a stable window
POLL = 0.25


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


class Poller:
    """Reads the stack's state on the service host, one command per poll: the
    replicas' processes, ports, and the replicas' output files from where the last
    poll stopped (they are truncated at each deploy, so a gate starts at 0)."""

    def __init__(self, r, site, want: dict, read_logs: bool):
        self.r, self.site, self.want = r, site, want
        s = r.settings
        self.instances = stacklist.expected_instances(site.stack_name, want)
        self.offsets = {(inst, src): 0 for inst in self.instances for src in ("stdout", "stderr")} if read_logs else {}
        self.ports = sorted({p for _, ports in want.values() for p in ports})

    def start_at_end(self) -> None:
        """Read only what the replicas write from now on (their files were not truncated)."""
        files = {self.log_file(inst, src): key for key in self.offsets for inst, src in [key]}
        res = self.site.stack_host.read(sizes.stat_command(files), user=self.r.settings.service_user, warn=True,
                                        fresh=True)
        for name, size in sizes.parse(res.stdout).items():
            if name in files:
                self.offsets[files[name]] = size

    def log_file(self, inst: str, source: str) -> str:
        s = self.r.settings
        return s.paths["replica_log"].format(user=s.service_user, instance=inst, source=source)

    def poll(self):
        """(the replicas' processes, {port: answers}, new log lines)."""
        s = self.r.settings
        user, log, limit = s.service_user, s.paths["replica_log"], int(s.health["max_bytes"])
        res = self.site.stack_host.read(stackpoll.command(user, log, self.ports, self.offsets, limit), user=user,
                                        warn=True, fresh=bool(self.offsets))  # (the gate's polls; status's look is a read)
        got = stackpoll.parse(res.stdout, user, log)
        lines = [line for tail in got.files for line in self._consume(tail, limit)]
        return got.replicas, got.ports, lines

    def _consume(self, tail: stackpoll.FileTail, limit: int):
        key = (tail.instance, tail.source)
        off = self.offsets.get(key, 0)
        if tail.size < off:  # truncated by a deploy of that replica: start again
            off = 0
        data = tail.text.encode(errors="replace")
        lines, used = stacklist.split_new_text(data, len(data) >= limit)
        self.offsets[key] = off + used
        svc, rep = self.instances[tail.instance]
        return stacklist.lines_with_source(svc, rep, tail.source, lines)


def starting(want: dict, running: dict, stable: float) -> list:
    """Services some of whose replicas run but have not yet held for `stable` s (pure)."""
    out = []
    for name, (reps, _) in want.items():
        held, live = running.get(name, (0, 0))
        if live and held < live:
            out.append(f"{name}: {live - held} of {reps} replicas started less than {stable:g} s ago")
    return out


def gate(r, site, poller=None):
    """Wait until the stack is healthy (or fail with the evidence); `poller`: one that
    already follows the stack (e.g. from the end of its replica files)."""
    h = r.settings.health
    doc = site.stack_doc() or {}
    poller = poller or Poller(r, site, expected(doc, _env(site)), read_logs=True)
    want = poller.want
    watch = replicas.Watch(poller.instances)
    t0, last_note, seen, fatal, confirm = time.time(), "", [], [], False
    while True:
        elapsed = time.time() - t0
        now, ports_ok, lines = poller.poll()
        watch.feed(now)
        seen = (seen + lines)[-400:]
        live = replicas.live_counts(poller.instances, now)
        waiting, problems = check(want, live, ports_ok, lines, h["error_patterns"])
        fatal += problems  # (each poll reads only new lines: kept across the confirming read)
        failing = watch.failures()
        if failing and not confirm:  # one more read: the youngest nannies' first child is due too
            confirm = True
            time.sleep(replicas.FIRST_CHILD_GRACE)
            continue
        if failing or fatal:
            refused = [x for x in (refused_secret(l.msg, doc) for l in seen) if x]
            _report(failing, fatal, seen, elapsed, after_failure(r, site), refused[:1])
        waiting += starting(want, watch.running(now, h["stable"]), h["stable"])
        if not waiting:
            ap = f" (alertprocessor x{live['alertprocessor']})" if "alertprocessor" in live else ""
            console.note(f"{site.stack_host.name} healthy after {elapsed:.0f} s: {len(live)} services, "
                         f"{sum(live.values())} replicas running for {h['stable']:g} s or more{ap}, no restarts, no errors")
            return
        note = "; ".join(waiting[:3])
        if note != last_note:
            console.detail(f"health: waiting ({elapsed:.0f} s): {note}")
            last_note = note
        if elapsed > h["timeout"]:
            raise DeployError(
                f"stack not healthy after {elapsed:.0f} s (ampel.health.timeout={h['timeout']}): "
                + "; ".join(waiting) + f"; {after_failure(r, site)}")
        time.sleep(POLL)


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
