"""Helpers for the benchmarks: they run the real tool on the sandbox."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = Path(os.environ.get("AMPEL_BENCH_RESULTS") or REPO / "benchmarks" / "results")


def timed(argv, **kw):
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return elapsed, p


def tool(*args):
    return timed(["invoke", "-f", "config/sandbox.yaml", *args])


def arguments(doc: str, repeats: int, **extra) -> argparse.Namespace:
    """--repeats N (pairs measured; 1 is CI's smoke run) and the benchmark's own options."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--repeats", type=int, default=repeats, help=f"paired repeats (default {repeats})")
    for name, (kind, default, text) in extra.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    return ap.parse_args()


def interleaved(a, b, repeats: int) -> list:
    """[(a(), b())] * repeats, the order alternating (a b, b a, ...) so that a drift of
    the machine's speed during the run weighs on both alike."""
    pairs = []
    for i in range(repeats):
        if i % 2:
            y = b()
            x = a()
        else:
            x = a()
            y = b()
        pairs.append((x, y))
    return pairs


def spread(values) -> dict:
    """Median, min and max (the machine is noisy: a single run says little)."""
    values = list(values)
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 "unknown CPU")
    mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) // 2**20
    return f"{os.cpu_count()} cores ({model}), {mem} GiB"


def report(name, data, command=""):
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = dict(data, when=time.strftime("%Y-%m-%dT%H:%M:%S"), machine=machine(),
                command=command or "python3 " + " ".join(["benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]]))
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
