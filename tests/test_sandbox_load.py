"""Load: `invoke logs` following 16 replicas that each write 1,000 numbered lines a
second for 30 s loses and repeats no line."""
import os
import re
import signal
import subprocess
import time
from collections import defaultdict

import pytest

from conftest import REPO, tool
from test_sandbox_deploy import burst

pytestmark = pytest.mark.sandbox
SECONDS = 30
LINE = re.compile(r"\(alertprocessor:(\d+) stdout\) load \d+ (\d+)$")


def test_logs_follows_16_replicas_at_1000_lines_a_second_losing_none(deployed, tmp_path):
    core = burst(deployed, "home/ampel/Ampel-v0.3/ampel-core/ampel/core")
    go, load = core / "GO", core / "LOAD"
    go.unlink(missing_ok=True)
    load.write_text(f"{SECONDS}\n")
    out = tmp_path / "logs.out"
    try:
        # the replicas start and wait for GO
        tool("deploy", "--version", "v0.3.5", "--force", "up", "--yes", check=True, timeout=600)
        with open(out, "w") as f:
            p = subprocess.Popen(["invoke", "-f", "config/sandbox.yaml", "logs", "alertprocessor"], cwd=REPO, stdout=f,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.time() + 60
            while out.read_text().count("(alertprocessor:") < 16 and time.time() < deadline:
                time.sleep(0.2)  # following every replica
            go.write_text("")
            t0 = time.time()
            while time.time() - t0 < SECONDS + 30:
                seen = out.read_text().count(" load ")
                if seen >= 16 * SECONDS * 1000:
                    break
                time.sleep(1)
            time.sleep(2)  # (a duplicate would come after the last line)
            os.killpg(p.pid, signal.SIGINT)
            _, err = p.communicate(timeout=30)
    finally:
        go.unlink(missing_ok=True)
        load.unlink(missing_ok=True)
    seqs = defaultdict(list)
    for line in out.read_text().splitlines():
        m = LINE.search(line)
        if m:
            seqs[int(m.group(1))].append(int(m.group(2)))
    assert sorted(seqs) == list(range(16)), (sorted(seqs), err)
    for replica, got in sorted(seqs.items()):
        assert len(got) == len(set(got)), f"replica {replica}: {len(got) - len(set(got))} lines twice"
        missing = sorted(set(range(SECONDS * 1000)) - set(got))
        assert not missing, f"replica {replica}: {len(missing)} lines lost, e.g. {missing[:5]}"
