"""`image` + `push` when nothing changed vs a forced full build and push, in one run.

Needs a sandbox on which v0.3.5 was built (e.g. after `scripts/demo`).

    python3 benchmarks/image_push.py
"""
import subprocess

from _common import report, tool


def main():
    # a full build: forced, with the layer cache of the previous build dropped
    subprocess.run(["/usr/bin/docker", "builder", "prune", "-af"], capture_output=True)
    full, _ = tool("image", "--version", "v0.9.0", "--force")
    push_full, _ = tool("push", "--version", "v0.9.0")
    same, p = tool("image", "--version", "v0.9.0")
    assert "skip" in p.stdout, p.stdout[-500:]
    push_same, p = tool("push", "--version", "v0.9.0")
    assert "already serves" in p.stdout
    report("image_push", {
        "full_build_and_push_s": round(full + push_full, 1),
        "nothing_changed_s": round(same + push_same, 2),
        "ratio": round((same + push_same) / (full + push_full), 3),
    })


if __name__ == "__main__":
    main()
