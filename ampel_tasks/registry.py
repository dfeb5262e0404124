"""The private registry of the runbook, on loopback only, and verified pushes."""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Optional

from . import console, localports
from .errors import DeployError

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def run_command(s) -> str:
    """The runbook's command, but bound to loopback by the registry itself.

    Not `-p 127.0.0.1:PORT:5000`: a port Docker publishes on 127.0.0.1 answers
    packets for 127.0.0.1 that a neighbour on the hosts' network sends to this
    machine on engines before the fix of moby/moby#45610 (the sandbox's probe
    shows it). On the host's network the registry listens where it says, and the
    kernel drops such packets as martians.
    """
    r = s.registry
    return (
        f"docker run -d --network host {' '.join(f'-e {k}={v}' for k, v in run_environment(s).items())} "
        f"--restart=always --name {r['name']} {r['image']}"
    )


def run_environment(s) -> dict:
    r = s.registry
    # prune deletes the tags no kept deployment runs
    return {"REGISTRY_HTTP_ADDR": f"{r['address']}:{r['port']}", "REGISTRY_STORAGE_DELETE_ENABLED": "true"}


def _published(attrs: dict) -> list:
    ports = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    return [(b.get("HostIp") or "0.0.0.0", int(b["HostPort"])) for bs in ports.values() for b in (bs or [])]


def listening(attrs: dict) -> list:
    """Where a registry container answers, from its `docker inspect` (pure): its
    own REGISTRY_HTTP_ADDR on the host's network (port 5000 on every address
    without it), else the ports Docker publishes for it."""
    env = dict(e.split("=", 1) for e in (attrs.get("Config") or {}).get("Env") or [] if "=" in e)
    if (attrs.get("HostConfig") or {}).get("NetworkMode") == "host":
        host, _, port = env.get("REGISTRY_HTTP_ADDR", ":5000").rpartition(":")
        return [(host or "0.0.0.0", int(port))] if port.isdigit() else []
    return _published(attrs)


def check_container(attrs: dict, s) -> Optional[str]:
    """The container named ampel.registry.name, checked against the configuration
    (pure): an error when it is reachable from the network or answers elsewhere,
    else None."""
    r = s.registry
    where, seen = f"{r['address']}:{r['port']}", listening(attrs)
    open_to = [f"{ip}:{port}" for ip, port in seen if ip not in ("127.0.0.1", "::1")]
    if open_to:
        return (f"container {r['name']} serves the registry on {open_to[0]}, reachable from the network; remove it "
                f"(`docker rm -f {r['name']}`) and re-run to get it on {where} only")
    if seen and (r["address"], r["port"]) not in seen:
        ip, port = seen[0]
        return (f"container {r['name']}: its registry listens on {ip}:{port}, not on {where} (ampel.registry.address, "
                f".port); set ampel.registry.port to {port}, or give the tool's registry another name "
                "(ampel.registry.name)")
    return None


def ensure(client, s, dry: bool) -> None:
    """Make sure the registry answers on 127.0.0.1:<port>: start, restart or create it."""
    import docker

    r = s.registry
    try:
        c = client.containers.get(r["name"])
    except docker.errors.NotFound:
        c = None
    started = _start(c, s, dry) if c is not None else _create(client, s, dry)
    if started and not dry:
        wait_ready(r["address"], r["port"])


def _start(c, s, dry: bool) -> bool:
    """The registry's container exists: it must be ours, then running. False under --dry
    when it would be started."""
    r = s.registry
    problem = check_container(c.attrs, s)
    if problem:
        raise DeployError(problem)
    if _published(c.attrs):
        console.warn(exposed_warning(s))
    if c.status == "running":
        console.note(f"registry {r['name']} already running on {r['address']}:{r['port']}")
        return True
    console.note(f"registry {r['name']} exists but is {c.status}: starting it")
    if dry:
        console.command("local", f"docker start {r['name']}")
        return False
    c.start()
    return True


def _create(client, s, dry: bool) -> bool:
    import docker

    r = s.registry
    if not localports.port_free(r["address"], r["port"]):
        raise DeployError(f"registry port {r['port']} on {r['address']} is held by {localports.port_holder(r['port'])}; "
                          "stop it or set ampel.registry.port")
    if dry:
        console.command("local", run_command(s))
        return False
    console.note(f"starting the registry: {run_command(s)}")
    try:
        client.containers.run(r["image"], detach=True, name=r["name"], network_mode="host",
                              restart_policy={"Name": "always"}, environment=run_environment(s))
    except docker.errors.ImageNotFound:
        raise DeployError(f"image {r['image']} is not available locally; load it (`docker load`) or set ampel.registry.image") from None
    except docker.errors.APIError as exc:
        raise DeployError(f"cannot start the registry: {exc.explanation or exc}") from None
    return True


def exposed_warning(s) -> str:
    """What to do about a registry made by an earlier release (published with -p)."""
    r = s.registry
    again = run_command(s).replace(f"--name {r['name']}", f"--volumes-from {r['name']}-old --name {r['name']}")
    return (
        f"registry {r['name']} is published through Docker's port mapping, which engines before the fix of "
        f"moby/moby#45610 answer from the hosts' network; make it listen on loopback by itself, keeping its "
        f"content: docker stop {r['name']} && docker rename {r['name']} {r['name']}-old && {again} && "
        f"docker rm {r['name']}-old"
    )


def reachable(reg: dict) -> bool:
    """The configured registry (ampel.registry) answers."""
    return answers(reg["address"], reg["port"])


def answers(address: str, port: int) -> bool:
    try:
        wait_ready(address, port, timeout=1)
        return True
    except DeployError:
        return False


def wait_ready(address: str, port: int, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://{address}:{port}/v2/", timeout=2).close()
            return
        except (urllib.error.URLError, OSError):
            if time.time() > deadline:
                raise DeployError(f"registry on {address}:{port} does not answer /v2/ after {timeout:.0f} s") from None
            time.sleep(0.2)


def served_digest(address: str, port: int, name: str, tag: str) -> Optional[str]:
    """The manifest digest the registry serves for name:tag, or None."""
    req = urllib.request.Request(
        f"http://{address}:{port}/v2/{name}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_V2}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise DeployError(f"registry on {address}:{port} answered {exc.code} for {name}:{tag}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"registry on {address}:{port} is not reachable: {getattr(exc, 'reason', exc)}") from None


def manifest(address: str, port: int, name: str, tag: str) -> Optional[dict]:
    """The image manifest the registry serves for name:tag (layer sizes), or None."""
    import json

    req = urllib.request.Request(f"http://{address}:{port}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_V2})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def tags(address: str, port: int, name: str) -> list:
    """The tags the registry lists for `name` ([] when it has none or does not answer)."""
    import json

    try:
        with urllib.request.urlopen(f"http://{address}:{port}/v2/{name}/tags/list", timeout=10) as resp:
            return json.loads(resp.read()).get("tags") or []
    except (urllib.error.URLError, OSError, ValueError):
        return []


def delete_manifest(address: str, port: int, name: str, digest: str) -> None:
    """Delete a manifest (and so every tag of it); gone already is fine."""
    req = urllib.request.Request(f"http://{address}:{port}/v2/{name}/manifests/{digest}", method="DELETE",
                                 headers={"Accept": MANIFEST_V2})
    try:
        urllib.request.urlopen(req, timeout=30).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return  # another tag of the same digest took it already
        raise DeployError(f"registry refused to delete {digest[:19]} ({exc.code}); is it started with "
                          "REGISTRY_STORAGE_DELETE_ENABLED=true? (`docker rm -f registry` and `invoke push` "
                          "start it so)") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeployError(f"registry on {address}:{port} is not reachable: {getattr(exc, 'reason', exc)}") from None


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

