"""Task push: the runbook's "... and push a new Ampel image" to the private registry."""
from __future__ import annotations


from ..config import console
from ..remote import dockerengine, registry, registryapi, registrypush
from ..config.errors import DeployError
from ..flow.plan import Decision, Part
from ..facts.site import Site
from . import evidence


def _push_evidence(r):
    site = Site(r)
    s = r.settings
    reg = s.registry
    client = dockerengine.engine(r)
    img = dockerengine.image_or_none(client, site.image_ref)
    repo = f"{site.registry}/{s.image['name']}"
    served = registryapi.served_digest(reg["address"], reg["port"], s.image["name"], site.image_tag) if registryapi.reachable(reg) else None
    local = set()
    if img is not None:
        local = {d.split("@", 1)[1] for d in img.attrs.get("RepoDigests", []) if d.startswith(repo + "@")}
    return {"client": client, "image": img, "repo": repo, "served": served, "local": local}


def decide_push(r):
    """Decision for `push`: does the registry already serve this image's digest?"""
    site = Site(r)
    if r.target.reused_digest and "image" not in r.changed:
        return Decision("push", "skip", f"the running image {site.image_ref} is reused: nothing to push",
                        {"digest": r.target.reused_digest})
    ev = evidence(r, "push", lambda: _push_evidence(r))
    if ev is None or ev["image"] is None:
        return None
    if ev["served"] and ev["served"] in ev["local"]:
        return Decision("push", "skip", f"registry already serves {site.pushed_ref} as {ev['served'][:19]}",
                        {"digest": ev["served"]})
    if ev["served"]:
        return Decision("push", "run", f"registry serves another image as {site.pushed_ref}")
    return Decision("push", "run", f"registry does not have {site.pushed_ref}")


def announce(r, part: Part) -> str:
    site = Site(r)
    return f"{site.image_ref} -> {site.pushed_ref}"


def skipped(r, part: Part) -> None:
    r.outcome.pushed_digest = part.decision.data["digest"]


def act(r, part: Part) -> None:
    """Push to the loopback registry and verify the digest it serves."""
    site = Site(r)
    s = r.settings
    reg = s.registry
    if r.dry:
        r.changed.add("push")
    client = r.evidence("the Docker engine", dockerengine.client)
    if client is None:  # --dry on a machine whose engine is not running
        console.command("local", registry.run_command(s))
        console.command("local", f"docker tag {s.image['name']} {site.pushed_ref}")
        console.command("local", f"docker push {site.pushed_ref}")
        return
    registry.ensure(client, s, r.dry)
    img = dockerengine.image_or_none(client, site.image_ref)
    repo = f"{site.registry}/{s.image['name']}"
    if r.dry or img is None:
        if img is None and not r.dry:
            raise DeployError(f"image {site.image_ref} does not exist; run `invoke image --version {site.version}`")
        console.command("local", f"docker tag {s.image['name']} {site.pushed_ref}")
        console.command("local", f"docker push {site.pushed_ref}")
        return
    img.tag(repo, site.image_tag)
    digest = registrypush.push(client, repo, site.image_tag, reg["address"], reg["port"])
    served = registryapi.served_digest(reg["address"], reg["port"], s.image["name"], site.image_tag)
    if served != digest:
        raise DeployError(f"registry serves {served} for {site.pushed_ref}, but the push reported {digest}")
    console.note(f"verified: registry serves {site.pushed_ref} as {digest}")
    r.outcome.pushed_digest = digest
    r.changed.add("push")
