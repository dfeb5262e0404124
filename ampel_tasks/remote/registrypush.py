"""A verified push to the private registry through the engine, with its progress."""
from __future__ import annotations

import time

from ..config import console
from ..config.errors import DeployError
from .registryapi import answers


def push(client, repository: str, tag: str, address: str = "127.0.0.1", port: int = 5000) -> str:
    """Push with progress; any errorDetail in the stream is an error (docker/docker-py#3161).

    The engine retries a failed upload for about a minute; when it starts to
    retry and the registry does not answer any more, the push ends at once.
    """
    digest = None
    progress = PushProgress()
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "errorDetail" in chunk or "error" in chunk:
            detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
            raise DeployError(f"push of {repository}:{tag} failed: {detail}")
        if str(chunk.get("status", "")).startswith("Retrying in") and not answers(address, port):
            raise DeployError(f"push of {repository}:{tag} failed: the registry on {address}:{port} stopped answering "
                              "(is its container running? `docker ps -a`); the layers it stored are kept, re-run to "
                              "send the rest")
        aux = chunk.get("aux") or {}
        if aux.get("Digest"):
            digest = aux["Digest"]
        line = progress.feed(chunk)
        if line:
            console.detail(line)
    if digest is None:
        raise DeployError(f"push of {repository}:{tag} ended without a digest; the registry may have refused it")
    console.note(progress.summary())
    return digest


class PushProgress:
    """Bytes pushed and rate, from the engine's push stream (pure: fed chunk by chunk)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.t0 = clock()
        self.sent = {}  # layer -> bytes sent so far
        self.done = {}  # layer -> final status
        self.shown = 0.0

    def feed(self, chunk: dict) -> Optional[str]:
        status, layer = chunk.get("status", ""), chunk.get("id", "")
        if not layer:
            return status or None
        if status == "Pushing":
            current = (chunk.get("progressDetail") or {}).get("current")
            if isinstance(current, int):
                self.sent[layer] = max(current, self.sent.get(layer, 0))
            now = self.clock()
            if now - self.shown < 0.5:
                return None
            self.shown = now
            return f"push: {mib(self.bytes)} MiB sent ({self.rate()})"
        if status in ("Pushed", "Layer already exists") or status.startswith("Mounted from"):
            self.done[layer] = status
            return f"push: layer {layer}: {status}"
        return None

    @property
    def bytes(self) -> int:
        return sum(self.sent.values())

    def rate(self) -> str:
        return rate(self.bytes, self.clock() - self.t0)

    def summary(self) -> str:
        pushed = sum(1 for v in self.done.values() if v == "Pushed")
        kept = len(self.done) - pushed
        return (f"pushed {pushed} layer(s), {mib(self.bytes)} MiB in {self.clock() - self.t0:.0f} s ({self.rate()}); "
                f"{kept} already in the registry")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def rate(n: int, seconds: float) -> str:
    return f"{n / 2**20 / seconds:.1f} MiB/s" if seconds > 0 else "- MiB/s"
