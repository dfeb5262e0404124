"""A code-only release vs a full first deploy, in one run: time, and bytes moved to
the hosts, counted on the sandbox's network interfaces (independently of the tool).

Resets the sandbox, deploys v0.3.5 from nothing (full), pushes a code-only commit
to Ampel-core upstream, then deploys v0.3.6 (the running image is reused: no
image bytes should move; the new code reaches the hosts through git).

    python3 benchmarks/code_only.py
"""
import os
import subprocess
import tempfile
from pathlib import Path

from _common import REPO, report, timed, tool

STATE = Path("/var/lib/ampel-sandbox")


def moved():
    """Bytes sent from this machine towards burst and transit (veth counters)."""
    return sum(int(Path(f"/sys/class/net/ab-{h}/statistics/tx_bytes").read_text()) for h in ("burst", "transit"))


def code_change():
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {STATE}/ssh_config")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "core"
        subprocess.run(["git", "clone", "-q", "github:AmpelProject/Ampel-core.git", str(work)], env=env, check=True)
        services = work / "ampel/core/services.py"
        services.write_text(services.read_text().replace('RELEASE = "0.3.5"', 'RELEASE = "0.3.6"'))
        git = ["git", "-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b"]
        subprocess.run(git + ["commit", "-qam", "code only"], check=True)
        subprocess.run(git + ["push", "-q", "origin", "HEAD"], env=env, check=True)


def main():
    timed([str(REPO / "scripts/sandbox"), "reset"])
    b0 = moved()
    full, _ = tool("deploy", "--version", "v0.3.5", "--yes")
    b1 = moved()
    code_change()
    b2 = moved()
    code, p = tool("deploy", "--version", "v0.3.6", "--yes")
    b3 = moved()
    assert "is reused as it is" in p.stdout, p.stdout[-800:]
    report("code_only", {
        "full_s": round(full, 1), "full_mib_to_hosts": round((b1 - b0) / 2**20, 1),
        "code_only_s": round(code, 1), "code_only_mib_to_hosts": round((b3 - b2) / 2**20, 2),
        "time_ratio": round(code / full, 3),
    })


if __name__ == "__main__":
    main()
