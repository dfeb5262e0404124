"""Shared fixtures: the tool run as a user runs it, and the sandbox brought up once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "sandbox"


def tool(*args, profile="config/sandbox.yaml", env=None, check=False, timeout=600, cwd=None, binary="invoke"):
    """Run `invoke -f PROFILE ARGS...` (or ampel-deploy) the way an operator does."""
    argv = [binary] + (["-f", profile] if profile else []) + list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.pop("INVOKE_DEBUG", None)
    p = subprocess.run(argv, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def sandbox_cmd(*args, check=True):
    p = subprocess.run([str(SANDBOX), *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"scripts/sandbox {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def sandbox():
    """A freshly reset sandbox (hosts, git server, registry engine), once per session."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the sandbox needs root; CI runs as root")
        pytest.skip("the sandbox needs root")
    # AMPEL_SANDBOX_KEEP=1 reuses the running sandbox (while iterating on one test)
    sandbox_cmd("up" if os.environ.get("AMPEL_SANDBOX_KEEP") else "reset")
    status = json.loads(sandbox_cmd("status", "--json").stdout)
    status["host"] = {h["name"]: h for h in status["hosts"]}
    return status


@pytest.fixture
def deployed(sandbox):
    """v0.3.5 deployed and healthy on the sandbox (a no-op deploy when it already is)."""
    p = tool("deploy", "--version", "v0.3.5", "--yes", timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    return sandbox


def pytest_sessionfinish(session, exitstatus):
    """Under CI a skipped test is a failure: every integration test must run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI: {skipped} test(s) skipped; every test must run in CI", file=sys.stderr)
        session.exitstatus = 1
