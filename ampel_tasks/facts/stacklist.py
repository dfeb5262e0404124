"""Reading what singularity-stack and Singularity 2.x print.

- `singularity-stack list`: the CONFIGURED stacks and replica counts (0.2.2 reads
  them from its cache; they prove nothing about live processes);
- `singularity instance.list`: the instances that really run;
- the replicas' output, as `singularity-stack logs` shows it in 0.2.2
  (`(<service padded>:<replica> <source padded to 6>) <line>`) and in later releases
  (`<date> <service>:<replica> <source padded to 7> \u23b8 <line>`), and the nanny's
  own lines, which mean a replica died or restarts.
"""
from __future__ import annotations

import hashlib
import re
from typing import Dict, List, NamedTuple, Optional

LOG_022 = re.compile(r"^\((\S+?) *:(\d+) (stdout|stderr) ?\) (.*)$")
LOG_LATER = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+):(\d+) (\S+) +\u23b8 ?(.*)$")
# singularity-stack 0.2.2's nanny, writing into the replica's stdout
NANNY = re.compile(
    r"^(?P<instance>[0-9a-f]{8}) instance is gone!$"
    r"|^sleeping (?P<delay>[0-9.]+) before restart$"
    r"|^failed permanently with status (?P<status>-?\d+)$"
)


class LogLine(NamedTuple):
    service: str
    replica: int
    source: str
    msg: str
    time: str = ""


def instance_name(stack: str, service: str, replica: int) -> str:
    """singularity-stack's instance name: sha1("<stack>.<service>.<replica>")[:8]."""
    return hashlib.sha1(f"{stack}.{service}.{replica}".encode()).hexdigest()[:8]


def parse_list(text: str) -> Dict[str, Dict[str, dict]]:
    """{stack: {service: {"replicas": n, "instance": id}}} from `singularity-stack list`.

    Columns are fixed width: Stack (30), Services (30), Replicas (7), Instance (8);
    a blank Replicas cell means one replica. These are configured counts.
    """
    stacks: Dict[str, Dict[str, dict]] = {}
    current = None
    body = False
    for line in text.splitlines():
        if line.startswith("=" * 10):
            body = True
            continue
        if not body or not line.strip() or line.startswith("-" * 10):
            continue
        stack, service = line[0:30].strip(), line[31:61].strip()
        replicas, instance = line[62:69].strip(), line[70:78].strip()
        if stack:
            current = stack
            stacks.setdefault(stack, {})
        if current is None or not service:
            continue
        stacks[current][service] = {"replicas": int(replicas) if replicas.isdigit() else 1, "instance": instance}
    return stacks


def parse_instances(text: str) -> Dict[str, dict]:
    """{name: {"pid": n, "image": path}} from `singularity instance.list` (2.x):
    a header `DAEMON NAME  PID  CONTAINER IMAGE`, then one row per live instance."""
    out = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[1].isdigit():
            out[parts[0]] = {"pid": int(parts[1]), "image": parts[2].strip() if len(parts) > 2 else ""}
    return out


def parse_log_line(line: str) -> Optional[LogLine]:
    """A line of `singularity-stack logs`, in 0.2.2's format or a later release's."""
    m = LOG_022.match(line)
    if m:
        service, replica, source, msg = m.groups()
        return LogLine(service, int(replica), source, msg)
    m = LOG_LATER.match(line)
    if m:
        t, service, replica, source, msg = m.groups()
        return LogLine(service, int(replica), source, msg, t)
    return None


def nanny_failure(msg: str) -> Optional[str]:
    """What a nanny line says went wrong, or None for any other line."""
    m = NANNY.match(msg.strip())
    if not m:
        return None
    if m.group("instance"):
        return "its instance is gone"
    if m.group("delay") is not None:
        return "its process ended and is restarted"
    return f"it failed permanently with status {m.group('status')}"


def split_new_text(data: bytes, at_eof_limit: bool) -> tuple:
    """(complete lines, bytes consumed) from newly read bytes: a trailing partial
    line waits for the next read unless the read hit its size limit."""
    if at_eof_limit or data.endswith(b"\n"):
        end = len(data)
    else:
        end = data.rfind(b"\n") + 1
    lines = data[:end].decode(errors="replace").splitlines()
    return lines, end


def expected_instances(stack: str, want: Dict[str, tuple]) -> Dict[str, tuple]:
    """{instance name: (service, replica)} for every configured replica."""
    return {instance_name(stack, svc, i): (svc, i) for svc, (reps, _) in want.items() for i in range(reps)}


def live_counts(stack: str, want: Dict[str, tuple], live: Dict[str, dict]) -> Dict[str, int]:
    counts = {svc: 0 for svc in want}
    for name, (svc, _) in expected_instances(stack, want).items():
        if name in live:
            counts[svc] += 1
    return counts


def lines_with_source(service: str, replica: int, source: str, lines: List[str]) -> List[LogLine]:
    return [LogLine(service, replica, source, l) for l in lines]
