"""The test step's pure parts: pytest's output, the container's script, the
decision and the commits it tests."""
from __future__ import annotations

import subprocess

import pytest

from ampel_tasks.facts.build import mirror_refs, same_refs
from ampel_tasks.config.errors import DeployError
from ampel_tasks.facts.sources import Copy
from ampel_tasks.facts.repotests import (
    Outcome, decide, failure_text, parse_pytest, planned_commits, recorded_pass, script,
)

FAILED_OUTPUT = """\
..F..                                                                    [100%]
=================================== FAILURES ===================================
_______________________________ test_t0_accepts ________________________________
    def test_t0_accepts():
>       assert accept(alert) is True
E       assert False is True
=========================== short test summary info ============================
FAILED tests/test_filter.py::test_t0_accepts - assert False is True
1 failed, 4 passed in 0.12s
"""


def test_a_failing_run_gives_its_counts_and_failed_tests():
    summary, failures = parse_pytest(FAILED_OUTPUT, 1)
    assert summary == "1 failed, 4 passed"
    assert failures == ["FAILED tests/test_filter.py::test_t0_accepts - assert False is True"]


def test_a_passing_run_and_one_without_tests():
    assert parse_pytest("....\n4 passed, 1 warning in 0.05s\n", 0) == ("4 passed, 1 warning", [])
    assert parse_pytest("\nno tests ran in 0.01s\n", 5)[0] == "no tests ran"
    assert Outcome("ampel-base", "c" * 40, 5, "no tests ran", []).passed


def test_the_container_keeps_the_builds_egg_info_and_replaces_the_rest(tmp_path):
    """Run the script for real on a copy of what the image holds."""
    ampel = tmp_path / "Ampel" / "ampel-core"
    (ampel / "ampel_core.egg-info").mkdir(parents=True)
    (ampel / "ampel_core.egg-info" / "entry_points.txt").write_text("[console_scripts]\n")
    (ampel / "old_module.py").write_text("gone in the new commit\n")
    src = tmp_path / "src" / "ampel-core"
    src.mkdir(parents=True)
    (src / "new_module.py").write_text("new\n")
    text = script("ampel-core", "ls").replace("/Ampel/", f"{tmp_path}/Ampel/").replace("/src/", f"{tmp_path}/src/")
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ampel_core.egg-info", "new_module.py"]


MANIFESTS = [
    {"version": "v0.3.6", "operator": "ampelop2", "tests": {"result": "skipped (--skip-tests)"}},
    {"version": "v0.3.5", "operator": "ampelop", "tests": {
        "result": "passed", "image_id": "sha256:" + "a" * 64, "commits": {"ampel-core": "1" * 40}, "when": "T"}},
]


def test_a_recorded_pass_for_the_same_image_and_commits_skips():
    action, reason = decide(False, "sha256:" + "a" * 64, {"ampel-core": "1" * 40}, MANIFESTS, skip=False)
    assert action == "skip" and "v0.3.5" in reason and "ampelop" in reason


def test_other_commits_a_new_image_or_an_unknown_image_run():
    assert decide(False, "sha256:" + "a" * 64, {"ampel-core": "2" * 40}, MANIFESTS, False)[0] == "run"
    assert decide(True, None, {"ampel-core": "1" * 40}, MANIFESTS, False)[0] == "run"
    assert decide(False, None, {"ampel-core": "1" * 40}, MANIFESTS, False)[0] == "run"
    assert recorded_pass(MANIFESTS, "sha256:" + "b" * 64, {"ampel-core": "1" * 40}) is None


def test_skip_tests_wins_and_says_it_is_recorded():
    assert decide(True, None, {}, [], skip=True) == ("skip", "--skip-tests (recorded in the manifest)")


def test_commits_are_the_copies_wanted_else_the_release_tag_else_master():
    copies = {"ampel-core": Copy("ampel-core", "0" * 40, "master", "o", wanted="1" * 40)}
    refs = {
        "ampel-base": {"refs/heads/master": "2" * 40, "refs/tags/v0.3.6": "3" * 40},
        "ampel-contrib-hu": {"refs/heads/master": "4" * 40},
    }
    got = planned_commits(["ampel-core", "ampel-base", "ampel-contrib-hu"], copies, refs.get, "v0.3.6")
    assert got == {"ampel-core": "1" * 40, "ampel-base": "3" * 40, "ampel-contrib-hu": "4" * 40}
    with pytest.raises(DeployError, match="ampel-x has neither the tag v0.3.6 nor a master branch"):
        planned_commits(["ampel-x"], {}, lambda name: {}, "v0.3.6")


def test_local_refs_peel_annotated_tags(tmp_path):
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b", "PATH": "/usr/bin:/bin"}
    repo = tmp_path / "r"
    for cmd in (["init", "-q", "-b", "master", str(repo)], ["-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"],
                ["-C", str(repo), "tag", "-a", "v0.3.6", "-m", "release"]):
        subprocess.run(["git", *cmd], check=True, env=env)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    refs = mirror_refs(repo / ".git")
    assert refs["refs/heads/master"] == head and refs["refs/tags/v0.3.6"] == head


def test_a_mirror_is_current_only_with_upstreams_branches_tags_and_head():
    head, old = "a" * 40, "b" * 40
    upstream = {"HEAD": head, "refs/heads/master": head, "refs/tags/v0.3.6": old}
    mirror = {"refs/remotes/origin/HEAD": head, "refs/heads/master": head, "refs/tags/v0.3.6": old}
    assert same_refs(mirror, upstream)
    assert not same_refs(mirror, {**upstream, "refs/tags/v0.3.7": head}), "a new tag upstream"
    assert not same_refs({**mirror, "refs/heads/gone": old}, upstream), "a branch upstream removed (fetch prunes it)"
    assert not same_refs(mirror, {**upstream, "HEAD": old, "refs/heads/master": old}), "master moved"
    assert not same_refs({}, {}), "nothing listed is no evidence"


def test_the_failure_line_names_each_failing_repo_and_its_first_failures():
    outcomes = [Outcome("ampel-core", "1" * 40, 0, "5 passed", []),
                Outcome("ampel-base", "2" * 40, 1, "1 failed, 2 passed", ["FAILED tests/test_x.py::test_y - boom"])]
    assert failure_text(outcomes) == ("ampel-base 2222222222: 1 failed, 2 passed "
                                      "(FAILED tests/test_x.py::test_y - boom)")
    assert failure_text(outcomes[:1]) == ""


def test_a_pass_covers_the_tools_own_dryrun_env_commit_on_top(tmp_path):
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b", "PATH": "/usr/bin:/bin"}
    repo = tmp_path / "ampel-core"
    (repo / "deploy/production").mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, env=env, capture_output=True)  # noqa: E731
    head = lambda: subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,  # noqa: E731
                                  text=True).stdout.strip()
    subprocess.run(["git", "init", "-q", "-b", "master", str(repo)], check=True)
    (repo / "deploy/production/dryrun.env").write_text("AMPEL_TAG=v0.3.5\n")
    (repo / "filter.py").write_text("THRESHOLD = 0.5\n")
    run("add", "-A")
    run("commit", "-qm", "tested")
    tested = head()
    (repo / "deploy/production/dryrun.env").write_text("AMPEL_TAG=v0.3.6\n")
    run("commit", "-qam", "the tool's dryrun.env commit")
    tool_commit = head()
    (repo / "filter.py").write_text("THRESHOLD = 0.9\n")
    run("commit", "-qam", "code")
    code = head()
    from ampel_tasks.facts.repotests import only_changes
    env_file = "deploy/production/dryrun.env"
    assert only_changes(repo / ".git", tested, tool_commit, env_file)
    assert not only_changes(repo / ".git", tested, code, env_file)
    manifests = [{"version": "v0.3.6", "tests": {"result": "passed", "image_id": "i", "commits": {"ampel-core": tested}}}]
    same = lambda name, a, b: only_changes(repo / ".git", a, b, env_file)  # noqa: E731
    assert decide(False, "i", {"ampel-core": tool_commit}, manifests, False, same)[0] == "skip"
    assert decide(False, "i", {"ampel-core": code}, manifests, False, same)[0] == "run"


def test_the_tools_own_deployment_tags_upstream_need_no_fetch_when_the_mirror_has_their_commits(tmp_path):
    """`tag` pushes deployed/<version>-<n> upstream after each deploy; the next plan's
    mirrors hold those commits already (they were tested from there), so fetching
    every mirror again for the tag alone is wasted (a no-op right after a deploy)."""
    from ampel_tasks.facts.build import mirror_holds

    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b", "PATH": "/usr/bin:/bin"}
    repo = tmp_path / "r"
    for cmd in (["init", "-q", "-b", "master", str(repo)], ["-C", str(repo), "commit", "-q", "--allow-empty", "-m", "x"],
                ["-C", str(repo), "update-ref", "refs/remotes/origin/HEAD", "HEAD"]):
        subprocess.run(["git", *cmd], check=True, env=env)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    mirror = repo / ".git"
    upstream = {"HEAD": head, "refs/heads/master": head}
    assert mirror_holds(mirror, upstream, "deployed/{version}-{n}")
    assert mirror_holds(mirror, {**upstream, "refs/tags/deployed/v0.3.5-3": head}, "deployed/{version}-{n}")
    missing = "f" * 40
    assert not mirror_holds(mirror, {**upstream, "refs/tags/deployed/v0.3.5-4": missing}, "deployed/{version}-{n}"), \
        "a commit tagged upstream that the mirror lacks (another operator's fix) is fetched"
    assert not mirror_holds(mirror, {**upstream, "refs/tags/v0.3.6": head}, "deployed/{version}-{n}"), \
        "a release tag is upstream's, not the tool's"
    # a pattern without a namespace of its own before {version}: every tag is upstream's
    assert not mirror_holds(mirror, {**upstream, "refs/tags/v0.3.5/deployed-3": head}, "{version}/deployed-{n}")
