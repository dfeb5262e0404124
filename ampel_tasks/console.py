"""What the operator sees: step headers, notes, commands shown in --dry, and the
redaction every line passes through so no secret value is ever printed."""
from __future__ import annotations

import sys
import threading

_secrets: set = set()
_lock = threading.Lock()


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


def out(text: str = "", stream=None) -> None:
    stream = stream or sys.stdout
    with _lock:
        print(redact(text), file=stream, flush=True)


def step(name: str, text: str) -> None:
    out(_color("1;34", f"==> {name}", sys.stdout) + f": {text}")


def note(text: str) -> None:
    out(f"    {text}")


def skip(name: str, reason: str) -> None:
    out(_color("2", f"==> {name}", sys.stdout) + f": skip ({reason})")


def warn(text: str) -> None:
    out(_color("33", f"warning: {text}", sys.stderr), stream=sys.stderr)


def command(host: str, cmd: str, user: str | None = None) -> None:
    """A command as --dry shows it (and --echo would)."""
    who = f" (as {user})" if user else ""
    out(f"    [{host}]{who} $ {cmd}")


def diff(text: str) -> None:
    for line in text.splitlines():
        out(f"    {line}")
