"""prune on the sandbox: leftovers go, a rollback target and work in a tree stay."""
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import tool
from sandboxsite import burst, transit

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"


def registry_tags() -> set:
    with urllib.request.urlopen("http://127.0.0.1:5000/v2/ampel/tags/list", timeout=10) as f:
        return set(json.loads(f.read())["tags"] or [])


def served(tag: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:5000/v2/ampel/manifests/{tag}", method="HEAD",
                                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as f:
        return f.headers["Docker-Content-Digest"]


def local_tags() -> set:
    out = subprocess.run([DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}", "ampel"], capture_output=True,
                         text=True).stdout.split()
    return {ref.split(":", 1)[1] for ref in out}


@pytest.mark.moves_site
def test_prune_lists_then_removes_leftovers_and_keeps_the_rollback_target_and_work(deployed, tmp_path):
    sandbox = deployed
    stamp = int(time.time()) % 100000
    newer = f"v0.3.6-r{stamp}"
    images = "data/ampel/singularity"
    before = served("v0.3.5"), burst(sandbox, images, "ampel-v0.3.5.simg").stat().st_mtime_ns
    # a second deployment with an image of its own: v0.3.5 becomes the rollback target
    p = tool("deploy", "--version", newer, "--yes", "--force", "image", timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert f"==> image: building ampel:{newer}" in p.stdout
    assert (served("v0.3.5"), burst(sandbox, images, "ampel-v0.3.5.simg").stat().st_mtime_ns) == before, \
        "a forced build overwrote the running image's registry tag or file"
    # leftovers of older deployments, as an operator finds them
    for root in (burst(sandbox), transit(sandbox)):
        shutil.copy2(root / images / "ampel-v0.3.5.simg", root / images / "ampel-v0.3.1.simg")
        shutil.chown(root / images / "ampel-v0.3.1.simg", "ampel", "ampel")
    home = burst(sandbox, "home/ampel")
    subprocess.run(["cp", "-a", home / "Ampel-v0.3", home / "Ampel-v0.1"], check=True)
    subprocess.run(["cp", "-a", home / "Ampel-v0.3", home / "Ampel-v0.2"], check=True)
    (home / "Ampel-v0.2/ampel-base/setup.py").write_text((home / "Ampel-v0.2/ampel-base/setup.py").read_text()
                                                          + "# an operator's fix, never committed\n")
    context = tmp_path / "old"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM ampel:v0.3.5\nLABEL org.ampelproject.test=an-older-build\n")
    subprocess.run([DOCKER, "build", "-q", "-t", "ampel:v0.3.1", str(context)], check=True, capture_output=True)
    subprocess.run([DOCKER, "tag", "ampel:v0.3.1", "localhost:5000/ampel:v0.3.1"], check=True)
    subprocess.run([DOCKER, "push", "-q", "localhost:5000/ampel:v0.3.1"], check=True, capture_output=True)
    databases = sorted(p.name for p in burst(sandbox, "data/ampel/mongo/live").iterdir())

    listing = tool("prune", "--keep", "2", check=True).stdout
    items = json.loads(tool("prune", "--keep", "2", "--json", check=True).stdout)["items"]

    def row(name, where):
        found = [i for i in items if i["name"] == name and i["where"] == where]
        assert len(found) == 1, (name, where, items)
        return found[0]["remove"], found[0]["reason"]

    for host in ("burst", "transit"):
        assert row("ampel-v0.3.1.simg", host) == (True, "no kept deployment uses it")
        assert row("ampel-v0.3.5.simg", host) == (False, "kept v0.3.5"), "the rollback target's image file stays"
        assert row(f"ampel-{newer}.simg", host) == (False, f"running {newer}")
    assert not [i for i in items if i["name"] == "mongo-3.6.simg"]
    assert row("/home/ampel/Ampel-v0.1", "burst")[0] is True
    assert row("/home/ampel/Ampel-v0.2", "burst") == (False, "holds work: ampel-base: uncommitted setup.py")
    assert row("/home/ampel/Ampel-v0.3", "burst")[0] is False
    assert row("v0.3.1", "registry")[0] is True and row("v0.3.1", "local")[0] is True
    assert row("v0.3.5", "registry")[0] is False and row("latest", "local")[0] is False
    for name in databases:
        assert f"database /data/ampel/mongo/live/{name}:" in listing
    assert "holds work: ampel-base: uncommitted setup.py" in listing
    assert "nothing was changed (run with --apply" in listing
    assert (burst(sandbox, images) / "ampel-v0.3.1.simg").exists() and "v0.3.1" in registry_tags()

    p = tool("prune", "--keep", "2", "--apply", timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    for root in (burst(sandbox), transit(sandbox)):
        assert not (root / images / "ampel-v0.3.1.simg").exists()
        assert (root / images / "ampel-v0.3.5.simg").exists() and (root / images / f"ampel-{newer}.simg").exists()
    assert not (home / "Ampel-v0.1").exists() and (home / "Ampel-v0.2").exists() and (home / "Ampel-v0.3").exists()
    assert "v0.3.1" not in registry_tags() and {"v0.3.5", newer} <= registry_tags()
    assert "v0.3.1" not in local_tags() and "v0.3.5" in local_tags()
    assert sorted(p.name for p in burst(sandbox, "data/ampel/mongo/live").iterdir()) == databases
    assert "registry: garbage collected" in p.stdout

    # the kept rollback target really is one
    back = tool("rollback", "--to", "v0.3.5", "--yes", timeout=600)
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr
    assert json.loads(tool("status", "--json", check=True).stdout)["healthy"]
    shutil.rmtree(home / "Ampel-v0.2")
