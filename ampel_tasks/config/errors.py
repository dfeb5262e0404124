"""The one exception type for expected failures, and the last line of defence
against tracebacks.

`DeployError` subclasses invoke's own `Exit`, so both `invoke` and `ampel-deploy`
print its message on stderr and exit 1 without a traceback (pyinvoke/invoke#269
prints one for every other exception). `install_excepthook` covers what happens
outside a task, e.g. a profile that is not valid YAML, which invoke loads before
any task runs.
"""
from __future__ import annotations

import os
import sys

from invoke.exceptions import Exit


class DeployError(Exit):
    """An expected failure: says what failed, where, and what to do."""

    def __init__(self, message: str, code: int = 1):
        self.text = message.strip()
        super().__init__(f"error: {self.text}", code)

    def __str__(self) -> str:
        return self.text


class Refusal(DeployError):
    """What the tool could read and refuses (an env file deploy/up would trip over, a
    secret held nowhere). Unlike a fact it could not read (a host --dry cannot reach),
    it stops a --dry run as it stops a real one."""


def debug_enabled() -> bool:
    """True when the operator asked for tracebacks (`--debug` or INVOKE_DEBUG)."""
    if os.environ.get("INVOKE_DEBUG"):
        return True
    return "-d" in sys.argv[1:2] or "--debug" in sys.argv


def describe(exc: BaseException) -> str:
    """One line for an exception that escaped our own checks."""
    if "yaml" in type(exc).__module__:  # PyYAML, or a copy vendored by invoke
        where = getattr(exc, "problem_mark", None)
        name = getattr(where, "name", "a config file")
        line = f" line {where.line + 1}" if where is not None else ""
        return f"{name}{line} is not valid YAML ({getattr(exc, 'problem', exc)}); fix the file"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        f"unexpected {type(exc).__name__}: {text} "
        "(re-run with --debug for the traceback)"
    )


def _excepthook(kind, exc, tb):  # pragma: no cover - exercised through subprocess tests
    if isinstance(exc, KeyboardInterrupt):
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(exc, BrokenPipeError):  # e.g. `invoke --list | head`
        os._exit(0)
    if debug_enabled():
        sys.__excepthook__(kind, exc, tb)
        return
    print(f"error: {describe(exc)}", file=sys.stderr)


def install_excepthook() -> None:
    """Route uncaught exceptions to one `error:` line (Python exits 1 after it)."""
    sys.excepthook = _excepthook
