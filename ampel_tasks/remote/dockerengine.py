"""The local Docker engine, through the docker SDK, with its faults as one line."""
from __future__ import annotations

from ..config.errors import DeployError


def client():
    import os

    import docker

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except Exception as exc:
        raise DeployError(engine_fault(where, exc)) from None


def engine_fault(where: str, exc: BaseException) -> str:
    """One line for a Docker engine that cannot be used, by its cause (pure)."""
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)
    text = " ".join(str(x) for x in chain)
    if any(isinstance(x, PermissionError) for x in chain) or "Permission denied" in text:
        return (f"permission denied on the Docker engine at {where}: run as a member of the docker group "
                "(`sudo usermod -aG docker $USER`, then log in again) or as root")
    if any(isinstance(x, (FileNotFoundError, ConnectionRefusedError)) for x in chain) or \
            "No such file" in text or "Connection refused" in text:
        return f"nothing listens at {where}; is dockerd running?"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    said = f"HTTP {status}" if status else (str(exc).splitlines() or ["no answer"])[0][:160]
    return f"{where} does not answer as a Docker engine ({said}); check DOCKER_HOST"


def engine(r):
    """The run's one Docker client, connected and checked once per run."""
    c = r.evidence("the Docker engine", client)
    return c if c is not None else client()  # --dry without an engine: the same one-line error


def image_or_none(c, ref: str):
    import docker

    try:
        return c.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
