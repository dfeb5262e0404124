"""Helpers for the benchmarks: they run the real tool on the sandbox."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def timed(argv, **kw):
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return elapsed, p


def tool(*args):
    return timed(["invoke", "-f", "config/sandbox.yaml", *args])


def report(name, data):
    RESULTS.mkdir(exist_ok=True)
    data = dict(data, when=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=f"{os.cpu_count()} cores")
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
