"""The stack's replicas as processes: what runs, read from the process table.

singularity-stack 0.2.2 starts one nanny per replica (a daemon forked from
`singularity-stack deploy`, its stdout the replica's file
/var/tmp/<user>.singularity.<instance>.stdout), which runs the service as its
child, `singularity run instance://<instance>`, and starts it again after the
restart delay when it ends. A Singularity 2.x instance outlives that child, so a
listing of instances says nothing about the service: the nanny and its child do.

One command per read (`ps` of the service user, which processes write to a
replica file, and each process's start in clock ticks since boot beside the
host's uptime: an age to the hundredth of a second, where `ps etimes` gives whole
seconds that procps 3.3 can round up), parsed by a pure function; `Watch` follows
the replicas across reads and counts restarts (a child that ended or was replaced).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

# a nanny's time from its start to its first child (DaemonContext, one instance.list)
FIRST_CHILD_GRACE = 2.0


class Proc(NamedTuple):
    ppid: int
    stat: str
    age: float  # seconds since it started (ps etimes; from its start tick where read)
    args: str


@dataclass(frozen=True)
class Replica:
    """One replica's processes: its nanny and the nanny's live child, if any."""
    nanny: int
    nanny_age: float
    child: Optional[int] = None
    child_age: float = 0


def command(user: str, replica_log: str) -> str:
    """The one read: the service user's processes, and which of them write to a
    replica file (their fd 1). `replica_log` is ampel.paths.replica_log."""
    pattern = replica_log.format(user=user, instance="*", source="stdout")
    # (the shell running this poll is one of the user's processes: its args, which hold
    # the poll's markers, are left out)
    u = shlex.quote(user)
    # (/proc/PID/stat: `PID (COMM) STATE PPID ...`, its 22nd field the start tick; COMM may hold `) `)
    return (f"echo @@PS; ps -u {u} -o pid=,ppid=,stat=,etimes=,args= | grep -v -F @@; echo @@FD; "
            f"find /proc/[0-9]*/fd/1 -maxdepth 0 -lname {shlex.quote(pattern)} -printf '%p %l\\n' 2>/dev/null; "
            f"echo @@START; cat /proc/uptime; getconf CLK_TCK; ps -u {u} -o pid= | sed 's|^ *|/proc/|; s|$|/stat|' "
            f"| xargs -r cat 2>/dev/null | sed 's|^\\([0-9]*\\) .*) |\\1 |' | cut -d' ' -f1,21; true")


def _log_regex(user: str, replica_log: str):
    parts = replica_log.format(user=user, instance="\0", source="stdout").split("\0")
    return re.compile(re.escape(parts[0]) + r"([0-9A-Za-z_-]+)" + re.escape(parts[1]))


def parse_ps(text: str) -> Dict[int, Proc]:
    """{pid: Proc} from `ps -o pid=,ppid=,stat=,etimes=,args=` (pure)."""
    out = {}
    for line in text.splitlines():
        f = line.split(None, 4)
        if len(f) >= 4 and f[0].isdigit() and f[1].isdigit() and f[3].isdigit():
            out[int(f[0])] = Proc(int(f[1]), f[2], int(f[3]), f[4] if len(f) > 4 else "")
    return out


def parse_ages(text: str) -> Dict[int, float]:
    """{pid: seconds since it started} from the start section: /proc/uptime, CLK_TCK,
    then `pid start-tick` lines (pure); {} when it is missing or garbled."""
    lines = text.strip().splitlines()
    try:
        uptime, tick = float(lines[0].split()[0]), int(lines[1])
    except (IndexError, ValueError):
        return {}
    out = {}
    for line in lines[2:]:
        f = line.split()
        if len(f) == 2 and f[0].isdigit() and f[1].isdigit():
            out[int(f[0])] = max(0.0, round(uptime - int(f[1]) / tick, 2))
    return out


def parse_writers(text: str, user: str, replica_log: str) -> Dict[str, List[int]]:
    """{instance: [pids]} of the processes whose stdout is that replica's file (pure)."""
    regex, out = _log_regex(user, replica_log), {}
    for line in text.splitlines():
        path, _, target = line.partition(" ")
        m = re.fullmatch(r"/proc/(\d+)/fd/1", path)
        inst = regex.fullmatch(target.strip())
        if m and inst:
            out.setdefault(inst.group(1), []).append(int(m.group(1)))
    return out


def parse(text: str, user: str, replica_log: str) -> Dict[str, Replica]:
    """{instance: Replica} from the output of `command` (pure). The nanny is a
    writer of the replica file whose parent is not one (singularity-stack's own
    process where there is one); its child is any live process it started other
    than singularity's instance.list check and a fork of its own not yet exec'd."""
    head, _, rest = text.partition("@@FD")
    fds, _, starts = rest.partition("@@START")
    procs, ages = parse_ps(head.partition("@@PS")[2]), parse_ages(starts)
    procs = {pid: pr._replace(age=ages.get(pid, pr.age)) for pid, pr in procs.items()}
    out = {}
    for inst, pids in parse_writers(fds, user, replica_log).items():
        tops = [p for p in pids if p in procs and procs[p].ppid not in pids and not procs[p].stat.startswith("Z")]
        tops = [p for p in tops if "singularity-stack" in procs[p].args] or tops
        if not tops:
            continue
        nanny = min(tops, key=lambda p: procs[p].age)  # the newest, should an old one linger
        # (a fork that has not yet exec'd has the nanny's own command line: not yet the service)
        kids = [p for p, pr in procs.items() if pr.ppid == nanny and not pr.stat.startswith("Z")
                and "instance.list" not in pr.args and pr.args != procs[nanny].args]
        child = min(kids, key=lambda p: procs[p].age) if kids else None
        out[inst] = Replica(nanny, procs[nanny].age, child, procs[child].age if child else 0)
    return out


@dataclass
class Track:
    """What a gate knows of one replica across reads."""
    child: Optional[int] = None
    restarts: int = 0
    dead: bool = False       # its service is not running now (a death already counted)
    seen: bool = False       # its nanny was seen
    gone: bool = False       # ... and is gone since


@dataclass
class Watch:
    """Replicas followed across reads (pure): restarts and nannies that went."""
    instances: Dict[str, Tuple[str, int]]  # {instance: (service, replica)}
    tracks: Dict[str, Track] = field(default_factory=dict)

    def feed(self, now: Dict[str, Replica]) -> None:
        for inst in self.instances:
            t = self.tracks.setdefault(inst, Track())
            r = now.get(inst)
            if r is None:
                t.gone = t.gone or t.seen
                continue
            t.seen = True
            if r.child is not None:
                if t.child is not None and r.child != t.child and not t.dead:
                    t.restarts += 1  # ended and started again between two reads
                t.child, t.dead = r.child, False
            elif not t.dead and (t.child is not None or r.nanny_age >= FIRST_CHILD_GRACE):
                t.restarts += 1
                t.child, t.dead = None, True

    def running(self, now: Dict[str, Replica], stable: float) -> Dict[str, Tuple[int, int]]:
        """{service: (replicas whose child has run at least `stable` s, replicas with a child)}."""
        out: Dict[str, Tuple[int, int]] = {}
        for inst, (svc, _) in self.instances.items():
            r = now.get(inst)
            held, live = out.get(svc, (0, 0))
            up = r is not None and r.child is not None
            out[svc] = (held + (up and r.child_age >= stable), live + up)
        return out

    def failures(self) -> List[str]:
        """One entry per failing service: `svc (n of m replicas, k restarts)`,
        `svc (n of m replicas: the nanny is gone)`."""
        per: Dict[str, list] = {}
        for inst, (svc, _) in self.instances.items():
            per.setdefault(svc, []).append(self.tracks.get(inst, Track()))
        out = []
        for svc, tracks in per.items():
            restarting = [t for t in tracks if t.restarts]
            gone = [t for t in tracks if t.gone]
            if restarting:
                n = sum(t.restarts for t in restarting)
                out.append(f"{svc} ({len(restarting)} of {len(tracks)} replicas, {n} restart{'s' * (n != 1)})")
            if gone:
                out.append(f"{svc} ({len(gone)} of {len(tracks)} replicas: the nanny is gone)")
        return out


RECENT = 60  # s: a service process younger than this, started after its nanny's first, restarted lately
LATER = 5.0  # s: a process started this long after its nanny is not the nanny's first (that takes ~1 s)


def restarted(instances: Dict[str, Tuple[str, int]], now: Dict[str, Replica], within: float = RECENT) -> List[str]:
    """From one read (pure): `svc: n of m replicas restarted in the last S s` for the
    services some of whose replicas run a process their nanny started again lately
    (a crash loop seen between its restarts)."""
    per: Dict[str, List[int]] = {}
    for inst, (svc, _) in instances.items():
        r = now.get(inst)
        again = r is not None and r.child is not None and r.child_age < within and \
            r.nanny_age - r.child_age > LATER
        per.setdefault(svc, []).append(int(again))
    return [f"{svc}: {sum(v)} of {len(v)} replicas restarted in the last {within:g} s"
            for svc, v in per.items() if sum(v)]


def live_counts(instances: Dict[str, Tuple[str, int]], now: Dict[str, Replica]) -> Dict[str, int]:
    """{service: replicas whose nanny has a live child} (pure)."""
    counts = {svc: 0 for svc, _ in instances.values()}
    for inst, (svc, _) in instances.items():
        r = now.get(inst)
        counts[svc] += r is not None and r.child is not None
    return counts
