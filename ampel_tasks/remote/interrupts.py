"""Ctrl-C held back over a short call whose result must be known in order to undo it."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


@contextmanager
def deferred():
    """Run the block with SIGINT recorded instead of raised; raise KeyboardInterrupt
    once it ends. For a request that makes something the tool must remove on an
    interrupt (a container the engine creates): interrupted mid-request, the tool
    would not know it exists, and the engine would finish making it anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    heard = []
    previous = signal.signal(signal.SIGINT, lambda *_: heard.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if heard:
        raise KeyboardInterrupt
