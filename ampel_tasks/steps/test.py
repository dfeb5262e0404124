"""The runbook's first step, "Test, test, and test again": each Ampel repo's unit
tests, in the exact image that will run, against the exact commits that will run,
on the operator's machine, before anything is pushed or changed on a host.

The commits are the ones `src` will bring the host copies to (the plan's own
evidence); a repo that AMPEL_SRC does not hold yet gets the same rule locally
(release tag V, else the branch head). Each commit's tree, exported from a local
mirror fetched with the repo's deploy key, replaces the image's clone in a
throwaway container, keeping what the build installed beside it (`*.egg-info`),
as the mounted AMPEL_SRC does on the hosts. A pass is recorded in the
deployment's manifest on the service host (image id and commits), so no operator
runs the same tests twice; `--skip-tests` is recorded there too.
"""
from __future__ import annotations

import shlex
import time


from ..facts import build, state
from ..config import console
from ..remote import dockerengine, registry
from ..config.errors import DeployError
from ..flow.plan import Decision, Part
from ..facts.repotests import (
    decide, failure_text, only_changes, planned_commits, recorded_pass, run_all, script, sweep,
)
from ..facts.site import Site
from ..facts.sources import release_tag
from ..facts.state import now
from . import evidence
from .image import decide_image
from .src import src_evidence


def _evidence(r):
    site, s = Site(r), r.settings
    image_d = decide_image(r)
    will_build = image_d is None or image_d.action == "run" or "image" in r.force
    src_ev = src_evidence(r)
    if src_ev is None:
        return None
    repos = build.repos(s.image_dir, s)
    # every commit the copies want must be in the local mirrors: all branches and tags,
    # fetched unless the mirror has the refs burst's `git ls-remote` just listed
    copies = src_ev["copies"]
    mirrors = {x.name: build.mirror(x, s.image_dir, s, everything=True,
                                    upstream=copies[x.name].refs if x.name in copies else None) for x in repos}
    commits = planned_commits([x.name for x in repos], copies, lambda name: build.mirror_refs(mirrors[name]),
                              release_tag(s, site.version))
    image_id = None
    if not will_build:
        reused = (image_d.data or {}).get("reuse")
        local = reused or dockerengine.image_or_none(dockerengine.engine(r), site.image_ref)
        image_id = local.id if local is not None else state.running_manifest(r).get("image_id")
    manifests = r.evidence("manifests", lambda: state.State(r).manifests()) or []
    env_file = s.source["env_file"]
    return {"will_build": will_build, "commits": commits, "mirrors": mirrors, "image_id": image_id,
            "manifests": manifests, "same": lambda repo, a, b: only_changes(mirrors[repo], a, b, env_file)}


def decide_test(r):
    ev = evidence(r, "test", lambda: _evidence(r), foresees=True)
    skip = r.options.skip_tests
    if ev is None:
        return Decision("test", "skip", "--skip-tests (recorded in the manifest)") if skip else None
    action, reason = decide(ev["will_build"], ev["image_id"], ev["commits"], ev["manifests"], skip, ev["same"])
    return Decision("test", action, reason, ev)


def _image(r, site):
    """The image under test: built or reused here, else pulled from this
    operator's registry by the digest the running deployment records."""
    client = dockerengine.engine(r)
    if r.outcome.built_image:
        return client, client.images.get(r.outcome.built_image)
    local = dockerengine.image_or_none(client, site.image_ref)
    if local is not None:
        return client, local
    digest = state.running_manifest(r).get("image_digest")
    ref = f"{site.registry}/{r.settings.image['name']}@{digest}"
    if digest:
        registry.ensure(client, r.settings, False)
        console.note(f"{site.image_ref} is not on this machine: pulling {ref}")
        try:
            return client, client.images.pull(ref)
        except Exception as exc:  # docker.errors.APIError/NotFound: the registry never had it
            why = getattr(exc, "explanation", None) or str(exc)
            raise DeployError(f"test: {site.image_ref} is neither on this machine nor in its registry ({why[:160]}); "
                              f"build it here with `--force image`, or deploy with --skip-tests") from None
    raise DeployError(f"test: {site.image_ref} is not on this machine and no digest of it is recorded; "
                      "build it here with `--force image`, or deploy with --skip-tests")


def parts(r):
    """The whole step; --force test does not reach past --skip-tests."""
    return [Part(decide_test(r), "test", forceable=not r.options.skip_tests)]


def skipped(r, part: Part) -> None:
    """What the manifest records of tests not run: --skip-tests, or the pass recorded before."""
    ev = part.decision.data or {}
    if r.options.skip_tests or not ev:
        r.outcome.tests = {"result": "skipped (--skip-tests)", "when": now(), "by": r.settings.operator}
        return
    done = recorded_pass(ev["manifests"], ev["image_id"], ev["commits"], ev["same"])
    r.outcome.tests, r.outcome.image_id = (dict(done["tests"]) if done else None), ev["image_id"]


def announce(r, part: Part) -> str:
    return f"each repo's unit tests in {Site(r).image_ref} against the commits that will run"


def act(r, part: Part) -> None:
    """Run the tests; a failure stops the run before anything is pushed or changed on a
    host (no lock is taken)."""
    site = Site(r)
    ev = part.decision.data if part.decision is not None else None
    if r.dry or ev is None:
        for repo, commit in sorted(((ev or {}).get("commits") or {}).items()):
            console.command("local", f"docker run --rm --network none -v <{repo} at {commit[:10]}>:/src/{repo}:ro "
                                     f"{site.image_ref} sh -c {shlex.quote(script(repo, r.settings.tests['command']))}")
        return
    client, image = _image(r, site)
    for name in sweep(client):
        console.note(f"removed {name}, left by an interrupted test run")
    t0 = time.time()
    outcomes = run_all(client, image, ev["commits"], ev["mirrors"], r.settings.tests["command"])
    failed = failure_text(outcomes)
    if failed:
        raise DeployError(f"test: {failed}; nothing was pushed or changed on a host "
                          "(fix and deploy again, or deploy with --skip-tests)")
    r.row("test", "local", "passed", time.time() - t0)
    r.outcome.tests = {"result": "passed", "image_id": image.id, "commits": ev["commits"], "when": now(),
                        "summary": {o.repo: o.summary for o in outcomes}}
    r.outcome.image_id = image.id
