"""A fresh machine: a container of a clean Debian 12 root filesystem (the sandbox's
debootstrapped base) whose only python is Debian's. There, as a user who is not
root, the README's install step (python3-venv from apt, then scripts/install),
`ampel-deploy --list` and an offline `deploy --dry` on the production profile work."""
import subprocess

import pytest

from conftest import OFFLINE, REPO

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"
BASE = "ampel-sandbox-base:bookworm"

SCRIPT = r"""
set -eu
test "$(command -v python3)" = /usr/bin/python3 && ! ls /usr/local/bin/python* 2>/dev/null
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
useradd -m op
mkdir /home/op/ampel-tasks && tar -C /home/op/ampel-tasks -xf /ctx/tree.tar && chown -R op: /home/op/ampel-tasks
su op -c '
set -e
export PATH=/usr/bin:/bin
cd ~/ampel-tasks && scripts/install
cd ~ && ~/.local/bin/ampel-deploy --list
echo "@@DRY"
env @@OFFLINE@@ ~/.local/bin/ampel-deploy -f ~/ampel-tasks/config/production.yaml deploy --version v0.3.5 --dry
'
python3 -c "import invoke" 2>/dev/null && { echo "invoke in Debian's python" >&2; exit 9; } || true
"""


def test_a_fresh_debian_12_installs_lists_and_dry_runs_production(sandbox, tmp_path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "--null", "-T", "-", "-cf", str(tmp_path / "tree.tar")], cwd=REPO, input=files, check=True)
    # the machine's trust store: package registries are reached through this workplace's TLS, which
    # every machine here trusts (a container of a bare root filesystem would not)
    trust = ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
    script = SCRIPT.replace("@@OFFLINE@@", " ".join(f"{k}={v}" for k, v in OFFLINE.items()))
    p = subprocess.run([DOCKER, "run", "--rm", "--network", "host", *trust, "-v", f"{tmp_path}:/ctx:ro", BASE,
                        "bash", "-c", script], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    listing, _, dry = p.stdout.partition("@@DRY")
    assert "install: ampel-deploy 0.1.0 in /home/op/.local/share/ampel-tasks" in listing
    for task in ("deploy", "plan", "image", "push", "pull", "src", "db", "tag", "secrets", "up", "logs"):
        assert f"\n  {task} " in listing, f"{task} missing from --list:\n{listing}"
    assert "docker push localhost:5000/ampel:v0.3.5" in dry
    assert "dry run of v0.3.5: nothing was changed" in dry
    assert "Traceback" not in p.stderr
