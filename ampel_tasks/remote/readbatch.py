"""Many reads of one host in one command: each started at once in the background with
its own stdout, stderr and exit status, then printed in order, each output base64 on
one line (pure builder and parser; `Host.prefetch` sends it).

Which reads: those the last plan on this machine asked of that host, polls left out
(kept under the tool's cache directory, by host name, commands only: never an
answer). A read asked is answered from the batch until the plan ends or the host is
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


def load(hostname: str) -> List[Read]:
    """The reads the last plan asked of `hostname` (none when not recorded or unreadable)."""
    try:
        return [(u, c) for u, c in json.loads(_store(hostname).read_text())][:LIMIT]
    except (OSError, ValueError, TypeError):
        return []


def save(hostname: str, reads: List[Read]) -> None:
    """Keep this plan's reads of `hostname` for the next run (best effort)."""
    path = _store(hostname)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(list(dict.fromkeys(reads))[:LIMIT]))
        tmp.replace(path)
    except OSError:
        pass
