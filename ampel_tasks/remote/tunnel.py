"""The registry tunnel to a host: the runbook's `ssh -R`, on the host's one connection."""
from __future__ import annotations

from ..config import console
from .hosts import Host


class Tunnel:
    """The runbook's `ssh -R 5000:localhost:5000 HOST`, on the host's one connection.

    `-O forward` returns once the remote side listens, or fails if it cannot
    (kamal#1674: a pull started before the forward was up failed); the forward
    is cancelled when the block ends.
    """

    def __init__(self, host: Host, remote_port: int, local_host: str, local_port: int):
        self.host = host
        self.spec = (remote_port, local_host, local_port)

    def __enter__(self):
        remote, local_host, local_port = self.spec
        if self.host.dry:
            console.command("local", f"ssh -O forward -R {remote}:{local_host}:{local_port} {self.host.spec.hostname}"
                                     " (the tunnel, on the host's connection)")
            return self
        self.host.connection().forward(*self.spec)
        return self

    def __exit__(self, *exc):
        if not self.host.dry and self.host._master is not None:
            self.host._master.forward(*self.spec, cancel=True)
        return False
