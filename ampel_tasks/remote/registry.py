"""The private registry of the runbook: its container, on loopback only (its HTTP API:
registryapi.py; a push to it: registrypush.py)."""
from __future__ import annotations

from typing import Optional

from ..config import console
from . import localports
from ..config.errors import DeployError
from .registryapi import wait_ready



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
