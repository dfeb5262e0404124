"""Task src: AMPEL_SRC on burst, copied out of the image once, each repo at the
commit wanted for the version; work in a copy is never moved away."""
from __future__ import annotations

import json
import shlex

from invoke import task

from .. import console, run as runs, sources, state
from ..errors import DeployError
from ..helptext import DRY_HELP, VERBOSE_HELP, VERSION_HELP
from ..plan import Decision, proceed
from ..site import Site


@task(help={"verbose": VERBOSE_HELP, "version": VERSION_HELP, "dry": DRY_HELP})
def src(c, version=None, dry=False, verbose=False):
    """Copy the writable Ampel sources out of the image into AMPEL_SRC on burst.

    Runs `singularity-stack volume init <image file> /Ampel $AMPEL_SRC` as the
    operator (the runbook: "as your normal user", not ampel), only when AMPEL_SRC
    does not exist yet. An existing source tree is never overwritten.
    """
    r = runs.start(c, version=version, dry=dry)
    do_src(r)


def _src_evidence(r, site):
    host = site.service_host
    res = host.fact(f"stat -c %U {shlex.quote(site.ampel_src)}", user=site.src_user)
    if res is None:
        return None
    exists = res.ok
    copies = sources.gather(host, site, r.settings, site.version) if exists else {}
    running = state.running_manifest(r)
    if running.get("version") == site.version and running.get("ampel_src") == site.ampel_src:
        # the running version is what runs: its recorded commits, wherever upstream has moved since
        sources.want_recorded(copies, running.get("sources") or {}, site.version, r.settings.source["tag_pattern"])
    return {"exists": exists, "owner": res.stdout.strip() if exists else "", "copies": copies,
            "added": sources.added_repos(copies, _image_repos(r, site)) if exists else []}


def src_evidence(r):
    """The host copies and what upstream wants of them, read once per run (plan, src, test)."""
    return r.evidence("src evidence", lambda: _src_evidence(r, Site(r)))


def _image_repos(r, site) -> list:
    """The repos under /Ampel of the image this deployment runs: its labels (built
    or reused), else, for an image still to be built, the recipe's clone lines."""
    labels = state.image_labels(r, site)
    repos = list(json.loads(labels.get(f"{r.settings.image['label_prefix']}.repos", "{}") or "{}"))
    built = r.cache.get("image evidence") or {}
    return repos or [repo.name for repo in built.get("found", [])]


def decide_src(r):
    """Decision for `src`: AMPEL_SRC exists (made from the image once, owned by the
    configured user), holds every repo of the image, and every host copy is at the
    commit wanted for the version; work in a copy is never lost."""
    site = Site(r)
    host = site.service_host
    ev = src_evidence(r)
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


def do_src(r):
    """AMPEL_SRC out of the image (once) and repos the image added, as the owner of
    AMPEL_SRC; then every repo moved to the commit wanted for the version."""
    site = Site(r)
    host = site.service_host
    d = decide_src(r)
    if not proceed(r, "src", d, d.reason if d is not None else f"{site.ampel_src} on {host.name}"):
        return
    data = d.data if d is not None else {}
    moves, added = data.get("moves", []), data.get("added", [])
    ev = r.cache.get("src evidence")
    fresh = not (ev or {}).get("exists")  # missing, or unknown under --dry
    if fresh:
        host.change(site.command("volume_init", image_file=site.image_path, ampel_src=site.ampel_src),
                    user=site.src_user, stream=True)
    for name in added:
        host.change(site.command("volume_add", image_file=site.image_path, repo=name, ampel_src=site.ampel_src),
                    user=site.src_user)
    if (fresh or added) and r.dry:
        console.note(f"then: each repo brought to the commits wanted for {site.version}")
    elif fresh or added:
        moves = _moves_after_copy(r, site, set(added) if not fresh else None)
    _move(r, site, moves)
    r.changed.add("src")


def _moves(r, site, copies) -> list:
    """The copies that move to their wanted commit; an error naming every one that may not."""
    moves, refusals = sources.plan(copies, state.running_version(r))
    if refusals:
        raise DeployError(f"on {site.service_host.name}, {site.ampel_src}: " + "; ".join(refusals))
    return moves


def _move(r, site, moves) -> None:
    for c in moves:
        for cmd in sources.move_commands(site, r.settings, c):
            site.service_host.change(cmd, user=site.src_user)
        console.note(f"{c.name}: {c.head[:10]} -> {c.wanted[:10]} ({c.wanted_ref})")


def restore_sources(r, site, target: dict) -> None:
    """A rollback's sources: each host copy back at the commit the target ran from
    (recorded in its manifest), never discarding work."""
    copies = sources.gather(site.service_host, site, r.settings, target["version"])
    sources.want_recorded(copies, target.get("sources") or {}, target["version"])
    _move(r, site, _moves(r, site, copies))


def _moves_after_copy(r, site, only=None):
    """The moves of copies just copied out of the image (all, or `only` these):
    fresh, so they hold nothing to lose."""
    copies = sources.gather(site.service_host, site, r.settings, site.version)
    for c in copies.values():
        c.known = c.known or only is None or c.name in only
    return _moves(r, site, copies)
