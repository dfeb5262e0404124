"""`scripts/sandbox up`, cold (no cached base image) and warm (after `down`).

    python3 benchmarks/sandbox_up.py [--warm-only]
"""
import argparse
import os
import subprocess
import tempfile

from _common import REPO, report, timed

SANDBOX = str(REPO / "scripts/sandbox")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm-only", action="store_true")
    args = ap.parse_args()
    data = {}
    if not args.warm_only:
        timed([SANDBOX, "down"])
        subprocess.run(["/usr/bin/docker", "rmi", "-f", "ampel-sandbox-base:bookworm", "registry:2"], capture_output=True)
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, AMPEL_SANDBOX_CACHE=cache)
            data["cold_s"], _ = timed([SANDBOX, "reset"], env=env)
    timed([SANDBOX, "down"])
    data["warm_s"], _ = timed([SANDBOX, "up"])
    data = {k: round(v, 1) for k, v in data.items()}
    report("sandbox_up", data)


if __name__ == "__main__":
    main()
