"""Last: `scripts/sandbox down` leaves no process, namespace or container of its own
behind, and the sandbox never touches what is not its own on the machine's engine:
another project's images (tagged or dangling), volumes and a container named
`registry` outlive `down` and `reset`."""
import subprocess
import uuid

import pytest

from conftest import REGISTRY, sandbox_cmd

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"


def docker(*args, check=True):
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check).stdout.strip()


def foreign_things(tmp_path) -> dict:
    """Another project's: a tagged image, a dangling one (built twice under one tag),
    a volume, and a stopped `registry` container publishing the runbook's port."""
    mark = uuid.uuid4().hex[:8]
    ids = []
    for n in range(2):
        (tmp_path / "Dockerfile").write_text(f"FROM registry:2\nLABEL org.example.project=other-{mark}-{n}\n")
        docker("build", "-q", "-t", f"other-project:{mark}", str(tmp_path))
        ids.append(docker("image", "inspect", "-f", "{{.Id}}", f"other-project:{mark}"))
    volume = docker("volume", "create", f"other-project-{mark}")
    # one the machine already has is the same test, and stays after it
    mine = docker("inspect", "-f", "{{.Id}}", "registry", check=False)
    container = mine or docker("create", "--name", "registry", "-p", "5000:5000", "registry:2")
    return {"images": ids, "volume": volume, "container": container, "made": not mine}


def still_there(things) -> list:
    gone = [i for i in things["images"] if subprocess.run([DOCKER, "image", "inspect", i], capture_output=True).returncode]
    if subprocess.run([DOCKER, "volume", "inspect", things["volume"]], capture_output=True).returncode:
        gone.append(things["volume"])
    if docker("inspect", "-f", "{{.Id}}", "registry", check=False) != things["container"]:
        gone.append("container registry")
    return gone


def test_down_leaves_nothing_of_its_own_and_everything_else(sandbox, tmp_path):
    things = foreign_things(tmp_path)
    try:
        sandbox_cmd("down")
        netns = subprocess.check_output(["ip", "netns", "list"], text=True)
        assert "ampel-" not in netns
        ps = subprocess.check_output(["ps", "-eo", "args"], text=True)
        assert "/var/lib/ampel-sandbox" not in ps, [l for l in ps.splitlines() if "ampel-sandbox" in l]
        assert REGISTRY not in docker("ps", "-a", "--format", "{{.Names}}").split()
        links = subprocess.check_output(["ip", "-o", "link"], text=True)
        assert "ab-burst" not in links
        assert still_there(things) == []
        # reset wipes the sandbox's images and workspace: still nothing of the other project's
        sandbox_cmd("reset")
        assert still_there(things) == []
        assert docker("images", "-q", "--filter", "label=org.ampelproject.version") == ""
        # and up again is idempotent and quick
        sandbox_cmd("up")
        assert sandbox_cmd("status").returncode == 0
    finally:
        if things["made"]:
            docker("rm", "-f", things["container"], check=False)
        docker("volume", "rm", things["volume"], check=False)
        docker("rmi", "-f", *things["images"], check=False)
