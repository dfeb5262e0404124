"""The first deployment on a site that has never seen one: the whole runbook.

(In a module of its own whose name sorts first: on the session's fresh sandbox it
needs no reset of its own; anywhere else it resets the site first.)
"""
import json
import re
import time
from pathlib import Path

import pytest

from conftest import sandbox_cmd, tool
from test_sandbox_deploy import burst, no_secret_in

pytestmark = pytest.mark.sandbox


def test_first_deploy_runs_the_whole_runbook(sandbox):
    if burst(sandbox, "home/ampel/dryrun/.ampel-tasks/current").exists():
        sandbox_cmd("reset")  # a site that has never seen a deployment
    p = tool("deploy", "--version", "v0.3.5", "--yes", timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    out = p.stdout
    for header in ["==> image: building ampel:v0.3.5", "==> test:", "==> push:", "==> pull burst:",
                   "==> pull transit:", "==> src:", "==> db: new live database", "==> tag:", "==> secrets: copying",
                   "==> up:"]:
        assert header in out
    assert out.index("==> image") < out.index("==> test") < out.index("==> push") < out.index("==> pull burst") \
        < out.index("==> src") < out.index("==> db") < out.index("==> tag") < out.index("==> secrets") \
        < out.index("==> up")
    # each repo's tests ran in the image before the push
    for repo in ("ampel-core", "ampel-base", "ampel-contrib-hu"):
        assert re.search(rf"^    {repo} [0-9a-f]{{10}}: \d+ passed", out, re.M), out
    # readable off a terminal: one line per step, the plan, a summary table; the rest in the run log
    assert len(out.splitlines()) + len(p.stderr.splitlines()) <= 80, out
    assert "Step 1/" not in out and "Exploding layer" not in out
    table = out[out.rindex("step  "):]
    for step, host, result in [("image", "local", "changed"), ("test", "local", "passed"), ("push", "local", "changed"),
                               ("pull", "burst", "changed"), ("pull", "transit", "changed"), ("src", "burst", "changed"),
                               ("up", "burst", "changed")]:
        assert re.search(rf"^{step}\s+{host}\s+{result}\s+\d+\.\d$", table, re.M), table
    logs = re.findall(r"^run log: (\S+)$", out, re.M)
    assert len(logs) == 2 and logs[0] == logs[1], "the run log's path at the start and at the end"
    log = Path(logs[0]).read_text()
    assert Path(logs[0]).name.startswith("v0.3.5.") and oct(Path(logs[0]).stat().st_mode & 0o777) == "0o600"
    # the runbook's own evidence, in the run log: build steps, mongod stand-ins polled, the stack table, health
    assert "image: Step 1/" in log
    assert "connection refused on burst.zeuthen.desy.de:27018, retry after 1 s" in log
    assert "connected to burst.zeuthen.desy.de:27017" in log
    assert re.search(r"burst\s+alertprocessor\s+16\s+a9404f1e", log)
    assert "healthy after" in out and "22 replicas running for 3 s or more (alertprocessor x16), no restarts" in out
    no_secret_in(sandbox, p.stdout, p.stderr, log)
    # the alert processors write the live database of this version, in its consumer group
    time.sleep(6)
    written = burst(sandbox, "data/ampel/mongo/live/v0.3.5/alerts.jsonl").read_text().splitlines()
    assert written and {json.loads(l)["group"] for l in written} == {"ampel-v0.3.5"}
