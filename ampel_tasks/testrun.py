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

import io
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from invoke import task

from . import console, interrupts, run as runs
from .errors import DeployError
from .helptext import DRY_HELP, SKIP_TESTS_HELP, VERBOSE_HELP, VERSION_HELP
from .plan import Decision
from .steps import inputs

# pytest's exit codes: 0 passed, 1 failed, 5 no tests collected
NO_TESTS = 5
_SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+)(?: in [\d.]+s.*?)?\s*=*$")


@dataclass
class Outcome:
    repo: str
    commit: str
    code: int
    summary: str
    failures: List[str]

    @property
    def passed(self) -> bool:
        return self.code in (0, NO_TESTS)


def parse_pytest(output: str, code: int) -> tuple:
    """(summary, failures) from pytest's output (pure): its last counts line and
    the FAILED/ERROR lines of its short summary."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    summary = next((m.group(1) for m in map(_SUMMARY.match, reversed(lines)) if m), "")
    failures = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    if not summary:
        summary = "no tests ran" if code == NO_TESTS else (lines[-1][:200] if lines else f"exit {code}")
    return summary, failures


def missing_pytest(output: str) -> bool:
    return "No module named pytest" in output


def script(repo: str, command: str) -> str:
    """What the container runs (pure): the repo's tree replaced by the commit's,
    keeping the build's *.egg-info (its entry points), then the tests."""
    where = shlex.quote(f"/Ampel/{repo}")
    src = shlex.quote(f"/src/{repo}")
    return (f"cd {where} && find . -mindepth 1 -maxdepth 1 ! -name '*.egg-info' -exec rm -rf {{}} + && "
            f"cp -a {src}/. . && {command}")


def _equal(repo: str, tested: str, wanted: str) -> bool:
    return tested == wanted


def recorded_pass(manifests: List[dict], image_id: str, commits: Dict[str, str], same=_equal) -> Optional[dict]:
    """The newest manifest whose tests passed for this image and these commits (pure
    but for `same(repo, tested, wanted)`, which may also accept a commit that
    differs from the tested one only by the tool's own dryrun.env edit)."""
    for m in manifests:
        t = m.get("tests") or {}
        tested = t.get("commits") or {}
        if t.get("result") != "passed" or t.get("image_id") != image_id or set(tested) != set(commits):
            continue
        if all(same(repo, tested[repo], wanted) for repo, wanted in commits.items()):
            return m
    return None


def decide(image_will_change: bool, image_id: Optional[str], commits: Dict[str, str], manifests: List[dict],
           skip: bool, same=_equal) -> tuple:
    """(action, reason) of the test step (pure)."""
    if skip:
        return "skip", "--skip-tests (recorded in the manifest)"
    if image_will_change:
        return "run", "a new image is built: its tests run before it is pushed"
    if image_id is None:
        return "run", "the image's id is not known here: its tests run"
    done = recorded_pass(manifests, image_id, commits, same)
    if done is not None:
        return "skip", (f"passed for this image and these commits ({done.get('version')}, "
                        f"{(done.get('tests') or {}).get('when', '?')} by {done.get('operator', '?')})")
    return "run", f"not yet passed for image {image_id[7:19]} with {_short(commits)}"


def _short(commits: Dict[str, str]) -> str:
    return ", ".join(f"{k} {v[:10]}" for k, v in sorted(commits.items())) or "no repos"


# -- the commits -----------------------------------------------------------
def local_refs(mirror: Path) -> Dict[str, str]:
    """{ref: commit} of a local mirror, tags peeled (as `git ls-remote` lists them)."""
    from .sources import parse_ls_remote

    p = subprocess.run(["git", "--git-dir", str(mirror), "show-ref", "-d"], capture_output=True, text=True)
    return parse_ls_remote(p.stdout)


def only_changes(mirror: Path, a: str, b: str, allowed: str) -> bool:
    """True when commit b differs from a in no file but `allowed` (the tool's own
    dryrun.env commit on top of tested code)."""
    if a == b:
        return True
    p = subprocess.run(["git", "--git-dir", str(mirror), "diff", "--name-only", a, b], capture_output=True, text=True)
    return p.returncode == 0 and set(p.stdout.split()) <= {allowed}


def planned_commits(repos: List[str], copies: dict, refs_of, tag: str) -> Dict[str, str]:
    """The commit each repo of the image will run (pure but for `refs_of`): the
    host copy's wanted commit (what `src` brings it to), else the same rule on the
    repo's refs: release tag `tag`, else the branch head."""
    from .sources import Copy, want

    out = {}
    for name in repos:
        c = copies.get(name)
        if c is not None and c.wanted:
            out[name] = c.wanted
            continue
        probe = Copy(name, "", "HEAD", "")
        want(probe, refs_of(name), tag)
        if not probe.wanted:
            raise DeployError(f"test: {name} has neither the tag {tag} nor a master branch upstream")
        out[name] = probe.wanted
    return out


def export(mirror: Path, commit: str, dest: Path) -> None:
    """The commit's tree (no .git) into dest."""
    p = subprocess.run(["git", "--git-dir", str(mirror), "archive", "--format=tar", commit], capture_output=True)
    if p.returncode != 0:
        raise DeployError(f"test: commit {commit[:10]} is not in {mirror.name} as fetched upstream: "
                          f"{p.stderr.decode(errors='replace').strip()[-200:]}")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        tar.extractall(dest, filter="data")


# -- the run ---------------------------------------------------------------
def run_one(client, image, repo: str, commit: str, tree: Path, command: str) -> Outcome:
    """One repo's tests in a throwaway container of `image`, without network.

    The container has a name of its own, and Ctrl-C waits for the engine's answer
    to the create: it is removed whenever the run is interrupted."""
    name = f"ampel-test-{repo}-{uuid.uuid4().hex[:10]}"
    output = []
    try:
        with interrupts.deferred():  # an interrupt lands after the engine answered
            container = client.containers.create(
                image.id, ["sh", "-c", script(repo, command)], name=name, network_mode="none",
                volumes={str(tree): {"bind": f"/src/{repo}", "mode": "ro"}},
                labels={"org.ampelproject.step": "test", "org.ampelproject.repo": repo,
                        "org.ampelproject.commit": commit},
            )
        container.start()
        for chunk in container.logs(stream=True, follow=True):
            for line in chunk.decode(errors="replace").splitlines():
                output.append(line)
                console.detail(f"test {repo}: {line}")
        code = container.wait().get("StatusCode", 1)
    finally:
        _remove(client, name)
    text = "\n".join(output)
    if missing_pytest(text):
        raise DeployError(f"test: the image {image.short_id} has no pytest (`{command}` in /Ampel/{repo}); add "
                          "pytest to environment.yml, or deploy with --skip-tests")
    summary, failures = parse_pytest(text, code)
    return Outcome(repo, commit, code, summary, failures)


def _remove(client, name: str) -> None:
    import docker.errors
    try:
        client.containers.get(name).remove(v=True, force=True)
    except docker.errors.NotFound:
        pass


def sweep(client) -> List[str]:
    """Remove test containers an earlier, interrupted run left behind (this step's label)."""
    left = client.containers.list(all=True, filters={"label": "org.ampelproject.step=test"})
    for c in left:
        _remove(client, c.name)
    return [c.name for c in left]


def run_all(client, image, commits: Dict[str, str], mirrors: Dict[str, Path], command: str) -> List[Outcome]:
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="ampel-test-") as tmp:
        for repo, commit in sorted(commits.items()):
            tree = Path(tmp) / repo
            export(mirrors[repo], commit, tree)
            o = run_one(client, image, repo, commit, tree, command)
            console.note(f"{repo} {commit[:10]}: {o.summary}")
            outcomes.append(o)
            shutil.rmtree(tree, ignore_errors=True)
    return outcomes


def failure_text(outcomes: List[Outcome]) -> str:
    """One line for the operator (pure): which repos failed, and the first failures."""
    bad = [o for o in outcomes if not o.passed]
    parts = []
    for o in bad:
        first = "; ".join(f[:160] for f in o.failures[:3])
        parts.append(f"{o.repo} {o.commit[:10]}: {o.summary}" + (f" ({first})" if first else ""))
    return "; ".join(parts)


# -- the step --------------------------------------------------------------
def _evidence(r):
    from . import build, dockerengine, state
    from .steps.src import src_evidence
    from .image import decide_image
    from .site import Site
    from .sources import release_tag

    site, s = Site(r), r.settings
    image_d = decide_image(r)
    will_build = image_d is None or image_d.action == "run" or "image" in r.force
    src_ev = src_evidence(r)
    if src_ev is None:
        return None
    repos = build.repos(s.image_dir, s)
    # every commit the copies want must be in the local mirrors: all branches and tags
    mirrors = {x.name: build.mirror(x, s.image_dir, s, everything=True) for x in repos}
    commits = planned_commits([x.name for x in repos], src_ev["copies"], lambda name: local_refs(mirrors[name]),
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
    ev = r.evidence("test evidence", lambda: _evidence(r), after=inputs("test"), foresees=True)
    skip = bool(r.options.get("skip_tests"))
    if ev is None:
        return Decision("test", "skip", "--skip-tests (recorded in the manifest)") if skip else None
    action, reason = decide(ev["will_build"], ev["image_id"], ev["commits"], ev["manifests"], skip, ev["same"])
    return Decision("test", action, reason, ev)


def _image(r, site):
    """The image under test: built or reused here, else pulled from this
    operator's registry by the digest the running deployment records."""
    from . import dockerengine, registry, state

    client = dockerengine.engine(r)
    if r.done.get("image"):
        return client, client.images.get(r.done["image"])
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


def do_test(r) -> None:
    """Run the tests when decide_test says so; a failure stops the run before
    anything is pushed or changed on a host (no lock is taken)."""
    from .site import Site
    from .state import now

    site = Site(r)
    d = decide_test(r)
    forced = "test" in r.force and not r.options.get("skip_tests")
    if d is not None and d.action == "skip" and not forced:
        console.skip("test", d.reason)
        ev = d.data or {}
        if r.options.get("skip_tests") or not ev:
            r.cache["tests"] = {"result": "skipped (--skip-tests)", "when": now(), "by": r.settings.operator}
            return
        done = recorded_pass(ev["manifests"], ev["image_id"], ev["commits"], ev["same"])
        r.cache["tests"], r.cache["image_id"] = (dict(done["tests"]) if done else None), ev["image_id"]
        return
    console.step("test", f"each repo's unit tests in {site.image_ref} against the commits that will run")
    ev = r.cache.get("test evidence")
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
    r.cache["tests"] = {"result": "passed", "image_id": image.id, "commits": ev["commits"], "when": now(),
                        "summary": {o.repo: o.summary for o in outcomes}}
    r.cache["image_id"] = image.id


@task(help={
    "version": VERSION_HELP, "skip_tests": SKIP_TESTS_HELP, "dry": DRY_HELP, "verbose": VERBOSE_HELP,
})
def test(c, version=None, skip_tests=False, dry=False, verbose=False):
    """Run each Ampel repo's unit tests in the image and at the commits that will run.

    The runbook's first step, on this machine, before anything is pushed or
    changed on a host: `docker run` of the image (built here, or pulled from
    the registry by its recorded digest), each repo's tree replaced by the
    commit `src` will bring its host copy to, then pytest in /Ampel/<repo>
    (ampel.tests.command). Skipped when these tests already passed for this
    image and these commits (recorded in the manifests on the service host).
    """
    r = runs.start(c, version=version, dry=dry)
    do_test(r)
