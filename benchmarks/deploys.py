"""Deploys as operators live them, on the sandbox, repeated from a reset each time:
a full deploy from nothing, a no-op deploy right after it (ratio to the full one),
and a code-only release (time, and bytes moved to the hosts counted on their
network interfaces, not by the tool), with the stack's downtime in it: from the
moment deploy/up's `rm` ends the first instance to the health gate's verdict, the
window in which no alert is processed; and the gate's own part of it, from the last
instance's start to the verdict.

    python3 benchmarks/deploys.py [--repeats 3] [--keep-site 1]
"""
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _common import REPO, arguments, report, spread, timed

STATE = Path("/var/lib/ampel-sandbox")
DAEMONS = STATE / "hosts/burst/home/ampel/.singularity/daemon/burst.zeuthen.desy.de"


def moved() -> int:
    """Bytes sent from this machine towards burst and transit (veth counters)."""
    return sum(int(Path(f"/sys/class/net/ab-{h}/statistics/tx_bytes").read_text()) for h in ("burst", "transit"))


def live() -> set:
    """The pids of the stack's live instances on burst (a killed one is a zombie)."""
    out = set()
    for f in DAEMONS.glob("*") if DAEMONS.is_dir() else ():
        try:
            pid = dict(line.split("=", 1) for line in f.read_text().split())["DAEMON_PID"]
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.add(pid)
        except (OSError, KeyError, ValueError, IndexError):
            pass
    return out


def upstream(work: Path, *git_args, check=True):
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {STATE}/ssh_config")
    return subprocess.run(["git", "-C", str(work), "-c", "user.name=b", "-c", "user.email=b@b", *git_args],
                          env=env, check=check, capture_output=True, text=True)


def code_change(release: str, work: Path) -> str:
    """A developer's commit upstream that changes a line the alert processors print."""
    upstream(work.parent, "clone", "-q", "github:AmpelProject/Ampel-core.git", str(work))
    services = work / "ampel/core/services.py"
    services.write_text(services.read_text().replace('RELEASE = "0.3.5"', f'RELEASE = "{release}"'))
    upstream(work, "commit", "-qam", "code only")
    upstream(work, "push", "-q", "origin", "HEAD")
    return upstream(work, "rev-parse", "HEAD").stdout.strip()


def take_back(work: Path, commit: str) -> None:
    """Upstream as it was (the net change is none), for whatever runs next."""
    upstream(work, "pull", "-q", "--rebase", "origin", "master")
    upstream(work, "revert", "--no-edit", commit)
    upstream(work, "push", "-q", "origin", "HEAD")


def deploy_watching_downtime(version: str) -> tuple:
    """(seconds, downtime seconds, the gate's own seconds, its output): the instances
    polled every 0.1 s (the first one gone: `rm`; the last new one seen: the last
    start); the gate's `healthy after` line stamped as it is printed."""
    before, stamps, done = live(), {}, threading.Event()

    def watch():
        seen = set(before)
        while not done.is_set():
            now = live()
            if "rm" not in stamps and before and not before <= now:
                stamps["rm"] = time.time()
            if now - seen:
                stamps["last_start"] = time.time()
                seen |= now
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.time()
    p = subprocess.Popen(["invoke", "-f", "config/sandbox.yaml", "deploy", "--version", version, "--yes"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        if "healthy after" in line:
            stamps["healthy"] = time.time()
    done.set()
    if p.wait() != 0 or "rm" not in stamps or "healthy" not in stamps or "last_start" not in stamps:
        raise SystemExit("".join(out[-40:]) + "\ndeploy failed or no downtime window was seen")
    return (time.time() - t0, stamps["healthy"] - stamps["rm"], stamps["healthy"] - stamps["last_start"],
            "".join(out))


def one(i: int, keep_site: bool) -> dict:
    if not keep_site:
        timed([str(REPO / "scripts/sandbox"), "reset"])
    b0 = moved()
    full, _ = timed(["invoke", "-f", "config/sandbox.yaml", "deploy", "--version", "v0.3.5", "--yes", "--new-archive"])
    b1 = moved()
    noop, p = timed(["invoke", "-f", "config/sandbox.yaml", "deploy", "--version", "v0.3.5", "--yes"])
    assert "changed" not in p.stdout.split("step ", 1)[-1], p.stdout[-800:]
    work = Path(tempfile.mkdtemp(prefix="bench-upstream-")) / "core"
    commit = code_change(f"0.3.6.{i}", work)
    b2 = moved()
    try:
        code, downtime, gate, out = deploy_watching_downtime(f"v0.3.6-b{i}")
    finally:
        take_back(work, commit)
    b3 = moved()
    assert "is reused as it is" in out, out[-800:]
    return {"full_s": full, "full_mib": (b1 - b0) / 2**20, "noop_s": noop, "code_s": code,
            "code_mib": (b3 - b2) / 2**20, "downtime_s": downtime, "gate_s": gate}


def main():
    args = arguments(__doc__, repeats=3, keep_site=(int, 0, "no reset: the 'full' deploy is then whatever the "
                                                                    "site needs (CI's smoke run: the code runs, the "
                                                                    "figures mean nothing)"))
    runs = [one(i, args.keep_site) for i in range(1, args.repeats + 1)]
    report("deploys", {
        "full_deploy_s": spread(r["full_s"] for r in runs),
        "full_deploy_mib_to_hosts": spread(r["full_mib"] for r in runs),
        "noop_deploy_s": spread(r["noop_s"] for r in runs),
        "noop_to_full_ratio": spread(r["noop_s"] / r["full_s"] for r in runs),
        "code_only_deploy_s": spread(r["code_s"] for r in runs),
        "code_only_mib_to_hosts": spread(r["code_mib"] for r in runs),
        "code_only_to_full_ratio": spread(r["code_s"] / r["full_s"] for r in runs),
        "downtime_s": spread(r["downtime_s"] for r in runs),
        "gate_own_s": spread(r["gate_s"] for r in runs),
    })


if __name__ == "__main__":
    main()
