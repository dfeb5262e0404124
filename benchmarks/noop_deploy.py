"""A deploy where everything is up to date vs a full one, in one run.

Resets the sandbox, deploys v0.3.5 from nothing (full), then again (no-op).

    python3 benchmarks/noop_deploy.py
"""
from _common import REPO, report, timed, tool


def main():
    timed([str(REPO / "scripts/sandbox"), "reset"])
    full, _ = tool("deploy", "--version", "v0.3.5", "--yes")
    noop, p = tool("deploy", "--version", "v0.3.5", "--yes")
    assert "up to date" in p.stdout, p.stdout[-500:]
    report("noop_deploy", {"full_s": round(full, 1), "noop_s": round(noop, 2), "ratio": round(noop / full, 3)})


if __name__ == "__main__":
    main()
