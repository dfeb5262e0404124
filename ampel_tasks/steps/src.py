"""Task src: AMPEL_SRC on each stack host (burst, and transit, whose archive mounts
its initdb directory from there), copied out of the image once, each repo at the
commit wanted for the version; work in a copy is never moved away."""
from __future__ import annotations

import json
import shlex
from pathlib import Path


from ..config import console
from ..flow import run as runs
from ..facts import dockerfile, sources, state
from ..config.errors import DeployError
from ..flow.plan import Decision, Part, host_label, per_host
from ..facts.site import Site, stack_sites
from . import image


def _src_evidence(r, site):
    host = site.stack_host
    res = host.fact(f"stat -c %U {shlex.quote(site.ampel_src)}", user=site.src_user)
    if res is None:
        return None
    exists = res.ok
    copies = sources.gather(host, site, r.settings, site.version, image.upstream_refs(r)) if exists else {}
    running = state.running_manifest(r)
    if running.get("version") == site.version and running.get("ampel_src") == site.ampel_src:
        # the running version is what runs: its recorded commits, wherever upstream has moved since
        sources.want_recorded(copies, running.get("sources") or {}, site.version, r.settings.source["tag_pattern"])
    return {"exists": exists, "owner": res.stdout.strip() if exists else "", "copies": copies,
            "added": sources.added_repos(copies, _image_repos(r, site)) if exists else []}


def src_evidence(r, site=None):
    """A stack host's copies (default burst's) and what upstream wants of them, read
    once per run (plan, src, test)."""
    site = site or Site(r)
    return r.evidence(_key(site), lambda: _src_evidence(r, site))


def _key(site) -> str:
    return "src evidence" + (f" {site.stack_host.name}" if site.archive else "")


def _image_repos(r, site) -> list:
    """The repos under /Ampel of the image this deployment runs: its labels (built
    or reused), else, for an image still to be built, the recipe's clone lines."""
    labels = state.image_labels(r, site)
    repos = list(json.loads(labels.get(f"{r.settings.image['label_prefix']}.repos", "{}") or "{}"))
    return repos or _recipe_repos(r.settings.image_dir)


def _recipe_repos(image_dir) -> list:
    """The directories under /Ampel the recipe's clone lines make (none without a recipe here)."""
    recipe = Path(image_dir) / "Dockerfile"
    if not recipe.is_file():
        return []
    return [line.directory for line in dockerfile.clone_lines(recipe.read_text())]


def decide_src(r):
    """Decision for `src`, per stack host: AMPEL_SRC exists (made from the image once,
    owned by the configured user), holds every repo of the image, and every host copy
    is at the commit wanted for the version; work in a copy is never lost."""
    return per_host("src", {site.stack_host.name: _decide_on(r, site) for site in stack_sites(r)})


def _decide_on(r, site):
    host = site.stack_host
    ev = src_evidence(r, site)
    if ev is None:
        return None
    if not ev["exists"]:
        return Decision("src", "run", f"{site.ampel_src} does not exist on {host.name}: copy it out of the image as "
                                      f"{site.src_owner}, then bring each repo to the commits wanted for {site.version}")
    problem = sources.owner_problem(ev["owner"], site.src_owner, site.ampel_src)
    moves, refusals = sources.plan(ev["copies"], state.running_version(r))
    if problem or refusals:
        raise DeployError(f"on {host.name}, " + "; ".join(([problem] if problem else []) +
                                                          [f"{site.ampel_src}: {x}" for x in refusals]))
    why = [f"{c.name} {c.head[:10]} -> {c.wanted[:10]} ({c.wanted_ref})" for c in moves]
    why += [f"{name} added by the image: copy it out of the image" for name in ev["added"]]
    if why:
        return Decision("src", "run", "; ".join(why), {"moves": moves, "added": ev["added"]})
    return Decision("src", "skip", f"{len(ev['copies'])} host copies in {site.ampel_src} at the commits wanted "
                                   f"for {site.version}")


def parts(r):
    """A part per stack host, transit first, each decided when it is reached."""
    for site in stack_sites(r):
        host = site.stack_host
        d = _decide_on(r, site)
        yield Part(d, host_label("src", host.name, r.settings), host.name,
                   doing=d.reason if d is not None else f"{site.ampel_src} on {host.name}", site=site)


def act(r, part: Part) -> None:
    """AMPEL_SRC out of the image (once) and repos the image added, as the owner of
    AMPEL_SRC; then every repo moved to the commit wanted."""
    site, host = part.site, part.site.stack_host
    data = part.decision.data if part.decision is not None else {}
    moves, added = data.get("moves", []), data.get("added", [])
    fresh = not (src_evidence(r, site) or {}).get("exists")  # missing, or unknown under --dry
    if fresh:
        host.change(site.command("volume_init", image_file=site.image_path, ampel_src=site.ampel_src),
                    user=site.src_user, stream=True)
    for name in added:
        host.change(site.command("volume_add", image_file=site.image_path, repo=name,
                                 ampel_src=site.ampel_src), user=site.src_user)
    if (fresh or added) and r.dry:
        console.note(f"then: each repo brought to the commits wanted for {site.version}")
    elif fresh or added:
        moves = _moves_after_copy(r, site, set(added) if not fresh else None)
    _move(r, site, moves)
    runs.mark_changed(r, "src", host.name)


def _moves(r, site, copies) -> list:
    """The copies that move to their wanted commit; an error naming every one that may not."""
    moves, refusals = sources.plan(copies, state.running_version(r))
    if refusals:
        raise DeployError(f"on {site.stack_host.name}, {site.ampel_src}: " + "; ".join(refusals))
    return moves


def _move(r, site, moves) -> None:
    for c in moves:
        for cmd in sources.move_commands(site, r.settings, c):
            site.stack_host.change(cmd, user=site.src_user)
        console.note(f"{c.name}: {c.head[:10]} -> {c.wanted[:10]} ({c.wanted_ref})")


def restore_sources(r, site, target: dict) -> None:
    """A rollback's sources: each host copy back at the commit the target ran from
    (recorded in its manifest), never discarding work."""
    copies = sources.gather(site.service_host, site, r.settings, target["version"])
    sources.want_recorded(copies, target.get("sources") or {}, target["version"])
    _move(r, site, _moves(r, site, copies))


def follow_tag(r) -> None:
    """After `tag` committed on burst: transit's copies to the same commits (one
    dryrun.env serves both hosts; the deployment's commits are the tagged ones)."""
    burst = Site(r)
    for site in stack_sites(r):
        if not site.archive:
            continue
        if r.dry:
            console.note(f"then: the copies on {site.stack_host.name} brought to the commits tagged on {burst.stack_host.name}")
            continue
        heads = {c.name: c.head for c in sources.read_status(burst.stack_host, burst).values()}
        # (upstream's refs as the plan read them: the tags pushed since only name burst's heads)
        copies = sources.gather(site.stack_host, site, r.settings, site.version, image.upstream_refs(r))
        for c in copies.values():
            if c.name in heads:
                c.wanted, c.wanted_ref = heads[c.name], f"as tagged on {burst.stack_host.name}"
        moves = _moves(r, site, copies)
        _move(r, site, moves)
        if moves:
            runs.mark_changed(r, "src", site.stack_host.name)


def _moves_after_copy(r, site, only=None):
    """The moves of copies just copied out of the image (all, or `only` these):
    fresh, so they hold nothing to lose."""
    copies = sources.gather(site.stack_host, site, r.settings, site.version, image.upstream_refs(r))
    for c in copies.values():
        c.known = c.known or only is None or c.name in only
    return _moves(r, site, copies)
