"""The Ampel repos' unit tests: which commits to test, a commit's tree run in a
throwaway container of the image without network, pytest's verdict read from its
output, and whether a pass recorded in a manifest already covers them."""
from __future__ import annotations

import io
import re
import shlex
import subprocess
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..config import console
from ..remote import interrupts
from ..config.errors import DeployError
from .sources import Copy, want

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
    # the "data" filter where this python has it (3.11.4+, 3.12; Debian 12's 3.11.2 has not):
    # a tree git archive wrote from the mirror has no absolute or escaping member anyway
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        tar.extractall(dest, **safe)


# -- the run ---------------------------------------------------------------
def run_one(client, image, repo: str, commit: str, tree: Path, command: str) -> Outcome:
    """One repo's tests in a throwaway container of `image`, without network."""
    return run_trees(client, image, [(repo, commit, tree)], command)[0]


def _create(client, image, name: str, repo: str, commit: str, tree: Path, command: str) -> None:
    """The container `name` for one repo's tests, made on the calling thread. Ctrl-C
    waits for the engine's answer to the create: the caller, who named it first,
    removes it whenever the run is interrupted."""
    with interrupts.deferred():  # an interrupt lands after the engine answered
        client.containers.create(
            image.id, ["sh", "-c", script(repo, command)], name=name, network_mode="none",
            volumes={str(tree): {"bind": f"/src/{repo}", "mode": "ro"}},
            labels={"org.ampelproject.step": "test", "org.ampelproject.repo": repo, "org.ampelproject.commit": commit},
        )


def _follow(client, name: str, repo: str):
    """(exit status, output lines) of a created container, started and followed to its end."""
    container = client.containers.get(name)
    container.start()
    output = []
    for chunk in container.logs(stream=True, follow=True):
        for line in chunk.decode(errors="replace").splitlines():
            output.append(line)
            console.detail(f"test {repo}: {line}")
    return container.wait().get("StatusCode", 1), output


def run_trees(client, image, runs, command: str) -> List[Outcome]:
    """Each (repo, commit, tree)'s tests, side by side: every container made and
    removed on the calling thread (where Ctrl-C lands; removing one ends its follower)."""
    from concurrent.futures import ThreadPoolExecutor

    names, pool = [], ThreadPoolExecutor(max(1, len(runs)))
    try:
        for repo, commit, tree in runs:
            names.append(f"ampel-test-{repo}-{uuid.uuid4().hex[:10]}")  # (a name of its own, known before)
            _create(client, image, names[-1], repo, commit, tree, command)
        followed = [pool.submit(_follow, client, name, repo) for name, (repo, _, _) in zip(names, runs)]
        ended = [f.result() for f in followed]
    finally:
        for name in names:
            _remove(client, name)
        pool.shutdown(wait=True)
    outcomes = []
    for (repo, commit, _), (code, output) in zip(runs, ended):
        text = "\n".join(output)
        if missing_pytest(text):
            raise DeployError(f"test: the image {image.short_id} has no pytest (`{command}` in /Ampel/{repo}); add "
                              "pytest to environment.yml, or deploy with --skip-tests")
        summary, failures = parse_pytest(text, code)
        outcomes.append(Outcome(repo, commit, code, summary, failures))
    return outcomes


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
    """Every repo's tests at its commit, side by side; each one's verdict printed."""
    with tempfile.TemporaryDirectory(prefix="ampel-test-") as tmp:
        runs = []
        for repo, commit in sorted(commits.items()):
            export(mirrors[repo], commit, Path(tmp) / repo)
            runs.append((repo, commit, Path(tmp) / repo))
        outcomes = run_trees(client, image, runs, command)
    for o in outcomes:
        console.note(f"{o.repo} {o.commit[:10]}: {o.summary}")
    return outcomes


def failure_text(outcomes: List[Outcome]) -> str:
    """One line for the operator (pure): which repos failed, and the first failures."""
    bad = [o for o in outcomes if not o.passed]
    parts = []
    for o in bad:
        first = "; ".join(f[:160] for f in o.failures[:3])
        parts.append(f"{o.repo} {o.commit[:10]}: {o.summary}" + (f" ({first})" if first else ""))
    return "; ".join(parts)
