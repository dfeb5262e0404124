"""Load: `invoke logs` following 16 replicas that each write 1,000 numbered lines a
second for 30 s loses and repeats no line."""
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import REPO, tool
from sandboxsite import burst

pytestmark = pytest.mark.sandbox
SECONDS = 30
LINE = re.compile(r"\(alertprocessor:(\d+) stdout\) load \d+ (\d+)$")


def test_logs_follows_16_replicas_at_1000_lines_a_second_losing_none(deployed, tmp_path):
    core = burst(deployed, "home/ampel/Ampel-v0.3/ampel-core/ampel/core")
    go, load = core / "GO", core / "LOAD"
    go.unlink(missing_ok=True)
    load.write_text(f"{SECONDS}\n")
    out = tmp_path / "logs.out"
    try:
        # the replicas start and wait for GO
        tool("deploy", "--version", "v0.3.5", "--force", "up", "--yes", check=True, timeout=600)
        with open(out, "w") as f:
            p = subprocess.Popen(["invoke", "-f", "config/sandbox.yaml", "logs", "alertprocessor"], cwd=REPO, stdout=f,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.time() + 60
            while out.read_text().count("(alertprocessor:") < 16 and time.time() < deadline:
                time.sleep(0.2)  # following every replica
            go.write_text("")
            t0 = time.time()
            while time.time() - t0 < SECONDS + 30:
                seen = out.read_text().count(" load ")
                if seen >= 16 * SECONDS * 1000:
                    break
                time.sleep(1)
            time.sleep(2)  # (a duplicate would come after the last line)
            os.killpg(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=30)
    finally:
        go.unlink(missing_ok=True)
        load.unlink(missing_ok=True)
    seqs = defaultdict(list)
    for line in out.read_text().splitlines():
        m = LINE.search(line)
        if m:
            seqs[int(m.group(1))].append(int(m.group(2)))
    assert sorted(seqs) == list(range(16)), (sorted(seqs), err)
    for replica, got in sorted(seqs.items()):
        assert len(got) == len(set(got)), f"replica {replica}: {len(got) - len(set(got))} lines twice"
        missing = sorted(set(range(SECONDS * 1000)) - set(got))
        assert not missing, f"replica {replica}: {len(missing)} lines lost, e.g. {missing[:5]}"


GIB = 1 << 30
HOSTS = ("burst", "transit")


def _tx_bytes() -> int:
    """Bytes this machine sent towards burst and transit (their veths' counters)."""
    return sum(int(Path(f"/sys/class/net/ab-{h}/statistics/tx_bytes").read_text()) for h in HOSTS)


def _growing(sandbox) -> dict:
    """{host: bytes written so far} of the pull's temporary files on each host."""
    out = {}
    for h in HOSTS:
        where = Path(sandbox["host"][h]["root"], "data/ampel/singularity")
        out[h] = sum(f.stat().st_size for f in list(where.glob(".*.part-*")) + list(where.glob("docker/*.part-*"))
                     if f.exists())
    return out


def test_a_1_gib_image_is_pulled_through_the_tunnels_to_both_hosts_at_once(deployed, tmp_path):
    """A recipe whose image carries 1 GiB of incompressible data: the tool builds it,
    pushes it, and pulls it onto burst and transit at the same time."""
    sandbox, version = deployed, f"v0.3.5-g{int(time.time()) % 1000}"  # (singularity 2.x: names of 32 at most)
    recipe = tmp_path / "recipe"
    shutil.copytree(Path("/var/lib/ampel-sandbox/operator/ampel-core/deploy/docker-images/devel"), recipe,
                    symlinks=True)
    with open(recipe / "Dockerfile", "a") as f:
        f.write(f"\nRUN head -c {GIB} /dev/urandom > /var/tmp/one-gib.bin\n")
    env = {"INVOKE_AMPEL_SOURCE_IMAGE_DIR": str(recipe)}
    overlap, stop = [], threading.Event()

    def watch():
        last = _growing(sandbox)
        while not stop.is_set():
            time.sleep(0.25)
            now = _growing(sandbox)
            if all(now[h] > last[h] for h in HOSTS):
                overlap.append(now)
            last = now

    watcher = threading.Thread(target=watch, daemon=True)
    sent = _tx_bytes()
    try:
        watcher.start()
        # (its tests are not what this measures: the operator takes that risk with --skip-tests)
        p = tool("push", "--version", version, "--skip-tests", "pull", "--version", version, env=env, timeout=1500)
        stop.set()
        watcher.join()
        sent = _tx_bytes() - sent
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        digest = None
        for h in HOSTS:
            image = Path(sandbox["host"][h]["root"], f"data/ampel/singularity/ampel-{version}.simg")
            assert image.stat().st_size > GIB, f"{h}: {image.stat().st_size} bytes"
            recorded = image.with_name(image.name + ".digest").read_text().strip()
            assert digest in (None, recorded)
            digest = recorded
            assert re.search(rf"{h}: ampel-{re.escape(version)}\.simg \d+\.\d MiB in \d+ s", p.stdout), p.stdout[-2000:]
        assert len(overlap) >= 4, f"the two pulls never wrote at the same time: {overlap}"
        assert sent > 2 * GIB, f"only {sent / 2**20:.0f} MiB went to the hosts"
        assert not burst(sandbox, "home/ampel/dryrun/.ampel-tasks/lock").exists()
    finally:
        stop.set()
        _forget(sandbox, version)


def _forget(sandbox, version):
    """The big image gone again: from the hosts (file, digest, cached layers), the
    registry (its manifest; deletes are enabled) and this machine's engine."""
    import json as _json
    import urllib.request

    for h in HOSTS:
        where = Path(sandbox["host"][h]["root"], "data/ampel/singularity")
        for f in where.glob(f"ampel-{version}.simg*"):
            f.unlink()
    big = {}
    try:
        req = urllib.request.Request(f"http://127.0.0.1:5000/v2/ampel/manifests/{version}",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            digest, manifest = r.headers["Docker-Content-Digest"], _json.loads(r.read())
        big = {layer["digest"] for layer in manifest["layers"] if layer["size"] > GIB // 2}
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:5000/v2/ampel/manifests/{digest}",
                                                      method="DELETE"), timeout=10).close()
    except OSError:
        pass
    for h in HOSTS:
        for layer in big:
            Path(sandbox["host"][h]["root"], "data/ampel/singularity/docker", layer).unlink(missing_ok=True)
    for ref in (f"ampel:{version}", f"localhost:5000/ampel:{version}"):
        subprocess.run(["/usr/bin/docker", "rmi", ref], capture_output=True)
