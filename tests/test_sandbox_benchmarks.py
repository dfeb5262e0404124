"""Each benchmark runs once (CI's smoke run): it must work; its figures are not judged
here (docs/benchmarks.md has the repeated ones)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize("bench, args, keys", [
    ("cli_startup.py", [], ["ratio_list_to_version"]),
    ("tunnel.py", ["--mib", "64"], ["ratio_ours_to_plain"]),
    ("by_hand.py", [], ["ratio_tool_to_script", "commands_on_hosts", "profile"]),
    # (on the site as it is: a reset and a deploy from nothing are what the first-deploy test does)
    pytest.param("deploys.py", ["--keep-site", "1"], ["noop_to_full_ratio", "code_only_mib_to_hosts", "downtime_s", "gate_own_s"],
                 marks=pytest.mark.moves_site),
])
def test_each_benchmark_runs_once(sandbox, tmp_path, bench, args, keys):
    if bench == "by_hand.py":  # it needs a running version
        assert subprocess.run(["invoke", "-f", "config/sandbox.yaml", "deploy", "--version", "v0.3.5", "--yes", "--new-archive"],
                              cwd=REPO, capture_output=True, timeout=900).returncode == 0
    p = subprocess.run([sys.executable, f"benchmarks/{bench}", "--repeats", "1", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=1200, env=dict(os.environ, AMPEL_BENCH_RESULTS=str(tmp_path)))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    for key in keys:
        assert key in data, data
    assert data["command"].startswith(f"python3 benchmarks/{bench} --repeats 1")
    table = subprocess.run([sys.executable, "benchmarks/table.py"], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, AMPEL_BENCH_RESULTS=str(tmp_path)))
    assert table.returncode == 0 and "| measure |" in table.stdout
