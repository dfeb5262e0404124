"""Sizes of files and directories on a host: the commands that list them and the one
parser of their `SIZE PATH` lines (prune's inventory, the health gate's replica files)."""
from __future__ import annotations

import re
import shlex
from typing import Dict, Iterable


def stat_command(paths: Iterable[str]) -> str:
    """Each existing file's size (pure); a missing one is left out."""
    return "stat -c '%s %n' " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null"


def files_command(directory: str, glob: str) -> str:
    """The size of each file in `directory` matching `glob` (pure; names relative to it;
    the glob is the shell's, unquoted)."""
    return (f"cd {shlex.quote(directory)} 2>/dev/null && for f in {glob}; do [ -f \"$f\" ] && "
            f"stat -c '%s %n' \"$f\"; done; true")


def directories_command(glob: str) -> str:
    """The disk use of each directory matching `glob` (pure; the glob is the shell's)."""
    return f"for d in {glob}; do [ -d \"$d\" ] && du -sb \"$d\"; done; true"


def parse(text: str) -> Dict[str, int]:
    """'SIZE PATH' lines (stat -c '%s %n', du -sb) -> {path: size} (pure)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"(\d+)[ \t](.+)", line.strip())  # (du's tab, stat's space; a path may hold either)
        if m:
            out[m.group(2)] = int(m.group(1))
    return out
