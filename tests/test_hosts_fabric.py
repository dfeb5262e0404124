"""Host commands at fabric's level (fabric.testing's MockRemote stands for sshd):
what exactly reaches the host, and as whom."""
import pytest
from fabric.testing.base import Command, MockRemote, Session
from invoke import Config

from ampel_tasks import run as runs
from ampel_tasks.defaults import DEFAULTS
from ampel_tasks.errors import DeployError


@pytest.fixture
def burst(tmp_path):
    config = Config()
    config.load_collection(DEFAULTS)
    config["ampel"]["ssh_config"] = str(tmp_path / "none")
    config["ampel"]["known_hosts"] = str(tmp_path / "none")
    r = runs.begin(config)
    yield r
    runs.end()


def expect(*commands, host="burst.ifh.de"):
    remote = MockRemote()
    remote.expect_sessions(Session(host=host, commands=list(commands)))
    return remote


def test_commands_run_as_the_service_user_through_sudo(burst):
    remote = expect(Command("sudo -n -u ampel -H -- sh -c 'cd /data/ampel/singularity && ls'", out=b"ampel-v0.3.5.simg\n"))
    try:
        res = burst.host("burst").run("cd /data/ampel/singularity && ls", user="ampel", mutating=False)
        assert res.stdout == "ampel-v0.3.5.simg\n"
    finally:
        remote.stop()


def test_the_operators_own_commands_are_not_wrapped(burst):
    remote = expect(Command("singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel /scratch/a"))
    try:
        burst.host("burst").run("singularity-stack volume init /data/ampel/singularity/ampel-v0.3.5.simg /Ampel /scratch/a")
    finally:
        remote.stop()


def test_a_failing_command_is_one_line_naming_host_and_command(burst):
    remote = expect(Command("false", err=b"something broke\n", exit=3))
    try:
        with pytest.raises(DeployError) as e:
            burst.host("burst").run("false", mutating=False)
        assert str(e.value) == "on burst: `false` failed with exit 3: something broke"
    finally:
        remote.stop()


def test_dry_runs_no_mutating_command(burst, capsys):
    burst.dry = True
    burst.host("burst").dry = True
    remote = expect()  # no session at all may be opened
    try:
        burst.host("burst").run("mkdir -p /data/ampel/mongo/live/v0.3.5", user="ampel")
    finally:
        remote.stop()
    assert "[burst] (as ampel) $ mkdir -p /data/ampel/mongo/live/v0.3.5" in capsys.readouterr().out
