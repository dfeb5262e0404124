"""Hooks around a real deploy on the sandbox: run while the lock is held, given the
run; a failing pre-deploy hook stops the deploy before any change, and the
on-failure hook hears of it."""
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tool

pytestmark = pytest.mark.sandbox
LOCK = "home/ampel/dryrun/.ampel-tasks/lock"


def profile_with_hooks(tmp_path, **hooks):
    config = yaml.safe_load((REPO / "config/sandbox.yaml").read_text())
    config["ampel"]["hooks"] = hooks
    path = tmp_path / "with-hooks.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def executable(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_hooks_run_around_a_deploy_while_the_lock_is_held(deployed, tmp_path):
    burst = Path(deployed["host"]["burst"]["root"])
    seen = tmp_path / "seen"
    pre = executable(tmp_path, "pre", f'echo "pre $AMPEL_VERSION lock:$(test -d {burst / LOCK} && echo held)" >> {seen}\n'
                                      'echo "checks passed"\n')
    post = executable(tmp_path, "post", f'echo "post $AMPEL_RESULT $AMPEL_CHANGED lock:$(test -d {burst / LOCK} && echo held)"'
                                        f' >> {seen}\necho "$AMPEL_PLAN" > {tmp_path}/plan.json\n')
    profile = profile_with_hooks(tmp_path, pre_deploy=pre, post_deploy=post)
    p = tool("deploy", "--version", "v0.3.5", "--yes", "--force", "up", profile=profile, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr
    assert seen.read_text().splitlines() == ["pre v0.3.5 lock:held", "post ok up lock:held"]
    assert "==> hook pre_deploy: " in p.stdout and "    | checks passed" in p.stdout
    assert {s["step"]: s["action"] for s in json.loads((tmp_path / "plan.json").read_text())}["up"] == "run"
    dry = tool("deploy", "--version", "v0.3.5", "--yes", "--force", "up", "--dry", profile=profile, timeout=300)
    assert "(pre_deploy hook: not run under --dry)" in dry.stdout and len(seen.read_text().splitlines()) == 2


def test_a_failing_pre_deploy_hook_stops_before_any_change_and_the_failure_hook_hears(deployed, tmp_path):
    burst = Path(deployed["host"]["burst"]["root"])
    heard = tmp_path / "heard"
    pre = executable(tmp_path, "pre", "echo 'no deploys during the observing run'; exit 4\n")
    fail = executable(tmp_path, "fail", f'echo "$AMPEL_RESULT: $AMPEL_ERROR" > {heard}; exit 1\n')
    profile = profile_with_hooks(tmp_path, pre_deploy=pre, on_failure=fail)
    before = (burst / "home/ampel/dryrun/.ampel-tasks/current").read_text()
    p = tool("deploy", "--version", "v0.3.5", "--yes", "--force", "up", profile=profile, timeout=600)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("error: pre_deploy hook ")
    assert "failed with exit 4" in p.stderr and "    | no deploys during the observing run" in p.stdout
    assert "Stopping" not in p.stdout and "==> up burst:" not in p.stdout
    assert heard.read_text().startswith("failed: pre_deploy hook ")
    assert "on_failure hook" in p.stderr, "its own failure is reported, after the original error's cause"
    assert not (burst / LOCK).exists() and (burst / "home/ampel/dryrun/.ampel-tasks/current").read_text() == before
