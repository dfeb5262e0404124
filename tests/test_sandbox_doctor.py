"""doctor on the sandbox: all well, then a broken deploy key, a missing sudo rule
and a full disk, each named with its fix, nothing changed."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import tool

pytestmark = pytest.mark.sandbox
STATE = Path("/var/lib/ampel-sandbox")
KEYS = STATE / "operator/ampel-core/deploy/docker-images/devel/deploy-keys"
SUDOERS = Path("/etc/sudoers.d/ampel-sandbox")


def lines(p):
    """doctor's check lines: `ok    WHAT: ...` or `FAIL  WHAT: ...; fix: ...`."""
    return [line for line in p.stdout.splitlines() if line[:4] in ("ok  ", "FAIL")]


def test_doctor_passes_on_a_ready_site(sandbox):
    p = tool("doctor", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    got = lines(p)
    for what in ("kerberos", "burst: ssh", "burst: sudo", "burst: space", "transit: runtime", "docker",
                 "registry port", "deploy key id_rsa.ampel-base"):
        assert any(line[6:].startswith(what + ":") for line in got), (what, p.stdout)
    assert all(line.startswith("ok  ") for line in got), p.stdout
    assert "ok    burst: runtime: 2.6." in p.stdout and "singularity-stack 0.2.2 (profile: singularity 2.x)" in p.stdout


def test_doctor_names_a_broken_key_a_missing_sudo_rule_and_a_full_disk(sandbox, tmp_path):
    key = KEYS / "id_rsa.ampel-base"
    shutil.copy(key, tmp_path / "key")
    sudoers = SUDOERS.read_text()
    burst_root = Path(sandbox["host"]["burst"]["root"])
    sshd = (burst_root / "run/sshd.pid").read_text().strip()
    small = burst_root / "data/ampel/small"
    small.mkdir(exist_ok=True)
    subprocess.run(["nsenter", "-t", sshd, "-m", "mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", "/data/ampel/small"],
                   check=True)
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-N", "", "-f", str(tmp_path / "other")], check=True)
        shutil.copy(tmp_path / "other", key)
        SUDOERS.write_text("".join(l + "\n" for l in sudoers.splitlines() if not l.startswith("ampelop ")))
        p = tool("doctor", env={"INVOKE_AMPEL_PATHS_SINGULARITY_DIR": "/data/ampel/small"}, timeout=300)
        assert p.returncode == 1 and "Traceback" not in p.stderr
        assert p.stderr.startswith("error: ") and len(p.stderr.strip().splitlines()) == 1
        out = p.stdout
        assert "FAIL  deploy key id_rsa.ampel-base: cannot read git@github-ampel-base:AmpelProject/Ampel-base.git" in out
        assert "fix: add id_rsa.ampel-base.pub as a deploy key of AmpelProject/Ampel-base.git" in out
        assert "FAIL  burst: sudo: sudo -n -u ampel: " in out and "fix: a sudoers rule letting ampelop act as ampel" in out
        assert "FAIL  transit: sudo" in out
        SUDOERS.write_text(sudoers)
        p = tool("doctor", env={"INVOKE_AMPEL_PATHS_SINGULARITY_DIR": "/data/ampel/small"}, timeout=300)
        assert re.search(r"FAIL  burst: space: 64.0 MiB free in /data/ampel/small, [\d.]+ MiB wanted for a pull", p.stdout), p.stdout
    finally:
        shutil.copy(tmp_path / "key", key)
        SUDOERS.write_text(sudoers)
        subprocess.run(["nsenter", "-t", sshd, "-m", "umount", "/data/ampel/small"], check=False)
        small.rmdir()
    assert tool("doctor", timeout=300).returncode == 0
