"""Reading what singularity-stack prints: the `list` table and `logs` lines."""
from __future__ import annotations

import re
from typing import Dict

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+):(\d+) (\S+) \u23b8 ?(.*)$")


def parse_list(text: str) -> Dict[str, Dict[str, dict]]:
    """{stack: {service: {"replicas": n, "instance": id}}} from `singularity-stack list`.

    Columns are fixed width: Stack (30), Services (30), Replicas (7), Instance (8);
    a blank Replicas cell means one replica.
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


def parse_log_line(line: str):
    """(timestamp, service, replica, source, msg) or None."""
    m = LOG_LINE.match(line)
    if not m:
        return None
    t, service, replica, source, msg = m.groups()
    return t, service, int(replica), source, msg
