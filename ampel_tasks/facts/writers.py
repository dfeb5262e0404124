"""The archive's clients on burst (the services given the archive's passwords: the
alert processors, stats), started again after a schema migration: each opens the
archive once at its start and reads its schema then, so a running one never sees a
migration.

A restart is singularity-stack's own: the service's process in each replica is
ended (SIGTERM) and its nanny starts it again after the restart delay; the stack is
not redeployed. Then the health gate, reading the replicas' output from now on.
"""
from __future__ import annotations

import time
from typing import Dict, List

from ..config import console
from . import envfile, health, replicas
from ..config.errors import DeployError

def clients(doc: dict, secrets) -> List[str]:
    """The services of a stack file given one of the archive's secrets (pure)."""
    out = []
    for name, svc in sorted((doc.get("services") or {}).items()):
        given = [x if isinstance(x, str) else (x or {}).get("source") for x in (svc or {}).get("secrets") or []]
        if set(given) & set(secrets):
            out.append(name)
    return out


def children(instances: Dict[str, tuple], now: Dict[str, replicas.Replica], services: List[str]) -> Dict[str, int]:
    """{instance: its service's live process} for the replicas of `services` (pure)."""
    return {inst: now[inst].child for inst, (svc, _) in instances.items()
            if svc in services and inst in now and now[inst].child is not None}


def end_command(pids: List[int]) -> str:
    """SIGTERM to each nanny's child and the processes it started (a runtime that
    forks to enter the instance's PID namespace, as nsenter does, does not pass
    signals on: the service must get its own)."""
    listed = " ".join(str(p) for p in pids)
    return f"for p in {listed}; do pkill -TERM -P $p; kill -TERM $p; done 2>/dev/null; true"


def restart(r, site, secrets) -> None:
    """End the processes of the archive's clients on burst (the services given one of
    `secrets`, the archive's passwords as transit.yml names them); wait for their
    nannies' new ones; the gate."""
    s, host = r.settings, site.stack_host
    doc = site.stack_doc() or {}
    names = clients(doc, secrets)
    if not names:
        return
    env = envfile.read(host.read_file(site.env_file, user=site.src_user) or "")
    want = health.expected(doc, env)
    waiter, gate = health.Poller(r, site, want, read_logs=False), health.Poller(r, site, want, read_logs=True)
    now, _, _ = waiter.poll()
    old = children(waiter.instances, now, names)
    console.step(f"restart {host.name}", f"{', '.join(names)} ({len(old)} processes), to read the archive's schema again")
    if not old or r.dry:
        return
    host.change(end_command(sorted(old.values())), user=s.service_user)
    gate.start_at_end()  # (what they wrote before, a crash loop's tracebacks say, is not this gate's)
    _wait_for_new(r, waiter, names, set(old.values()))
    health.gate(r, site, gate)


def _wait_for_new(r, poller, names: List[str], old: set) -> None:
    """Until every replica of `names` runs a process that is not one of `old`."""
    deadline = time.time() + r.settings.health["timeout"]
    wanted = [inst for inst, (svc, _) in poller.instances.items() if svc in names]
    while True:
        now, _, _ = poller.poll()
        fresh = children(poller.instances, now, names)
        if all(inst in fresh and fresh[inst] not in old for inst in wanted):
            return
        if time.time() > deadline:
            raise DeployError(f"the archive's clients on {poller.site.stack_host.name} did not start again within "
                              f"{r.settings.health['timeout']} s after they were ended")
        time.sleep(1)
