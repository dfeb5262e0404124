"""Last: `scripts/sandbox down` leaves no process, namespace or container behind."""
import subprocess

import pytest

from conftest import sandbox_cmd

pytestmark = pytest.mark.sandbox


def test_down_leaves_nothing_running(sandbox):
    sandbox_cmd("down")
    netns = subprocess.check_output(["ip", "netns", "list"], text=True)
    assert "ampel-" not in netns
    ps = subprocess.check_output(["ps", "-eo", "args"], text=True)
    assert "/var/lib/ampel-sandbox" not in ps, [l for l in ps.splitlines() if "ampel-sandbox" in l]
    containers = subprocess.check_output(["/usr/bin/docker", "ps", "-a", "--format", "{{.Names}}"], text=True).split()
    assert "registry" not in containers
    links = subprocess.check_output(["ip", "-o", "link"], text=True)
    assert "ab-burst" not in links
    # and up again is idempotent and quick
    sandbox_cmd("up")
    sandbox_cmd("up")
    assert sandbox_cmd("status").returncode == 0
