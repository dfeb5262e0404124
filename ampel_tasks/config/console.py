"""What the operator sees: step headers, notes, commands shown in --dry, and the
redaction every line passes through so no secret value is ever printed.

Two levels: `out` (and step, note, skip, ...) is what the operator reads; `detail`
is everything else (build output, the hosts' own output, layer by layer push
progress). Every line of both goes, redacted, into the run log when one is open.
Details are printed only with `--verbose`; on a terminal the latest one is shown
as a transient status line instead, so a long step shows it is alive.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import List, Optional, Sequence

_secrets: set = set()
_lock = threading.Lock()
_log = None  # the run log (a text file), when one is open
verbose = False
_transient = False  # a status line is on the terminal and must be cleared first


def register_secret(value: str) -> None:
    """Remember a secret value; it is masked in everything printed from now on."""
    value = value.strip()
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, "*****")
    return text


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _color(code: str, text: str, stream) -> str:
    return f"\033[{code}m{text}\033[0m" if _isatty(stream) else text


def _clear_transient() -> None:
    global _transient
    if _transient:
        sys.stdout.write("\r\033[K")
        _transient = False


def _to_log(text: str) -> None:
    if _log is not None:
        _log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        _log.flush()


def out(text: str = "", stream=None) -> None:
    stream = stream or sys.stdout
    text = redact(text)
    with _lock:
        _clear_transient()
        print(text, file=stream, flush=True)
        _to_log(text)


def logged(text: str) -> None:
    """A line for the run log only (e.g. the final error, which invoke prints)."""
    with _lock:
        _to_log(redact(text))


def detail(text: str) -> None:
    """A line the run log keeps and only --verbose prints (a transient status on a terminal)."""
    global _transient
    text = redact(text)
    with _lock:
        _to_log("  | " + text)
        if verbose:
            _clear_transient()
            print(text, flush=True)
        elif _isatty(sys.stdout) and text.strip():
            width = shutil.get_terminal_size((80, 20)).columns - 1
            sys.stdout.write("\r\033[K" + _color("2", text.strip()[:width], sys.stdout))
            sys.stdout.flush()
            _transient = True


def open_log(path: str) -> Optional[str]:
    """Start the run log at `path` (its directory made, mode 0600); None if it cannot be written."""
    global _log
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        warn(f"no run log: cannot write {path}: {exc.strerror}")
        return None
    with _lock:
        _log = os.fdopen(fd, "a", encoding="utf-8")
    return path


def close_log() -> None:
    global _log
    with _lock:
        _clear_transient()
        if _log is not None:
            _log.close()
            _log = None


def table(header: Sequence[str], rows: List[Sequence[str]]) -> None:
    """A plain aligned table (the summary a run ends with)."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        out("  ".join(c.rjust(w) if c[:1].isdigit() else c.ljust(w) for c, w in zip(row, widths)).rstrip())


def step(name: str, text: str) -> None:
    out(_color("1;34", f"==> {name}", sys.stdout) + f": {text}")


def note(text: str) -> None:
    out(f"    {text}")


def skip(name: str, reason: str) -> None:
    out(_color("2", f"==> {name}", sys.stdout) + f": skip ({reason})")


def warn(text: str) -> None:
    text = redact(text)
    with _lock:
        _clear_transient()
        print(_color("33", f"warning: {text}", sys.stderr), file=sys.stderr, flush=True)
        _to_log(f"warning: {text}")


def trace(head: str, command: str) -> None:
    """`trace: HEAD: COMMAND` on stderr when AMPEL_TASKS_TRACE is set (the benchmarks and
    a sandbox test parse them): the command redacted, then cut to 150 characters; the
    line whole, though hosts read on threads side by side. Nothing done otherwise."""
    if os.environ.get("AMPEL_TASKS_TRACE"):
        line = f"trace: {head}: {redact(command)[:150]}\n"
        with _lock:
            sys.stderr.write(line)
            sys.stderr.flush()


def command(host: str, cmd: str, user: str | None = None) -> None:
    """A command as --dry shows it (and --echo would)."""
    who = f" (as {user})" if user else ""
    out(f"    [{host}]{who} $ {cmd}")


def diff(text: str) -> None:
    for line in text.splitlines():
        out(f"    {line}")
