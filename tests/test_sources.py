"""Host copies follow upstream without losing work: the pure parts of sources.py."""
from types import SimpleNamespace

from ampel_tasks.config.settings import build_settings
from ampel_tasks.facts import sources
from ampel_tasks.remote.processes import Result

STATUS = """@@repo ampel-core 1111111111111111111111111111111111111111 master git@github-ampel:AmpelProject/Ampel-core.git
 M deploy/production/dryrun.env
@@repo ampel-base 2222222222222222222222222222222222222222 master git@github-ampel-base:AmpelProject/Ampel-base.git
"""

LS = """3333333333333333333333333333333333333333\tHEAD
3333333333333333333333333333333333333333\trefs/heads/master
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\trefs/tags/v0.3.5
2222222222222222222222222222222222222222\trefs/tags/v0.3.5^{}
"""


def test_status_names_each_copy_with_its_uncommitted_files():
    copies = sources.parse_status(STATUS)
    assert copies["ampel-core"].dirty == ["deploy/production/dryrun.env"]
    assert copies["ampel-base"].dirty == [] and copies["ampel-base"].branch == "master"


def test_the_tag_of_the_version_wins_over_the_branch_head_and_is_peeled():
    copy = sources.parse_status(STATUS)["ampel-base"]
    sources.want(copy, sources.parse_ls_remote(LS), "v0.3.5")
    assert copy.wanted == "2" * 40 and copy.wanted_ref == "tag v0.3.5"
    sources.want(copy, sources.parse_ls_remote(LS), "v0.3.6")
    assert copy.wanted == "3" * 40 and copy.wanted_ref == "master head"


def test_a_copy_that_must_move_with_uncommitted_work_is_refused_naming_files_and_command():
    copies = sources.parse_status(STATUS)
    for c in copies.values():
        sources.want(c, sources.parse_ls_remote(LS), "v0.3.6")
        c.known = True
    moves, refusals = sources.plan(copies, "v0.3.5")
    assert [c.name for c in moves] == ["ampel-base"]
    assert refusals == ["ampel-core has uncommitted changes in deploy/production/dryrun.env; commit and push them "
                        "first with `invoke tag --version v0.3.5 --message '...'`"]


def test_unpushed_commits_are_never_moved_away():
    copy = sources.parse_status(STATUS)["ampel-base"]
    sources.want(copy, sources.parse_ls_remote(LS), "v0.3.6")
    copy.known = False
    moves, refusals = sources.plan({"ampel-base": copy}, "v0.3.5")
    assert moves == [] and "commits that upstream lacks" in refusals[0]


def test_a_head_that_upstream_has_moved_past_is_no_unpushed_work():
    """transit's copies lag one commit behind after `tag` pushes burst's: their HEAD is
    in the remote-tracking branch they last fetched, so they may move; a commit made in
    the copy and never pushed is in none."""
    text = STATUS.replace("git@github-ampel-base:AmpelProject/Ampel-base.git\n",
                          "git@github-ampel-base:AmpelProject/Ampel-base.git\n@@in refs/remotes/upstream/master\n")
    copies = sources.parse_status(text)
    assert copies["ampel-base"].dirty == [] and copies["ampel-base"].fetched_in == "refs/remotes/upstream/master"
    assert copies["ampel-core"].fetched_in == ""
    refs = sources.parse_ls_remote(LS)
    for c in copies.values():
        sources.know(c, refs)
    assert copies["ampel-base"].known and not copies["ampel-core"].known


def test_a_copy_at_its_wanted_commit_stays():
    copy = sources.parse_status(STATUS)["ampel-base"]
    sources.want(copy, sources.parse_ls_remote(LS), "v0.3.5")
    assert sources.plan({"ampel-base": copy}, "v0.3.5") == ([], [])


def test_push_url_comes_from_the_copys_origin():
    from types import SimpleNamespace

    s = SimpleNamespace(source={"org": "AmpelProject", "git_host": "github.com", "push_url": "git@{git_host}:{org}/{repo}.git"})
    assert sources.push_url(s, "ampel-contrib-ztfbh", "git@github-ampel-ztfbh:robertdstein/Ampel-ZTFbh.git") == \
        "git@github.com:robertdstein/Ampel-ZTFbh.git"
    assert sources.push_url(s, "ampel-x", "-") == "git@github.com:AmpelProject/ampel-x.git"


def test_the_running_version_wants_what_runs_or_what_tag_committed_for_it_since():
    ran, fix, upstream = "4" * 40, "5" * 40, "6" * 40
    refs = {"refs/heads/master": upstream, "refs/tags/deployed/v0.3.5-1": ran, "refs/tags/deployed/v0.3.5-2": fix}
    moved_on = sources.Copy("ampel-base", upstream, "master", "o", refs=refs)
    fixed = sources.Copy("ampel-core", fix, "master", "o", refs=refs)
    copies = {"ampel-base": moved_on, "ampel-core": fixed}
    sources.want_recorded(copies, {"ampel-base": ran, "ampel-core": ran}, "v0.3.5", "deployed/{version}-{n}")
    assert (moved_on.wanted, moved_on.wanted_ref) == (ran, "as v0.3.5 ran")
    assert (fixed.wanted, fixed.wanted_ref) == (fix, "tagged for v0.3.5")


def test_upstreams_refs_are_asked_all_at_once_and_printed_in_order():
    from ampel_tasks.facts.sources import upstream_command

    cmd = upstream_command({"ampel-core": "git@github.com:AmpelProject/Ampel-core.git",
                            "ampel-contrib-hu": "git@github.com:AmpelProject/ampel contrib.git"})
    assert cmd == ('d=$(mktemp -d) || exit 1; '
                   '(git ls-remote git@github.com:AmpelProject/Ampel-core.git > "$d/0" || echo @@failed > "$d/0") & '
                   "(git ls-remote 'git@github.com:AmpelProject/ampel contrib.git' > \"$d/1\" || echo @@failed > \"$d/1\") & "
                   'wait; echo @@ls ampel-core; cat "$d/0"; echo @@ls ampel-contrib-hu; cat "$d/1"; rm -rf "$d"')



def test_upstreams_refs_come_back_in_order_a_failed_one_marked(tmp_path):
    """The command run by a shell, a stand-in `git` answering for the git server: the
    slower answer first in the command still comes first in the output."""
    import subprocess

    from ampel_tasks.facts.sources import upstream_command

    git = tmp_path / "git"
    git.write_text('#!/bin/sh\ncase "$2" in *slow*) sleep 0.3; echo "a1\trefs/heads/master";; *gone*) exit 128;; '
                   '*) echo "b2\trefs/tags/v0.3.5";; esac\n')
    git.chmod(0o755)
    cmd = upstream_command({"ampel-core": "gh:slow.git", "ampel-base": "gh:fast.git", "ampel-x": "gh:gone.git"})
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                         timeout=10).stdout
    assert out == ("@@ls ampel-core\na1\trefs/heads/master\n@@ls ampel-base\nb2\trefs/tags/v0.3.5\n"
                   "@@ls ampel-x\n@@failed\n")


class AnsweringHost:
    """A host that answers the copies' status and upstream's refs, and counts what it was asked."""
    name = "burst"

    def __init__(self, status):
        self.status, self.asked = status, []

    def fact(self, cmd, user=None):
        self.asked.append("ls-remote" if "ls-remote" in cmd else "status")
        if "ls-remote" in cmd:
            names = [line.split()[1] for line in self.status.splitlines() if line.startswith("@@repo")]
            return Result("".join(f"@@ls {n}\n{LS}" for n in names), "", 0)
        return Result(self.status, "", 0)


def test_after_src_moved_the_copies_upstream_is_not_asked_again_unless_a_copy_is_new():
    settings, site = build_settings({}), SimpleNamespace(ampel_src="/home/ampel/Ampel-v0.3", src_user="ampel")
    before = sources.gather(AnsweringHost(STATUS), site, settings, "v0.3.5")
    moved = STATUS.replace("1" * 40, "2" * 40).replace(" M deploy/production/dryrun.env\n", "")
    host = AnsweringHost(moved)
    copies = sources.regather(host, site, settings, "v0.3.5", before)
    assert host.asked == ["status"]
    assert copies["ampel-core"].head == "2" * 40 and copies["ampel-core"].dirty == []
    assert copies["ampel-core"].refs == sources.parse_ls_remote(LS) and copies["ampel-core"].known
    assert (copies["ampel-base"].wanted, copies["ampel-base"].wanted_ref) == ("2" * 40, "tag v0.3.5")
    added = moved + "@@repo ampel-new 4444444444444444444444444444444444444444 master git@h:AmpelProject/new.git\n"
    host = AnsweringHost(added)
    assert set(sources.regather(host, site, settings, "v0.3.5", before)) == {"ampel-core", "ampel-base", "ampel-new"}
    assert host.asked == ["status", "status", "ls-remote"]


def test_refs_known_for_every_copy_are_not_asked_on_the_host_again():
    settings, site = build_settings({}), SimpleNamespace(ampel_src="/home/ampel/Ampel-v0.3", src_user="ampel")
    known = {"ampelproject/ampel-core": sources.parse_ls_remote(LS),
             "ampelproject/ampel-base": sources.parse_ls_remote(LS)}
    host = AnsweringHost(STATUS)
    copies = sources.gather(host, site, settings, "v0.3.5", known)
    assert host.asked == ["status"]
    assert (copies["ampel-base"].wanted, copies["ampel-base"].wanted_ref) == ("2" * 40, "tag v0.3.5")
    assert copies["ampel-core"].wanted == "2" * 40 and copies["ampel-core"].known is False
    # a repo known under another org is not the copy's: the host asks
    host = AnsweringHost(STATUS)
    sources.gather(host, site, settings, "v0.3.5", {"someone/ampel-core": {}})
    assert host.asked == ["status", "ls-remote"]
