"""One poll of a stack's state on its host, as a command and a pure parser: the
replicas' processes (replicas.py), whether each published port answers, and what each
replica file holds past an offset (at most a byte limit), each file headed by
`@@F <instance> <stdout|stderr> <size>`. The health gate (health.py) keeps the offsets."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Dict, List, Tuple

from . import replicas


@dataclass(frozen=True)
class FileTail:
    instance: str
    source: str  # stdout | stderr
    size: int  # the file's size when read (smaller than the offset: truncated by a deploy)
    text: str  # what it holds past the offset asked for


@dataclass(frozen=True)
class Poll:
    replicas: Dict[str, replicas.Replica]
    ports: Dict[int, bool]  # {port: answers}
    files: List[FileTail]


def command(user: str, replica_log: str, ports, offsets: Dict[Tuple[str, str], int], limit: int) -> str:
    """The poll's one command (pure): `offsets` {(instance, source): bytes already read}."""
    parts = [replicas.command(user, replica_log), "echo @@PORTS"]
    for p in ports:
        parts.append(f"(timeout 2 bash -c '</dev/tcp/127.0.0.1/{int(p)}' 2>/dev/null && echo {int(p)} ok || echo {int(p)} no)")
    for (inst, src), off in offsets.items():
        f = shlex.quote(replica_log.format(user=user, instance=inst, source=src))
        parts.append(
            f"n=$(stat -c %s {f} 2>/dev/null || echo 0); echo \"@@F {inst} {src} $n\"; "
            f"if [ \"$n\" -gt {int(off)} ]; then tail -c +{int(off) + 1} {f} | head -c {int(limit)}; fi; echo")
    return "; ".join(parts)


def parse(text: str, user: str, replica_log: str) -> Poll:
    """The output of `command` (pure)."""
    head, _, rest = text.partition("@@PORTS")
    port_text, *chunks = rest.split("@@F ")
    ports = {int(p): ok == "ok" for p, ok in (l.split() for l in port_text.splitlines() if len(l.split()) == 2)}
    files = []
    for chunk in chunks:
        header, _, body = chunk.partition("\n")
        inst, src, size = header.split()[:3]
        files.append(FileTail(inst, src, int(size), body[:-1] if body.endswith("\n") else body))
    return Poll(replicas.parse(head, user, replica_log), ports, files)
