"""The private registry's HTTP API (v2): whether it answers, the digest and manifest it
serves for a tag, its tags, a manifest's deletion (prune)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Optional

from ..config.errors import DeployError

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


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
