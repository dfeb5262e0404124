"""Hooks: the team's executables around a deploy, given the run in AMPEL_* variables."""
import json
import stat

import pytest
from invoke import Config

from ampel_tasks.flow import hooks, run as runs
from ampel_tasks.config.defaults import DEFAULTS
from ampel_tasks.config.errors import DeployError


@pytest.fixture
def r(tmp_path, monkeypatch):
    config = Config(overrides={})
    config.load_collection(DEFAULTS)
    run = runs.begin(config)
    run.set_version("v0.3.6")
    run.outcome.plan = [{"step": "up", "action": "run", "reason": "x"}]
    run.changed.add("up")
    yield run
    runs.end(run)


def hook(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_hook_gets_the_run_and_its_output_is_shown(r, tmp_path, capsys, monkeypatch):
    r.settings.hooks["post_deploy"] = hook(tmp_path, "post", 'echo "$AMPEL_EVENT $AMPEL_VERSION after $AMPEL_RUNNING '
                                                              '$AMPEL_RESULT $AMPEL_CHANGED"; echo "$AMPEL_PLAN" > plan.json\n')
    monkeypatch.chdir(tmp_path)  # (the hook writes plan.json where the tool runs; undone after the test)
    hooks.run(r, "post_deploy", running="v0.3.5")
    out = capsys.readouterr().out
    assert f"==> hook post_deploy: {tmp_path}/post" in out and "    | post_deploy v0.3.6 after v0.3.5 ok up" in out
    assert json.loads((tmp_path / "plan.json").read_text()) == [{"step": "up", "action": "run", "reason": "x"}]


def test_a_failing_hook_is_an_error_but_a_failing_on_failure_hook_only_a_warning(r, tmp_path, capsys):
    r.settings.hooks["pre_deploy"] = hook(tmp_path, "pre", "echo no deploys on Fridays; exit 3\n")
    with pytest.raises(DeployError, match=r"pre_deploy hook .*/pre failed with exit 3"):
        hooks.run(r, "pre_deploy")
    r.settings.hooks["on_failure"] = hook(tmp_path, "fail", 'echo "alert: $AMPEL_ERROR"; exit 1\n')
    hooks.on_failure(r, "stack unhealthy")
    captured = capsys.readouterr()
    assert "    | alert: stack unhealthy" in captured.out
    assert "on_failure hook" in captured.err and "the deploy's own error follows" in captured.err


def test_under_dry_hooks_are_printed_not_run(r, tmp_path, capsys):
    r.dry = True
    r.settings.hooks["pre_deploy"] = hook(tmp_path, "pre", f"touch {tmp_path}/ran\n")
    hooks.show_dry(r)
    assert "not run under --dry" in capsys.readouterr().out and not (tmp_path / "ran").exists()
