"""Each step runs exactly the runbook's commands on the right host, as the right user.

Hosts are replaced by recorders that answer facts from a script, so these read
like the runbook: "on burst, as ampel, in /data/ampel/singularity: singularity pull".
"""
import re

import pytest
from invoke import Config

from ampel_tasks.remote import dockerengine, hosts, registry, tunnel
from ampel_tasks.flow import run as runs
from ampel_tasks.config.defaults import DEFAULTS
from ampel_tasks.config.errors import DeployError
from ampel_tasks.remote.hosts import Result
from ampel_tasks.steps import runner
from dataclasses import replace

ENV = """# dryrun
AMPEL_TAG=v0.3.0
AMPEL_SRC=/scratch/ampel/Ampel-v0.3.0
MONGO_PATH=/data/ampel/mongo/live/v0.3.0
GROUP_NAME=ampel-v0.3.0
NUM_STREAMS=16
"""


# what every test's site is, unless the test answers otherwise: nothing deployed yet (no
# `current`, no manifest), a stack file with nothing in it; a read nobody answers fails
GROUND = [
    (r"^true$", Result("", "", 0)),  # the preflight of a stack file with nothing to check
    (r"^cat /home/ampel/dryrun/\.ampel-tasks/current 2>/dev/null$", Result("", "", 1)),
    (r"^cd /home/ampel/dryrun/\.ampel-tasks/deployments 2>/dev/null && for f in", Result("", "", 0)),
    (r"^cat /scratch/ampel/Ampel-v0.3/ampel-core/deploy/production/burst\.yml$", Result("services: {}\n", "", 0)),
    # room everywhere: `df -PB1` of the image files' and the pull's temporary directories
    (r"echo '@@df ", Result("@@df /data/ampel/singularity\n/dev/sda1 1099511627776 1 1099511627775 1% /\n"
                          "@@df ${SINGULARITY_TMPDIR:-/tmp}\n/dev/sda1 1099511627776 1 1099511627775 1% /\n"
                          "@@cached\n", "", 0)),
]


class RecordingHost(hosts.Host):
    """A host whose commands are recorded; facts answered by (regex, Result) pairs."""

    def __init__(self, spec, settings, dry, answers, log):
        super().__init__(spec, settings, dry)
        self.answers = answers
        self.log = log

    def run(self, cmd, *, mutating, user=None, warn=False, stream=False, show=None, prefix="", data=None,
            on_line=None, shield=None):
        if self.dry and mutating:
            return super().run(cmd, user=user, mutating=mutating, show=show)
        if data is not None:
            self.log.append((self.name, user, show or cmd, data.decode()))
            return Result("", "", 0)
        self.log.append((self.name, user, cmd))
        for pattern, result in self.answers + GROUND:  # (the test's own answers first)
            if re.search(pattern, cmd):
                return result
        if mutating:  # (a change is what a test looks at in the log; it succeeds)
            return Result("", "", 0)
        raise AssertionError(f"{self.name}: a read the test did not answer: {cmd}")


@pytest.fixture
def site(monkeypatch):
    log = []
    answers = []

    def get(pool, name):
        if name not in pool._hosts:
            pool._hosts[name] = RecordingHost(pool.settings.hosts[name], pool.settings, pool.dry, answers, log)
        return pool._hosts[name]

    monkeypatch.setattr(hosts.HostPool, "get", get)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # the operator, whoever runs the tests
        monkeypatch.setenv(name, "ampelop")
    config = Config(overrides={})
    config.load_collection(DEFAULTS)
    config.set_runtime_path(None)
    config["ampel"]["paths"]["state_dir"] = "/home/ampel/dryrun/.ampel-tasks"
    config["ampel"]["hosts"]["transit"]["roles"] = ["pull"]  # burst's commands (transit's: test_archive_stack)
    r = runs.begin(config)
    r.set_version("v0.3.5")
    r.outcome.locked = True  # the lock has its own tests on the sandbox
    yield r, answers, log
    runs.end(r)


def commands(log):
    return [(h, u, c) for h, u, c, *_ in log]


def test_src_copies_the_sources_out_of_the_image_as_the_operator(site):
    from ampel_tasks.steps import src

    r, answers, log = site
    answers.append((r"^stat -c %U /scratch/ampel/Ampel-v0.3$", Result("", "stat: cannot statx: No such file", 1)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result("", "", 0)))  # (the copies, once out)
    runner.run(r, "src")
    assert (
        "burst", None,
        "singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel /scratch/ampel/Ampel-v0.3",
    ) in commands(log)
    init = [c for _, _, c in commands(log)].index(
        "singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel /scratch/ampel/Ampel-v0.3")
    # then the copies are read (to bring them to the version's commits), nothing is removed
    assert any("rev-parse HEAD" in c for _, _, c in commands(log)[init:])
    assert not any(c.startswith("rm ") for _, _, c in commands(log))


def test_src_moves_existing_copies_to_the_versions_commits_without_overwriting(site):
    from ampel_tasks.steps import src

    r, answers, log = site
    head, new = "1" * 40, "2" * 40
    answers.append((r"^stat -c %U", Result("ampelop\n", "", 0)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result(
        f"@@repo ampel-core {head} master git@github-ampel:AmpelProject/Ampel-core.git\n", "", 0)))
    answers.append((r"^d=\$\(mktemp -d\) .*git ls-remote", Result(
        f"@@ls ampel-core\n{new}\trefs/heads/master\n{head}\trefs/tags/v0.3.4\n", "", 0)))
    runner.run(r, "src")
    cmds = [c for _, _, c in commands(log)]
    assert not any("volume init" in c for c in cmds)
    assert "git ls-remote git@github.com:AmpelProject/Ampel-core.git" in " ".join(cmds)
    assert cmds[-1] == (f"git -C /scratch/ampel/Ampel-v0.3/ampel-core update-index -q --refresh; "
                        f"git -C /scratch/ampel/Ampel-v0.3/ampel-core reset -q --keep {new}")
    assert cmds[-2].startswith("git -C /scratch/ampel/Ampel-v0.3/ampel-core fetch -q git@github.com:AmpelProject/Ampel-core.git")


def test_src_takes_upstreams_refs_from_the_images_read_and_asks_the_host_only_for_the_rest(site, monkeypatch):
    from pathlib import Path

    from ampel_tasks.facts import sources, state
    from ampel_tasks.facts.build import Repo
    from ampel_tasks.steps import image

    r, answers, log = site
    monkeypatch.setattr(state, "image_labels", lambda r, site: {"org.ampelproject.repos": '{"ampel-core": {}, "ampel-x": {}}'})
    head, new, other = "1" * 40, "2" * 40, "3" * 40
    # what the image's decision read this run with the deploy keys (every ref of each repo it clones)
    read = [Repo("ampel-core", "git@github-ampel:AmpelProject/Ampel-core.git", Path("k"), new,
                 {"HEAD": new, "refs/heads/master": new, "refs/tags/v0.3.4": head})]
    r.evidence(image.EVIDENCE, lambda: {"found": read})
    answers.append((r"^stat -c %U", Result("ampelop\n", "", 0)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result(
        f"@@repo ampel-core {head} master git@github-ampel:AmpelProject/Ampel-core.git\n"
        f"@@repo ampel-x {head} master git@github-ampel-x:AmpelProject/ampel-x.git\n", "", 0)))
    answers.append((r"^d=\$\(mktemp -d\) .*git ls-remote", Result(
        f"@@ls ampel-x\n{other}\trefs/heads/master\n{head}\trefs/tags/v0.3.4\n", "", 0)))
    runner.run(r, "src")
    cmds = [c for _, _, c in commands(log)]
    asked = [c for c in cmds if "git ls-remote" in c]
    assert len(asked) == 1 and "ampel-x.git" in asked[0] and "Ampel-core" not in asked[0], cmds
    assert f"git -C /scratch/ampel/Ampel-v0.3/ampel-core reset -q --keep {new}" in " ".join(cmds)
    assert f"git -C /scratch/ampel/Ampel-v0.3/ampel-x reset -q --keep {other}" in " ".join(cmds)
    assert sources.repo_key("git@github.com:AmpelProject/Ampel-core.git") == "ampelproject/ampel-core"


def test_src_refuses_a_tree_owned_by_another_user_before_anything_changes(site):
    from ampel_tasks.steps import src
    
    r, answers, log = site
    answers.append((r"^stat -c %U", Result("jvs\n", "", 0)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result("", "", 0)))
    with pytest.raises(DeployError, match=r"/scratch/ampel/Ampel-v0.3 is owned by jvs, not ampelop "
                                          r"\(ampel.paths.ampel_src_owner\)"):
        runner.run(r, "src")
    assert not any(c.startswith("git -C") or "volume" in c for _, _, c in commands(log))


def test_src_adds_a_repo_that_the_image_added_as_the_owner_of_the_tree(site, monkeypatch):
    from ampel_tasks.facts import state
    from ampel_tasks.steps import src

    r, answers, log = site
    r.settings.paths["ampel_src_owner"] = "ampel"
    head = "1" * 40
    monkeypatch.setattr(state, "image_labels", lambda r, site: {
        "org.ampelproject.repos": '{"ampel-core": {}, "ampel-contrib-foo": {}}'})
    answers.append((r"^stat -c %U", Result("ampel\n", "", 0)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result(
        f"@@repo ampel-core {head} master git@github-ampel:AmpelProject/Ampel-core.git\n", "", 0)))
    answers.append((r"^d=\$\(mktemp -d\) .*git ls-remote", Result(f"@@ls ampel-core\n{head}\trefs/heads/master\n", "", 0)))
    runner.run(r, "src")
    assert ("burst", "ampel", "singularity exec /data/ampel/singularity/ampel-v0.3.5.simg tar -C /Ampel -c "
            "ampel-contrib-foo | tar -C /scratch/ampel/Ampel-v0.3 -x") in commands(log)
    assert all(u == "ampel" for _, u, c in commands(log) if c.startswith(("git", "cd /scratch", "stat")))


def test_db_makes_the_version_directory_as_ampel_and_edits_dryrun_env(site):
    from ampel_tasks.steps import db

    r, answers, log = site
    answers.append((r"^cat /scratch/ampel/Ampel-v0.3/ampel-core/deploy/production/dryrun.env$", Result(ENV, "", 0)))
    answers.append((r"^test -e /data/ampel/mongo/live/v0.3.[05]$", Result("", "", 1)))
    answers.append((r"^ls -A", Result("", "", 0)))
    runner.run(r, "db")
    assert ("burst", "ampel", "mkdir -p /data/ampel/mongo/live/v0.3.5") in commands(log)
    write = [e for e in log if len(e) == 4][-1]
    assert write[0] == "burst" and "backup kept" in write[2]
    new = write[3]
    assert "MONGO_PATH=/data/ampel/mongo/live/v0.3.5\n" in new and "GROUP_NAME=ampel-v0.3.5\n" in new
    assert "AMPEL_TAG=v0.3.5\n" in new and new.startswith("# dryrun\n") and "NUM_STREAMS=16\n" in new
    assert not any(c.startswith("rm ") or " rm -r" in c for _, _, c in commands(log))


def test_pull_runs_singularity_pull_as_ampel_through_the_tunnel(site, monkeypatch):
    from ampel_tasks.steps import pull

    r, answers, log = site
    opened = []

    class FakeTunnel:
        def __init__(self, host, remote_port, local_host, local_port):
            opened.append((host.name, remote_port, local_host, local_port))

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(tunnel, "Tunnel", FakeTunnel)
    started = []  # the local registry is started (a unit test starts no container)
    monkeypatch.setattr(registry, "ensure", lambda client, s, dry: started.append((client, dry)))
    monkeypatch.setattr(dockerengine, "engine", lambda r: "engine")
    monkeypatch.setattr(dockerengine, "image_or_none", lambda client, ref: None)
    r.outcome.pushed_digest = "sha256:" + "a" * 64
    # neither host has the image file (nor a part of one)
    answers.append((r"^cd /data/ampel/singularity 2>/dev/null && for f in \.\*\.simg\.part-\*", Result("", "", 0)))
    runner.run(r, "pull")
    assert started == [("engine", False)]
    assert sorted(opened) == [("burst", 5000, "127.0.0.1", 5000), ("transit", 5000, "127.0.0.1", 5000)]
    pulls = [(h, u, c) for h, u, c in commands(log) if "singularity pull" in c]
    assert sorted(h for h, _, _ in pulls) == ["burst", "transit"]
    for _, user, cmd in pulls:
        assert user == "ampel"
        assert cmd.startswith("cd /data/ampel/singularity && ")
        # Singularity 2.x: the URI is the argument, the name comes with --name and
        # lands in SINGULARITY_CACHEDIR, set to the directory it is renamed in
        assert re.search(r"SINGULARITY_NOHTTPS=1 SINGULARITY_CACHEDIR=/data/ampel/singularity singularity pull "
                         r"--name \.ampel-v0\.3\.5\.simg\.part-\d+ docker://localhost:5000/ampel:v0\.3\.5$",
                         cmd.split(" && ")[2])
        assert "mv -f .ampel-v0.3.5.simg.part-" in cmd and "ampel-v0.3.5.simg.digest" in cmd


def test_up_runs_deploy_up_in_the_dryrun_directory_as_ampel(site, monkeypatch):
    from ampel_tasks.facts import health
    from ampel_tasks.steps import up

    r, answers, log = site
    monkeypatch.setattr(health, "gate", lambda *a, **k: None)
    answers.append((r"^cat .*dryrun\.env$", Result(ENV, "", 0)))
    r.changed.add("db")
    runner.run(r, "up")
    # v0.3.5's deploy/up takes the config only; the machine comes from the hostname
    plain = ("cd /home/ampel/dryrun && timeout -k 10 1200 env PYTHONUNBUFFERED=1 "
             "/scratch/ampel/Ampel-v0.3/ampel-core/deploy/up dryrun")
    # (run so that its session ends with it: up.ending_with)
    assert ("burst", "ampel", up.ending_with(plain)) in commands(log)


def test_version_is_quoted_where_it_meets_a_shell(site):
    """The version reaches the hosts inside paths (the image file, the live database's
    directory): each path is one shell word whatever else it holds."""
    from ampel_tasks.steps import db, src

    r, answers, log = site
    r.settings.paths["singularity_dir"] = "/data/ampel/sing images"
    r.settings.env["mongo_path"] = "/data/ampel/mongo/live $(id)/{version}"
    answers.append((r"^stat -c %U '/scratch/ampel/Ampel-v0.3'$|^stat -c %U /scratch/ampel/Ampel-v0.3$",
                    Result("", "stat: cannot statx: No such file", 1)))
    answers.append((r"^cd /scratch/ampel/Ampel-v0.3 && for d in", Result("", "", 0)))
    runner.run(r, "src")
    sent = [c for _, _, c in commands(log)]
    assert ("singularity-stack volume init '/data/ampel/sing images/ampel-v0.3.5.simg' /Ampel /scratch/ampel/Ampel-v0.3"
            in sent), sent
    answers.append((r"^cat .*dryrun\.env$", Result(ENV, "", 0)))
    answers.append((r"^test -e '/data/ampel/mongo/live \$\(id\)/v0.3.5'$", Result("", "", 1)))
    answers.append((r"^ls -A '/data/ampel/mongo/live \$\(id\)/v0.3.5'", Result("", "", 0)))
    r.options = replace(r.options, new_db=True)
    runner.run(r, "db")
    assert "mkdir -p '/data/ampel/mongo/live $(id)/v0.3.5'" in [c for _, _, c in commands(log)]


def test_secrets_never_reach_a_command_line(site, tmp_path):
    from ampel_tasks.steps import secrets

    r, answers, log = site
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "mongo-writer.txt").write_text("hunter2-very-secret\n")
    r.settings.secrets["local_dir"] = str(secret_dir)
    stack = "services: {}\nsecrets:\n  mongo-writer:\n    file: secrets/mongo-writer.txt\n"
    answers.append((r"^cat .*burst\.yml$", Result(stack, "", 0)))
    answers.append((r"sha256sum", Result("", "", 0)))
    answers.append((r"stat -c", Result("ampel 700 secrets\nampel 600 secrets/mongo-writer.txt\n", "", 0)))
    runner.run(r, "secrets")
    writes = [e for e in log if len(e) == 4]
    assert writes and writes[0][1] == "ampel" and writes[0][3] == "hunter2-very-secret\n"
    assert "0600" in writes[0][2]
    assert not any("hunter2" in c for _, _, c in commands(log))


@pytest.mark.parametrize("dry", [False, True])
def test_a_refusal_read_in_the_facts_stops_the_run_with_or_without_dry(site, dry):
    """--dry cannot read what a host does not answer; what it read and refuses (an env
    file deploy/up would trip over, a secret held nowhere) it refuses as a real run does,
    as src and tag do."""
    from ampel_tasks.steps import db, secrets

    r, answers, log = site
    r.dry = dry
    answers.append((r"^cat .*dryrun\.env$", Result(ENV + "export NUM_STREAMS=8\n", "", 0)))
    with pytest.raises(DeployError, match=r"line 7: `export` is not NAME=VALUE"):
        db.decide_db(r)
    stack = "services: {}\nsecrets:\n  mongo-writer:\n    file: secrets/mongo-writer.txt\n"
    answers.append((r"^cat .*burst\.yml$", Result(stack, "", 0)))
    answers.append((r"^cd /home/ampel/dryrun 2>/dev/null && for f in", Result("", "", 0)))  # on burst: none
    r.settings.secrets["local_dir"] = "/nonexistent/secrets"
    with pytest.raises(DeployError, match=r"secret mongo-writer \(secrets/mongo-writer.txt\) is neither in"):
        secrets.decide_secrets(r)
    assert r.unknown_facts == []


def test_a_hosts_image_file_is_read_by_one_command_and_parsed():
    from ampel_tasks.steps.pull import image_file_command, parse_image_file

    cmd = image_file_command("/data/ampel/sing images", "/data/ampel/sing images/ampel-v0.3.5.simg")
    assert cmd == ("cd '/data/ampel/sing images' 2>/dev/null && for f in .*.simg.part-*; do test -e \"$f\" && "
                   "echo \"left $f\"; done; test -f '/data/ampel/sing images/ampel-v0.3.5.simg' && "
                   "cat '/data/ampel/sing images/ampel-v0.3.5.simg.digest' 2>/dev/null; true")
    digest = "sha256:" + "5" * 64
    assert parse_image_file(f"left .ampel-v0.3.6.simg.part-4242\n{digest}\n") == (digest, [".ampel-v0.3.6.simg.part-4242"])
    assert parse_image_file("") == ("", [])


def test_the_manifests_are_read_by_one_command_newest_first():
    from ampel_tasks.facts.state import manifests_command, parse_manifests

    assert manifests_command("/home/ampel/dryrun/.ampel-tasks/deployments") == (
        "cd /home/ampel/dryrun/.ampel-tasks/deployments 2>/dev/null && for f in *.json; do test -f \"$f\" && "
        "cat \"$f\" && echo; done; true")
    out = ('{"version": "v0.3.5", "started": "2026-12-01T10:00:00Z"}\n{"version": "v0.3.6", "started": '
           '"2026-12-02T10:00:00Z"}\n{"version": "v0.3.7", "start\n\n')
    assert [m["version"] for m in parse_manifests(out)] == ["v0.3.6", "v0.3.5"]
