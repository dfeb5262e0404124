"""The local Docker engine, through the docker SDK, with its faults as one line."""
from __future__ import annotations

from .errors import DeployError


def client():
    import docker

    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except Exception as exc:
        raise DeployError(
            f"cannot talk to the Docker engine ({type(exc).__name__}: {str(exc)[:160]}); is dockerd running?"
        ) from None


def image_or_none(c, ref: str):
    import docker

    try:
        return c.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
