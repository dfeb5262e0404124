"""Many reads of one host in one command: each started at once in the background with
its own stdout, stderr and exit status, then printed in order, each output base64 on
one line (pure builder and parser; `Host.prefetch` sends it).

Which reads: those the last two plans on this machine asked of that host, polls
left out (kept under the tool's cache directory, by host name, commands only: never
an answer). A read asked is answered from the batch until the plan ends or the host is
changed."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..config.settings import cache_dir
from .processes import Result

MARK = "@@ampel-read"
LIMIT = 64  # reads per batch, at most
Read = Tuple[Optional[str], str]  # (user, command)


def script(commands: List[str]) -> str:
    """One shell script running `commands` side by side (pure): their outputs in a
    private temporary directory, removed at its end."""
    lines = ['d=$(mktemp -d) || exit 1', 'trap \'rm -rf "$d"\' EXIT']
    for i, cmd in enumerate(commands):
        # (a subshell of its own: an `exit` in it ends that read alone)
        lines.append(f'{{ ( {cmd}\n) >"$d/{i}.o" 2>"$d/{i}.e" </dev/null; echo $? >"$d/{i}.c"; }} &')
    lines.append("wait")
    for i in range(len(commands)):
        lines.append(f'echo "{MARK} {i} $(cat "$d/{i}.c") $(base64 -w0 <"$d/{i}.o") $(base64 -w0 <"$d/{i}.e")"')
    return "\n".join(lines)


def parse(text: str) -> Dict[int, Result]:
    """{index: Result} from the script's output (pure); a line cut short is left out."""
    out = {}
    for line in text.splitlines():
        f = line.split(" ")
        if len(f) == 5 and f[0] == MARK and f[1].isdigit() and f[2].isdigit():
            try:
                stdout, stderr = (base64.b64decode(x).decode(errors="replace") for x in f[3:5])
            except ValueError:
                continue
            out[int(f[1])] = Result(stdout, stderr, int(f[2]))
    return out


def _store(hostname: str) -> Path:
    return cache_dir() / "reads" / f"{hostname}.json"


KEPT = 2  # plans whose reads are sent ahead: a plan on an empty site (the first deploy's) reads
# little of what the next one, on a deployed site, asks; the one before it likely did


def _plans(hostname: str) -> List[List[Read]]:
    """The reads of the last KEPT plans that asked `hostname`, newest first."""
    try:
        kept = json.loads(_store(hostname).read_text())
        plans = kept["plans"] if isinstance(kept, dict) else [kept]  # (a list: one plan, as kept before)
        return [[(u, c) for u, c in plan] for plan in plans][:KEPT]
    except (OSError, ValueError, TypeError, KeyError):
        return []


def load(hostname: str) -> List[Read]:
    """What the last KEPT plans asked of `hostname`, the newest's first, each once
    (none when not recorded or unreadable)."""
    return list(dict.fromkeys(read for plan in _plans(hostname) for read in plan))[:LIMIT]


def save(hostname: str, reads: List[Read]) -> None:
    """Keep this plan's reads of `hostname` for the next runs (best effort)."""
    path = _store(hostname)
    plans = [list(dict.fromkeys(reads))[:LIMIT]] + _plans(hostname)[:KEPT - 1]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"plans": plans}))
        tmp.replace(path)
    except OSError:
        pass
