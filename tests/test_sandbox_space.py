"""A pull that cannot fit on a host is refused by the plan, before the lock or any
byte moves (a 64 MiB filesystem on burst where singularity would write)."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import tool
from sandboxsite import burst, transit

pytestmark = pytest.mark.sandbox
SMALL = "data/ampel/small"


def test_a_pull_that_cannot_fit_is_refused_before_the_lock(deployed):
    sandbox = deployed
    pid = Path(sandbox["host"]["burst"]["root"], "run", "sshd.pid").read_text().strip()
    target = burst(sandbox, SMALL)
    target.mkdir(exist_ok=True)
    subprocess.run(["chown", "ampel:ampel", str(target)], check=True)
    # host mounts do not propagate: mount inside burst's own mount namespace
    subprocess.run(["nsenter", "-t", pid, "-m", "mount", "-t", "tmpfs", "-o", "size=64m,uid=ampel,gid=ampel", "tmpfs",
                    f"/{SMALL}"], check=True)
    env = {"INVOKE_AMPEL_PATHS_SINGULARITY_DIR": f"/{SMALL}"}
    try:
        history = tool("history", "--json", check=True).stdout
        p = tool("deploy", "--version", "v0.3.5", "--yes", env=env, timeout=600)
        assert p.returncode == 1 and "Traceback" not in p.stderr
        errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, p.stderr
        assert errors[0].startswith(f"error: on burst: /{SMALL} (filesystem /{SMALL}) has 64.0 MiB free; "
                                    "the pull needs "), errors[0]
        assert "MiB layers" in errors[0] and "MiB image file" in errors[0] and "on transit" not in errors[0]
        assert "plan for v0.3.5" not in p.stdout, "refused while deciding, before the plan is carried out"
        assert not burst(sandbox, "home/ampel/dryrun/.ampel-tasks/lock").exists()
        assert tool("history", "--json", check=True).stdout == history
        listed = subprocess.run(["nsenter", "-t", pid, "-m", "ls", "-A", f"/{SMALL}"], capture_output=True,
                                text=True).stdout.split()
        assert listed == [], "nothing was written to the small filesystem"
        assert not transit(sandbox, SMALL).exists()
        # the same deploy with room enough goes on as usual
        plan = json.loads(tool("plan", "--version", "v0.3.5", "--json", check=True).stdout)
        assert {s["step"]: s["action"] for s in plan["steps"]}["pull"] == "skip"
    finally:
        subprocess.run(["nsenter", "-t", pid, "-m", "umount", f"/{SMALL}"])
        target.rmdir()
