"""Bad input: one `error:` line on stderr, exit 1, no traceback, nothing run."""
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import REPO, tool

ALL_TASKS = ["keys", "image", "test", "push", "pull", "src", "db", "tag", "secrets", "schema", "up", "logs",
             "plan", "deploy", "status", "history", "rollback", "prune", "archive-backup", "archive-restore"]


def one_error_line(p):
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def test_list_shows_every_task_with_a_description():
    p = tool("--list", profile=None, check=True)
    for name in ALL_TASKS:
        assert f"\n  {name} " in p.stdout
    assert "Deploy a version: the whole runbook" in p.stdout


def test_console_script_works_from_any_directory(tmp_path):
    p = tool("--list", profile=None, cwd=tmp_path, binary="ampel-deploy", check=True)
    for name in ALL_TASKS:
        assert f"\n  {name} " in p.stdout


@pytest.mark.parametrize("task", ALL_TASKS)
def test_every_task_has_help_for_every_option(task):
    import inspect

    from ampel_tasks import ns

    body = ns.tasks[task]
    params = [p for p in inspect.signature(body.body).parameters if p != "c"]
    assert sorted(body.help) == sorted(params), f"{task}: options without help: {set(params) - set(body.help)}"
    p = tool("--help", task, profile=None, check=True)
    assert "Docstring:\n  none" not in p.stdout
    options = p.stdout.split("Options:", 1)[1]
    for param in params:
        assert "--" + param.strip("_").replace("_", "-") in options  # (invoke's own: from_ is --from)


@pytest.mark.parametrize("version", ["", "0.3.5", "v0.3.5;id", "$(id)", "v0.3.5`id`", "../../etc", "v0.3.\u00e95",
                                     "v" + "1" * 100])
def test_bad_versions_refused_before_anything_runs(version, tmp_path):
    marker = tmp_path / "profile.yaml"
    # an unreachable service host and a missing source dir: if anything ran, the error would differ
    marker.write_text("ampel:\n  hosts:\n    burst: {hostname: 192.0.2.1}\n  source: {dir: /nonexistent}\n")
    p = tool("pull", "--version", version, profile=str(marker))
    line = one_error_line(p)
    assert "version" in line
    assert p.stdout == ""


def test_missing_version():
    line = one_error_line(tool("push", profile=None))
    assert "no version given" in line


def test_missing_profile_names_the_file():
    line = one_error_line(tool("plan", "--version", "v0.3.5", profile="config/nope.yaml"))
    assert "config/nope.yaml" in line and "does not exist" in line


def test_malformed_profile_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ampel:\n  hosts: [unclosed\n")
    for binary in ("invoke", "ampel-deploy"):
        line = one_error_line(tool("plan", "--version", "v0.3.5", profile=str(bad), binary=binary))
        assert "bad.yaml" in line and "YAML" in line


def test_unknown_key_and_wrong_type(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("ampel:\n  registry:\n    prot: 5000\n")
    line = one_error_line(tool("plan", "--version", "v0.3.5", profile=str(typo)))
    assert "ampel.registry.prot" in line and "known keys" in line
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("ampel:\n  hosts:\n    burst:\n      port: twenty-two\n")
    line = one_error_line(tool("plan", "--version", "v0.3.5", profile=str(wrong)))
    assert "ampel.hosts.burst.port" in line and "whole number" in line


def test_env_var_layer_is_typed_and_validated():
    p = tool("plan", "--version", "v0.3.5", profile=None, env={"INVOKE_AMPEL_HOSTS_BURST_PORT": "70000"})
    line = one_error_line(p)
    assert "ampel.hosts.burst.port" in line and "70000" in line


def test_env_vars_override_the_profile(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("ampel:\n  registry:\n    port: 5001\n")
    line = one_error_line(tool("plan", "--version", "v0.3.5", profile=str(prof), env={"INVOKE_AMPEL_REGISTRY_PORT": "70000"}))
    assert "ampel.registry.port" in line and "70000" in line


def test_force_of_an_unknown_step():
    line = one_error_line(tool("deploy", "--version", "v0.3.5", "--force", "imgae", "--dry", profile=None))
    assert "imgae" in line and "image" in line


UNEXPECTED = """
import sys
from ampel_tasks.facts import dockerfile
def broken(*args, **kwargs):
    raise ZeroDivisionError("division by zero\\nsecond line")
dockerfile.files = broken  # what `keys` calls first, after the checks of its input
from ampel_tasks.cli import main
main(["ampel-deploy", *sys.argv[1:]])
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_exception_no_check_expected_is_one_line_unless_debug(debug):
    """A defect of the tool itself (not bad input): one line naming it, exit 1; --debug
    gives the traceback."""
    p = subprocess.run([sys.executable, "-c", UNEXPECTED, *(["--debug"] if debug else []), "keys", "--repo",
                        "ampel-contrib-foo", "--dry"], cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "INVOKE_DEBUG"})
    if debug:
        assert p.returncode == 1 and "Traceback" in p.stderr and "ZeroDivisionError" in p.stderr, p.stderr
        return
    line = one_error_line(p)
    assert line == "error: unexpected ZeroDivisionError: division by zero (re-run with --debug for the traceback)"


def test_banner_timeout_is_bounded_and_clear(tmp_path):
    """A host that accepts TCP but never speaks SSH fails within 30 s (fabric#1342 taught it; OpenSSH bounds it by ConnectTimeout)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    prof = tmp_path / "mute.yaml"
    prof.write_text(textwrap.dedent(f"""\
        ampel:
          timeouts: {{banner: 3, connect: 3}}
          ssh_config: {tmp_path}/none
          hosts:
            burst: {{hostname: 127.0.0.1, port: {port}, roles: [service, pull]}}
            transit: {{hostname: 127.0.0.1, port: {port}, roles: []}}
        """))
    t0 = time.time()
    p = tool("status", profile=str(prof), timeout=60)
    stop.set()
    line = one_error_line(p)
    assert time.time() - t0 < 30
    assert "never spoke SSH" in line and "burst" in line
