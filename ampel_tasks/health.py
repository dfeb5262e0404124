"""The health gate after `deploy/up`: the runbook's "Check logs for health", decided.

Healthy means, all at once and for a stable window (ampel.health.stable seconds,
after at least ampel.health.settle): every service of the stack file is listed,
each with its replica count (alertprocessor = NUM_STREAMS), every published port
answers, and no log line since the deploy matches an error pattern or reports a
restart. One timeout (ampel.health.timeout) bounds the whole wait; the elapsed
time is reported. Nothing is stopped on failure: the evidence stays.
"""
from __future__ import annotations

import re
import time
from typing import List

from . import console, envfile, stacklist
from .errors import DeployError

# the nanny's lines when a service process dies and is started again
RESTART = re.compile(r"exited with code|\(restart \d+\)")


def expected(doc: dict, env: dict) -> dict:
    """{service: (replicas, [ports])} from the stack file, variables from dryrun.env."""
    def expand(value):
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), m.group(0)), str(value))

    out = {}
    for name, svc in (doc.get("services") or {}).items():
        reps = (svc.get("deploy") or {}).get("replicas", svc.get("replicas", 1))
        reps = expand(reps)
        if not str(reps).isdigit():
            raise DeployError(f"service {name}: replicas {reps!r} is not a number after expanding dryrun.env")
        ports = [int(expand(p).split(":")[0]) for p in (svc.get("ports") or [])]
        out[name] = (int(reps), ports)
    return out


def check(want: dict, listed: dict, ports_ok: dict, lines: List[tuple], patterns) -> tuple:
    """(waiting problems, fatal problems) for one snapshot. Pure: tested without hosts."""
    waiting, fatal = [], []
    for name, (reps, ports) in want.items():
        got = listed.get(name)
        if got is None:
            waiting.append(f"{name}: not running")
        elif got["replicas"] != reps:
            waiting.append(f"{name}: {got['replicas']} of {reps} replicas running")
        for p in ports:
            if not ports_ok.get(p):
                waiting.append(f"{name}: port {p} does not answer")
    for t, service, replica, source, msg in lines:
        if source == "nanny" and RESTART.search(msg):
            fatal.append(f"{t} {service}:{replica} restarted: {msg}")
        elif any(re.search(p, msg) for p in patterns):
            fatal.append(f"{t} {service}:{replica} {source}: {msg}")
    return waiting, fatal


def snapshot(r, site, services, ports, since):
    s = r.settings
    stack = s.stack["name"]
    parts = [s.commands["list"], "echo @@LOGS@@"]
    for svc in services:
        parts.append(site.command("logs", stack=stack, service=svc) + " 2>/dev/null")
    parts.append("echo @@PORTS@@")
    for p in ports:
        parts.append(f"(timeout 2 bash -c '</dev/tcp/127.0.0.1/{int(p)}' 2>/dev/null && echo {int(p)} ok || echo {int(p)} no)")
    res = site.service_host.run("; ".join(parts), user=s.service_user, mutating=False, warn=True)
    table, _, rest = res.stdout.partition("@@LOGS@@")
    logs, _, port_text = rest.partition("@@PORTS@@")
    listed = stacklist.parse_list(table).get(stack, {})
    lines = []
    for line in logs.splitlines():
        parsed = stacklist.parse_log_line(line)
        if parsed and (since is None or parsed[0].replace(" ", "T") >= since):
            lines.append(parsed)
    ports_ok = {int(p): ok == "ok" for p, ok in (l.split() for l in port_text.splitlines() if len(l.split()) == 2)}
    return listed, ports_ok, lines


def gate(r, site, since=None):
    from .remote import stack_doc

    s = r.settings
    h = s.health
    env = envfile.read(site.service_host.read_file(site.env_file) or "")
    want = expected(stack_doc(r, site) or {}, env)
    all_ports = sorted({p for _, ports in want.values() for p in ports})
    t0 = time.time()
    stable_since = None
    waiting = ["not checked yet"]
    last_note = ""
    while True:
        elapsed = time.time() - t0
        listed, ports_ok, lines = snapshot(r, site, list(want), all_ports, since)
        waiting, fatal = check(want, listed, ports_ok, lines, h["error_patterns"])
        if fatal:
            _report(r, site, fatal, lines, elapsed)
        if waiting:
            stable_since = None
            note = "; ".join(waiting[:3])
            if note != last_note:
                console.note(f"health: waiting ({elapsed:.0f} s): {note}")
                last_note = note
        else:
            stable_since = stable_since or time.time()
            if time.time() - stable_since >= h["stable"] and elapsed >= h["settle"]:
                total = sum(v["replicas"] for v in listed.values())
                console.note(
                    f"healthy after {elapsed:.0f} s: {len(listed)} services, {total} instances, "
                    f"alertprocessor x{listed.get('alertprocessor', {}).get('replicas', 0)}, no errors"
                )
                return
        if elapsed > h["timeout"]:
            raise DeployError(
                f"stack not healthy after {elapsed:.0f} s (ampel.health.timeout={h['timeout']}): "
                + "; ".join(waiting) + "; nothing was stopped, see `invoke logs SERVICE`"
            )
        time.sleep(1)


def _report(r, site, fatal, lines, elapsed):
    console.out(f"    health: {len(fatal)} problem line(s) after {elapsed:.0f} s:", )
    for line in fatal[:20]:
        console.out(f"      {line}")
    failing = sorted({l.split()[2].split(":")[0] for l in fatal if len(l.split()) > 2})
    for svc in failing:
        tail = [l for l in lines if l[1] == svc][-5:]
        console.out(f"    last lines of {svc}:")
        for t, service, replica, source, msg in tail:
            console.out(f"      {t} {service}:{replica} {source} {msg}")
    raise DeployError(
        f"stack unhealthy: {fatal[0]}; services were left running for inspection "
        f"(`invoke logs {failing[0] if failing else 'SERVICE'}`)"
    )


def quick(r, site) -> list:
    """Problems of the running stack right now (services, replicas, ports), no waiting."""
    from .remote import stack_doc

    env_text = site.service_host.read_file(site.env_file)
    doc = stack_doc(r, site)
    if env_text is None or doc is None:
        return None
    want = expected(doc, envfile.read(env_text))
    ports = sorted({p for _, ps in want.values() for p in ps})
    listed, ports_ok, _ = snapshot(r, site, [], ports, None)
    waiting, _ = check(want, listed, ports_ok, [], [])
    return waiting
