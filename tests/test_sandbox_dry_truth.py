"""A dry run says what the real run would do (#9's defects, black-box): a step
whose facts an earlier step would change is not skipped on the facts as they are,
and the registry the run would use is the one configured, not one of that name."""
import re

import pytest

from conftest import OFFLINE, REGISTRY, tool

pytestmark = pytest.mark.sandbox


def test_after_a_rebuild_the_dry_run_pushes_and_pulls(deployed):
    p = tool("deploy", "--version", "v0.3.5", "--force", "image", "--dry", timeout=300)
    assert p.returncode == 0, p.stderr
    out = p.stdout.split("==> image:", 1)[1]
    assert "==> push: skip" not in out, "a new build has a new digest: the registry does not serve it yet"
    assert "docker push localhost:5000/ampel:v0.3.5" in out
    assert "==> pull burst: skip" not in out and "==> pull transit: skip" not in out
    assert "singularity pull --name .ampel-v0.3.5.simg.part-" in out


def test_a_registry_on_another_port_is_not_taken_for_the_configured_one(deployed):
    """The engine runs the sandbox's registry on 127.0.0.1:5000; the profile asks for 5999."""
    env = {k: v for k, v in OFFLINE.items() if k != "DOCKER_HOST"}
    env["INVOKE_AMPEL_REGISTRY_PORT"] = "5999"
    env["INVOKE_AMPEL_REGISTRY_NAME"] = REGISTRY
    p = tool("deploy", "--version", "v0.3.5", "--dry", profile="config/production.yaml", env=env, timeout=300)
    assert "already running on 127.0.0.1:5999" not in p.stdout
    assert p.returncode == 1 and "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert "registry listens on 127.0.0.1:5000, not on 127.0.0.1:5999" in errors[0], errors[0]


def test_a_step_called_alone_runs_the_steps_it_needs_first(deployed):
    """invoke's pre-tasks, from the one table of steps: make-style, in runbook order."""
    for task, expected in (("pull", ["image", "test", "push", "pull"]),
                           ("up", ["image", "test", "push", "pull", "src", "db", "secrets", "schema", "up"]),
                           ("tag", ["image", "test", "push", "pull", "src", "tag"])):
        p = tool(task, "--version", "v0.3.5", "--dry", timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr
        seen = []
        for step in re.findall(r"^==> (\w+)", p.stdout, re.M):
            if step not in seen:
                seen.append(step)
        assert seen == expected, (task, p.stdout[-3000:])
