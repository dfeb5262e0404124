"""The runbook's test step on the sandbox: each repo's unit tests in the image that
will run, against the commits that will run, before anything reaches a host."""
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REGISTRY, tool
from sandboxsite import Upstream, burst, transit

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"
STRICTER = ("ampel_contrib_hu/filter.py", lambda t: t.replace("THRESHOLD = 0.5", "THRESHOLD = 0.9"),
            "a stricter T0 filter")


def tree_digest(root: Path) -> dict:
    """{path: sha256} of every file under root (what a deploy could change there)."""
    out = {}
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def hosts_now(sandbox) -> dict:
    return {
        "burst home": tree_digest(burst(sandbox, "home/ampel")),
        "burst images": tree_digest(burst(sandbox, "data/ampel/singularity")),
        "transit images": tree_digest(transit(sandbox, "data/ampel/singularity")),
    }


def pushed_manifests() -> int:
    p = subprocess.run([DOCKER, "logs", REGISTRY], capture_output=True, text=True)
    return sum(1 for line in (p.stdout + p.stderr).splitlines() if '"PUT /v2/ampel/manifests/' in line)


def newest_manifest() -> dict:
    return json.loads(tool("history", "--json", check=True).stdout)[0]


@pytest.mark.moves_site
def test_a_failing_unit_test_stops_the_deploy_before_anything_reaches_a_host(running, tmp_path):
    sandbox = running
    version = f"v0.3.6-t{int(time.time()) % 100000}"
    hu = Upstream(tmp_path, "ampel-contrib-hu")
    try:
        hu.change(*STRICTER)
        before, pushes = hosts_now(sandbox), pushed_manifests()
        p = tool("deploy", "--version", version, "--yes", timeout=900)
        assert p.returncode == 1, p.stdout[-3000:]
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in p.stderr
        assert re.match(r"error: test: ampel-contrib-hu [0-9a-f]{10}: 1 failed, 2 passed \(FAILED "
                        r"tests/test_ampel_contrib_hu_filter.py::test_a_real_looking_alert_is_accepted", errors[0]), errors
        assert "nothing was pushed or changed on a host" in errors[0]
        assert re.search(r"^  test\s+run\s+", p.stdout, re.M), "the plan showed the test step"
        assert re.search(r"^test\s+local\s+failed", p.stdout, re.M) and re.search(r"^push\s+local\s+not run", p.stdout, re.M)
        assert hosts_now(sandbox) == before, "a failed test changed a host"
        assert pushed_manifests() == pushes, "a failed test pushed an image"
        assert not burst(sandbox, "home/ampel/dryrun/.ampel-tasks/lock").exists()

        # the operator takes the risk explicitly: deployed, and the manifest says so
        p = tool("deploy", "--version", version, "--yes", "--skip-tests", timeout=900)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert re.search(r"^  test\s+skip\s+--skip-tests", p.stdout, re.M)
        m = newest_manifest()
        assert m["version"] == version and m["tests"]["result"] == "skipped (--skip-tests)"
        assert m["tests"]["by"] == m["operator"]
    finally:
        hu.revert()


@pytest.mark.moves_site
def test_a_code_only_release_is_tested_in_the_running_image_pulled_by_its_digest(running, tmp_path):
    """The image is reused, this machine no longer has it: pulled from the registry by
    the digest the running deployment records, the new commits mounted over /Ampel."""
    digest = json.loads(tool("status", "--json", check=True).stdout)["image_digest"]
    version = f"v0.3.6-p{int(time.time()) % 100000}"
    core = Upstream(tmp_path, "Ampel-core")
    try:
        core.change("ampel/core/services.py", lambda t: t + f"\n\nNEWER = {version!r}\n", "a code-only change")
        for ref in subprocess.run([DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                                  text=True).stdout.split():
            if ref.split(":")[0].endswith("ampel"):
                subprocess.run([DOCKER, "rmi", "-f", ref], capture_output=True)
        p = tool("deploy", "--version", version, "--yes", timeout=900)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        assert f"is not on this machine: pulling localhost:5000/ampel@{digest}" in p.stdout
        assert re.search(r"^    ampel-core [0-9a-f]{10}: 1 passed", p.stdout, re.M), p.stdout
        m = newest_manifest()
        assert m["tests"]["result"] == "passed" and m["tests"]["commits"]["ampel-core"] == core.made[-1]
        # the same image and commits again: nothing to test
        plan = json.loads(tool("plan", "--version", version, "--json", check=True).stdout)
        test = next(s for s in plan["steps"] if s["step"] == "test")
        assert test["action"] == "skip" and "passed for this image and these commits" in test["reason"]
    finally:
        core.revert()


class _CutAfterCreate:
    """The docker client, with Ctrl-C landing just after the engine made the container
    and before the SDK handed it back (where the interrupted CI run lost one)."""
    def __init__(self, client):
        self._client, self.containers = client, self

    def create(self, *args, **kwargs):
        self._client.containers.create(*args, **kwargs)
        raise KeyboardInterrupt

    def get(self, name):
        return self._client.containers.get(name)

    def list(self, **kwargs):
        return self._client.containers.list(**kwargs)


class _SlowEngine(_CutAfterCreate):
    """The engine makes the container 0.5 s after the request, and Ctrl-C (a real
    SIGINT to this process) comes in between, as a terminal sends it."""
    def create(self, *args, **kwargs):
        made = threading.Thread(target=lambda: (time.sleep(0.5), self._client.containers.create(*args, **kwargs)))
        made.start()
        os.kill(os.getpid(), signal.SIGINT)
        made.join()
        return self._client.containers.get(kwargs["name"])


def test_ctrl_c_while_the_engine_is_still_creating_a_test_container_leaves_none(sandbox, tmp_path):
    import docker
    from ampel_tasks.facts import repotests as testrun

    client = docker.from_env()
    image = client.images.get("ampel-sandbox-base:bookworm")
    commit = f"{time.time_ns():040d}"
    with pytest.raises(KeyboardInterrupt):
        testrun.run_one(_SlowEngine(client), image, "ampel-core", commit, tmp_path, "true")
    time.sleep(1)
    assert client.containers.list(all=True, filters={"label": f"org.ampelproject.commit={commit}"}) == []


def test_ctrl_c_while_a_test_container_is_created_leaves_none(sandbox, tmp_path):
    import docker
    from ampel_tasks.facts import repotests as testrun

    client = docker.from_env()
    image = client.images.get("ampel-sandbox-base:bookworm")
    commit = f"{time.time_ns():040d}"
    with pytest.raises(KeyboardInterrupt):
        testrun.run_one(_CutAfterCreate(client), image, "ampel-core", commit, tmp_path, "true")
    assert client.containers.list(all=True, filters={"label": f"org.ampelproject.commit={commit}"}) == []
    # one left by a run killed outright is swept by the next run's test step
    client.containers.create(image.id, ["true"], labels={"org.ampelproject.step": "test"}, name="ampel-test-left")
    assert "ampel-test-left" in testrun.sweep(client)
    assert client.containers.list(all=True, filters={"label": "org.ampelproject.step=test"}) == []


def test_the_repos_are_tested_side_by_side_and_ctrl_c_leaves_no_container(sandbox, tmp_path):
    import io

    import docker
    from ampel_tasks.facts import repotests as testrun

    client = docker.from_env()
    recipe = b"FROM ampel-sandbox-base:bookworm\nRUN mkdir -p /Ampel/ampel-a /Ampel/ampel-b\n"
    image, _ = client.images.build(fileobj=io.BytesIO(recipe), tag="ampel-sandbox-two-repos:test", rm=True)
    commit = f"{time.time_ns():040d}"
    mine = {"label": f"org.ampelproject.commit={commit}"}
    trees = []
    for repo in ("ampel-a", "ampel-b"):
        (tmp_path / repo).mkdir()
        trees.append((repo, commit, tmp_path / repo))
    both_ran = []

    def ctrl_c_once_both_run():
        deadline = time.time() + 20
        while time.time() < deadline and not both_ran:
            if len(client.containers.list(filters={**mine, "status": "running"})) == 2:
                both_ran.append(True)
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)  # (as a terminal sends it)

    threading.Thread(target=ctrl_c_once_both_run, daemon=True).start()
    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        testrun.run_trees(client, image, trees, "sleep 120")
    assert both_ran, "the two repos' tests never ran at the same time"
    assert time.time() - t0 < 60, "Ctrl-C waited for the tests to end"
    assert client.containers.list(all=True, filters=mine) == []
