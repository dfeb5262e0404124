"""The first deployment on a site that has never seen one: the whole runbook.

(In a module of its own whose name sorts first: on the session's fresh sandbox it
needs no reset of its own; anywhere else it resets the site first.)
"""
import json
import re
from pathlib import Path

import pytest

from conftest import archive, archived, sandbox_cmd, tool
from sandboxsite import burst, eventually, no_secret_in

pytestmark = pytest.mark.sandbox


def test_first_deploy_runs_the_whole_runbook(sandbox):
    if burst(sandbox, "home/ampel/dryrun/.ampel-tasks/current").exists():
        sandbox_cmd("reset")  # a site that has never seen a deployment
    # an empty transit: no archive yet, refused until the operator says it is a new one
    refused = tool("plan", "--version", "v0.3.5", timeout=300)
    assert refused.returncode == 1 and refused.stderr.count("error:") == 1, refused.stdout + refused.stderr
    assert "ARCHIVE_PATH /data/ampel/archive/dryrun on transit is empty" in refused.stderr
    assert "--new-archive" in refused.stderr and not any(archive(sandbox).iterdir())
    p = tool("deploy", "--version", "v0.3.5", "--yes", "--new-archive", timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    out = p.stdout
    order = ["==> image: building ampel:v0.3.5", "==> test:", "==> push:", "==> pull burst:", "==> src transit:",
             "==> src burst:", "==> db: new live database", "==> tag:", "==> secrets transit: copying",
             "==> secrets burst: copying", "==> up transit:", "transit healthy after", "==> up burst:",
             "burst healthy after"]
    for header in order + ["==> pull transit:"]:
        assert header in out, header
    assert [out.index(h) for h in order] == sorted(out.index(h) for h in order), "transit comes up before burst"
    assert re.search(r"archive ztfarchive on transit:5432 answers ampel-readonly: schema 3.0", out)
    # each repo's tests ran in the image before the push
    for repo in ("ampel-core", "ampel-base", "ampel-contrib-hu"):
        assert re.search(rf"^    {repo} [0-9a-f]{{10}}: \d+ passed", out, re.M), out
    # readable off a terminal: one line per step, the plan, a summary table; the rest in the run log
    assert len(out.splitlines()) + len(p.stderr.splitlines()) <= 80, out
    assert "Step 1/" not in out and "Exploding layer" not in out
    table = out[out.rindex("step  "):]
    for step, host, result in [("image", "local", "changed"), ("test", "local", "passed"), ("push", "local", "changed"),
                               ("pull", "burst", "changed"), ("pull", "transit", "changed"), ("src", "burst", "changed"),
                               ("src", "transit", "changed"), ("secrets", "transit", "changed"),
                               ("up", "transit", "changed"), ("up", "burst", "changed")]:
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
    assert "22 replicas running for 1 s or more (alertprocessor x16), no restarts" in out
    no_secret_in(sandbox, p.stdout, p.stderr, log)
    # the alert processors write the live database of this version, in its consumer group
    live = burst(sandbox, "data/ampel/mongo/live/v0.3.5/alerts.jsonl")
    written = eventually(lambda: live.read_text().splitlines() if live.exists() else [], bool)
    assert written and {json.loads(l)["group"] for l in written} == {"ampel-v0.3.5"}
    # every alert processor replica wrote its alerts into the archive on transit, none missing
    writers = eventually(lambda: archived(sandbox), lambda w: len(w) == 16 and all(n >= 7 for n in w.values()))
    assert len(writers) == 16 and all(n >= 7 for n in writers.values()), writers
    # and then there is nothing left to do, on either host
    again = json.loads(tool("plan", "--version", "v0.3.5", "--json", check=True).stdout)["steps"]
    assert {s["step"]: s["action"] for s in again} == dict.fromkeys(
        ["image", "test", "push", "pull", "src", "db", "tag", "secrets", "schema", "up"], "skip"), again
    assert {h["host"] for h in next(s for s in again if s["step"] == "up")["hosts"]} == {"burst", "transit"}
