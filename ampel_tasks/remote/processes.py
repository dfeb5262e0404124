"""A local process (OpenSSH's client, mostly), its stdin fed and both outputs read as
they come, and what Ctrl-C does to it."""
from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from ..config import console


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


class _Lines:
    """Collects a stream's bytes; with `emit`, hands over each complete line as it comes."""

    def __init__(self, emit: Optional[Callable[[str], None]]):
        self.emit = emit
        self.data = bytearray()
        self.buf = b""

    def feed(self, chunk: bytes) -> None:
        self.data += chunk
        if self.emit is None:
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self.emit(line.decode(errors="replace"))

    def finish(self) -> str:
        if self.emit is not None and self.buf:
            self.emit(self.buf.decode(errors="replace"))  # a last line without its newline
        return self.data.decode(errors="replace")


def execute(argv, data: Optional[bytes], on_out=None, on_err=None, shield: Optional[str] = None) -> Result:
    """Run argv, `data` on its stdin then EOF, reading both outputs as they come.

    The child has a session of its own: a terminal's Ctrl-C reaches the tool
    only, and the tool ends the child. With `shield` (what would be left half
    done) a first Ctrl-C only says so and waits for the child; the interrupt is
    raised once it has ended, a second one ends it at once.
    """
    p = subprocess.Popen(argv, stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    out, err = _Lines(on_out), _Lines(on_err)
    readers = [threading.Thread(target=_pump, args=(s, l), daemon=True) for s, l in ((p.stdout, out), (p.stderr, err))]
    for t in readers:
        t.start()
    try:
        if data is not None:
            try:
                p.stdin.write(data)
                p.stdin.close()
            except BrokenPipeError:
                pass
        code = _wait(p, shield)
    except KeyboardInterrupt:
        p.kill()
        p.wait()
        raise
    for t in readers:
        t.join()
    return Result(out.finish(), err.finish(), code)


def _wait(p: subprocess.Popen, shield: Optional[str]) -> int:
    if not shield:
        return p.wait()
    try:
        return p.wait()
    except KeyboardInterrupt:
        console.warn(f"interrupted while {shield}: stopping now would leave it half done, so the tool waits for it "
                     "to end (Ctrl-C again to abandon it anyway)")
    p.wait()
    raise KeyboardInterrupt


def _pump(stream, lines: _Lines) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        lines.feed(chunk)
