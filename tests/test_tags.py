"""The tag step's decisions (pure): one new deployment tag per deployment, never a
release tag, never a moved tag; the branch only ever fast-forwarded."""
import pytest

from ampel_tasks.facts import sources
from ampel_tasks.steps import tag as gitops
from ampel_tasks.config.errors import DeployError
from ampel_tasks.config.settings import build_settings

PATTERN = "deployed/{version}-{n}"
OURS = {"deploy/production/dryrun.env"}
HEAD, OLD, UP = "1" * 40, "2" * 40, "3" * 40


def copy(name, head=HEAD, dirty=(), refs=None):
    c = sources.Copy(name, head, "master", f"git@github-{name}:AmpelProject/{name}.git", list(dirty))
    c.refs = dict(refs if refs is not None else {"refs/heads/master": head})
    return c


def test_a_first_deployment_tags_every_repo_n1_and_commits_only_the_tools_own_edit():
    copies = {"ampel-core": copy("ampel-core", dirty=OURS), "ampel-base": copy("ampel-base")}
    actions, refusals = gitops.plan_tags(copies, PATTERN, "v0.4.0", OURS)
    assert refusals == []
    assert [(a.repo, a.tag, a.branch) for a in actions] == [("ampel-core", "deployed/v0.4.0-1", "master"),
                                                           ("ampel-base", "deployed/v0.4.0-1", "")]
    assert actions[0].message.startswith("deployed/v0.4.0-1: deploy/production/dryrun.env") and actions[1].message == ""


def test_deploying_a_version_again_makes_a_new_tag_and_never_moves_one():
    refs = {"refs/heads/master": HEAD, "refs/tags/deployed/v0.4.0-1": OLD, "refs/tags/deployed/v0.4.0-1^{}": OLD,
            "refs/tags/deployed/v0.3.8-7": OLD}
    copies = {"ampel-core": copy("ampel-core", dirty=OURS, refs=refs), "ampel-base": copy("ampel-base")}
    actions, _ = gitops.plan_tags(copies, PATTERN, "v0.4.0", OURS)
    assert {a.tag for a in actions} == {"deployed/v0.4.0-2"}, "one name for the deployment, in every repo"


def test_a_clean_copy_whose_head_carries_the_running_versions_tag_is_done():
    refs = {"refs/heads/master": HEAD, "refs/tags/deployed/v0.4.0-1": HEAD}
    actions, refusals = gitops.plan_tags({"ampel-base": copy("ampel-base", refs=refs)}, PATTERN, "v0.4.0", OURS)
    assert actions == [] and refusals == []


def test_a_new_deployment_of_a_version_tags_even_commits_an_earlier_one_tagged():
    # v0.4.0 again after a rollback: the same commits, a deployment of its own
    refs = {"refs/heads/master": HEAD, "refs/tags/deployed/v0.4.0-1": HEAD}
    actions, _ = gitops.plan_tags({"ampel-base": copy("ampel-base", refs=refs)}, PATTERN, "v0.4.0", OURS,
                                  redeploy=False)
    assert [(a.repo, a.tag, a.message) for a in actions] == [("ampel-base", "deployed/v0.4.0-2", "")]


def test_the_operators_own_changes_need_a_message_and_are_found_before_anything_changes():
    copies = {"ampel-core": copy("ampel-core", dirty=["ampel/core/x.py", *OURS])}
    actions, refusals = gitops.plan_tags(copies, PATTERN, "v0.4.0", OURS)
    assert actions == [] and refusals == [
        "ampel-core has uncommitted changes in ampel/core/x.py; pass --message '...' to commit them with this deployment"]
    actions, refusals = gitops.plan_tags(copies, PATTERN, "v0.4.0", OURS, message="fix x")
    assert refusals == [] and actions[0].message == "fix x"


def test_a_copy_behind_its_branch_keeps_its_commit_under_the_tag_alone():
    # a release tag that upstream's master has moved past: pushing master would not fast-forward
    refs = {"refs/heads/master": UP, "refs/tags/v0.4.0": HEAD}
    actions, _ = gitops.plan_tags({"ampel-core": copy("ampel-core", dirty=OURS, refs=refs)}, PATTERN, "v0.4.0", OURS)
    assert actions[0].branch == ""
    assert "kept under the tag alone" in gitops.describe(actions)


def test_the_commands_push_branch_and_tag_atomically_and_never_force():
    a = gitops.TagAction("ampel-core", "deployed/v0.4.0-1", "m", "master", "git@h:AmpelProject/Ampel-core.git")
    cmds = dict(gitops.commands(a, "/home/ampel/Ampel-v0.4/ampel-core", "-c user.name=op"))
    assert cmds["push"] == ("git -C /home/ampel/Ampel-v0.4/ampel-core push -q --atomic git@h:AmpelProject/Ampel-core.git "
                            "HEAD:refs/heads/master refs/tags/deployed/v0.4.0-1")
    assert "--force" not in " ".join(cmds.values()) and "+" not in cmds["push"]


@pytest.mark.parametrize("pattern", ["{version}", "deployed/{version}", "{version}-{n}"])
def test_a_tag_pattern_that_could_collide_or_repeat_is_refused(pattern):
    with pytest.raises(DeployError, match="ampel.source.tag_pattern"):
        build_settings({"ampel": {"source": {"tag_pattern": pattern}}})
