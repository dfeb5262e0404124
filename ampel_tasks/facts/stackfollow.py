"""The health gate's reads of a stack on its host (health.py judges them): one
command per read (stackpoll.py), and a follower that reads from the moment
deploy/up starts, on a thread of its own, while deploy/up replaces the stack.

Following a stack that is being replaced, a replica counts only once its new nanny
runs: the nannies of the first read, made before deploy/up starts (the old stack's,
until `rm` or the tool ends them), are left out, and so are their replica files; a
file is read from its start once its new nanny is seen (singularity-stack truncates
it before it forks that nanny). Their age cannot tell them apart: a stack deployed
seconds before is as young as the new one."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import replicas, sizes, stacklist, stackpoll

# s between two reads while deploy/up runs (its services start over about 10 s), and
# after it, while the last ones started hold for the stable window
WHILE_UP = 0.5
AFTER_UP = 0.25


@dataclass(frozen=True)
class Observation:
    """One read: when it was asked and answered (this machine's clock), and what it saw."""
    asked: float
    answered: float
    replicas: Dict[str, replicas.Replica]
    ports: Dict[int, bool]
    lines: List[stacklist.LogLine]


class Poller:
    """Reads the stack's state on the service host, one command per poll: the
    replicas' processes, ports, and the replicas' output files from where the last
    poll stopped (they are truncated at each deploy, so a gate starts at 0).
    `new_only`: the nannies of its first read do not count, nor are their files read."""

    def __init__(self, r, site, want: dict, read_logs: bool, new_only: bool = False):
        self.r, self.site, self.want = r, site, want
        self.read_logs, self.new_only = read_logs, new_only
        self.old: Optional[set] = None  # (new_only: the nannies of the first read)
        self.instances = stacklist.expected_instances(site.stack_name, want)
        self.offsets = {(inst, src): 0 for inst in self.instances for src in ("stdout", "stderr")} \
            if read_logs and not new_only else {}
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
        o = self.observe()
        return o.replicas, o.ports, o.lines

    def observe(self) -> Observation:
        """One read, timed."""
        s = self.r.settings
        user, log, limit = s.service_user, s.paths["replica_log"], int(s.health["max_bytes"])
        asked = time.time()
        # (the gate's polls are never answered from the reads sent ahead; status's look is a read)
        res = self.site.stack_host.read(stackpoll.command(user, log, self.ports, self.offsets, limit), user=user,
                                        warn=True, fresh=self.read_logs or self.new_only)
        answered = time.time()
        got = stackpoll.parse(res.stdout, user, log)
        lines = [line for tail in got.files for line in self._consume(tail, limit)]
        now = self._new(got.replicas) if self.new_only else got.replicas
        return Observation(asked, answered, now, got.ports, lines)

    def _new(self, now: Dict[str, replicas.Replica]) -> Dict[str, replicas.Replica]:
        """The replicas whose nanny is a singularity-stack process the first read did
        not see (the tool ends the old nannies first: what they ran lives on until
        `rm`, heading their files' writers); their files are read from the next poll on."""
        if self.old is None:
            self.old = {rep.nanny for rep in now.values()}
        new = {inst: rep for inst, rep in now.items() if rep.by_stack and rep.nanny not in self.old}
        if self.read_logs:
            for inst in new:
                for src in ("stdout", "stderr"):
                    self.offsets.setdefault((inst, src), 0)
        return new

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


class Follow:
    """Reads the stack once, then every WHILE_UP s on a thread of its own until the
    block ends (`with Follow(poller): deploy/up`); the gate then judges what it saw
    (`taken`) before reading on. A read that fails ends the following (the gate's own
    read then says why)."""

    def __init__(self, poller: Poller):
        self.poller = poller
        self.seen: List[Observation] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "Follow":
        self.seen.append(self.poller.observe())  # (before the block: what runs then is the old stack)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.seen.append(self.poller.observe())
            except Exception:  # (whatever went wrong, the gate's own next read meets it and says so)
                return
            self._stop.wait(WHILE_UP)

    def taken(self) -> List[Observation]:
        """What was read, oldest first (once the block has ended)."""
        seen, self.seen = self.seen, []
        return seen
