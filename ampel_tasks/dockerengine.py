"""The local Docker engine, through the docker SDK, with its faults as one line."""
from __future__ import annotations

from .errors import DeployError


def client():
    import docker

    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except Exception:
        import os

        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DeployError(f"cannot talk to the Docker engine at {where}; is dockerd running?") from None


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
