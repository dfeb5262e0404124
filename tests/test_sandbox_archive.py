"""transit's own stack as the tool deploys it: the archive is a real PostgreSQL in the
stand-in Singularity (running as ampel), made by its entrypoint with v0.3.5's schema
and users on an empty ARCHIVE_PATH and nothing on an existing one; graphite's
stand-in takes metric lines; burst's alert processors archive every alert there.
transit's stack restarts only for a change of its own, and never loses the archive."""
import json
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import SECRETS_DIR, TRANSIT_ADDRESS, archive, archive_query, archived, on, postmaster, tool

pytestmark = pytest.mark.sandbox
TRANSIT = Path("/var/lib/ampel-sandbox/hosts/transit")
BURST = Path("/var/lib/ampel-sandbox/hosts/burst")
CORE = "home/ampel/Ampel-v0.3/ampel-core"
TRANSIT_YML = TRANSIT / CORE / "deploy/production/transit.yml"
TRANSIT_ENV = TRANSIT / CORE / "deploy/production/dryrun.env"


def writers(user="ampel-client") -> list:
    """The archive's client connections of `user`: [(client address, backend start)]."""
    # (as the superuser: other users' sessions show their address and start only to it)
    rows = archive_query(f"SELECT client_addr, backend_start FROM pg_stat_activity WHERE usename = '{user}'",
                         "ampel", "archive-root-password")
    assert not rows.startswith("ERROR"), rows
    return [tuple(r.split("|")) for r in rows.splitlines()]


def settled(sandbox, wait=7) -> dict:
    """What each writer archived, after long enough for every one to write again (every 5 s)."""
    time.sleep(wait)
    return archived(sandbox)


def test_the_archive_is_a_real_postgresql_with_the_schema_and_users_of_v035(deployed):
    write = (SECRETS_DIR / "archive-write-password.txt").read_text().strip()
    # the schema of v0.3.5: 1.8, then each migration recorded its version
    assert archive_query("SELECT alert_version FROM versions ORDER BY version_id") == "1.8\n1.9\n2.0\n3.0"
    assert archive_query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'candidate'") == "27"
    # the write user writes; the read user reads and may not write; a wrong password gets nothing
    candid = uuid.uuid4().int % 10**12
    assert archive_query(f"INSERT INTO alert (objectId, candid, programid, schemavsn) VALUES ('sandbox-test', "
                         f"{candid}, 2, '3.0') RETURNING candid", "ampel-client", "archive-write-password") == str(candid)
    assert archive_query(f"SELECT objectId FROM alert WHERE candid = {candid}") == "sandbox-test"
    assert "permission denied for table alert" in archive_query("DELETE FROM alert")
    p = subprocess.run(["psql", "-X", "-At", "-c", "SELECT 1",
                        f"postgresql://ampel-client:wrong{write}@{TRANSIT_ADDRESS}:5432/ztfarchive"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "password authentication failed" in p.stderr
    # the server runs as ampel (as under Singularity), its data owned by ampel on transit
    owner = subprocess.run(["stat", "-c", "%U %a", str(archive(deployed))], capture_output=True, text=True)
    assert owner.stdout.split() == ["ampel", "700"]
    with socket.create_connection((TRANSIT_ADDRESS, 2003), timeout=5) as s:
        s.sendall(b"ampel.sandbox.test 1 1700000000\n")
    # burst's stats reads the archive as ampel-readonly; its writers are connected as ampel-client
    logs = tool("logs", "stats", "--no-follow", "--grep", "the archive holds", check=True).stdout
    assert re.search(r"StatsPublisher \S+ the archive holds \d+ alerts", logs), logs
    assert len(writers()) == 16 and len(writers("ampel-readonly")) >= 1
    # transit's services' logs, followed on transit
    pg = tool("logs", "archive", "--no-follow", "--grep", "ready to accept connections", check=True).stdout
    assert re.search(r"^\(archive *:0 (stdout|stderr)\) .*database system is ready to accept connections", pg, re.M), pg


def test_transit_restarts_only_for_a_change_of_its_own_and_no_alert_is_missing(deployed):
    sandbox = deployed
    original = TRANSIT_YML.read_text()
    # the writers running now: those that archive over one beat (earlier deployments' writers have rows too)
    first = settled(sandbox, 0)
    before, server = settled(sandbox), postmaster(sandbox)
    running = {w for w in before if before[w] > first.get(w, 0)}
    assert len(running) == 16, (first, before)
    try:
        # a change to transit.yml (graphite gets a setting): transit's stack restarts, burst's does not
        TRANSIT_YML.write_text(original.replace("GRAPHITE_PORT: $GRAPHITE_PORT",
                                                "GRAPHITE_PORT: $GRAPHITE_PORT\n      GRAPHITE_NOTE: sandbox"))
        plan = json.loads(tool("plan", "--version", "v0.3.5", "--json", check=True).stdout)["steps"]
        up = {h["host"]: h for h in next(s for s in plan if s["step"] == "up")["hosts"]}
        assert up["transit"]["action"] == "run" and "transit.yml" in up["transit"]["reason"], up
        assert "restarts archive, graphite" in up["transit"]["reason"] and up["burst"]["action"] == "skip", up
        p = tool("deploy", "--version", "v0.3.5", "--yes", check=True, timeout=600)
        assert "==> up transit:" in p.stdout and "==> up burst: skip" in p.stdout, p.stdout
        assert postmaster(sandbox) != server, "postgres was not restarted"
        # the same writers (burst kept running) reconnected and went on; none lost an alert
        after = settled(sandbox)
        assert set(before) <= set(after) and all(after[w] > before[w] for w in running), (before, after)
        assert len(writers()) == 16
        assert "opening it again" in tool("logs", "alertprocessor", "--no-follow", "--grep", "connection lost",
                                          check=True).stdout
        # nothing left to do on either host; transit is not restarted again
        again = tool("deploy", "--version", "v0.3.5", "--yes", check=True, timeout=600)
        assert "is up to date; nothing to do" in again.stdout, again.stdout
    finally:
        TRANSIT_YML.write_text(original)
        tool("deploy", "--version", "v0.3.5", "--yes", timeout=600)


def test_a_redeploy_of_burst_keeps_postgres_and_reconnects_only_burst_writers(deployed):
    sandbox = deployed
    server, t0 = postmaster(sandbox), archive_query("SELECT now()")
    before = settled(sandbox, 0)
    p = tool("deploy", "--version", "v0.3.5", "--yes", "--force", "up", check=True, timeout=600)
    assert "==> up transit: skip" in p.stdout and "==> up burst:" in p.stdout, p.stdout
    assert postmaster(sandbox) == server, "transit's postgres was restarted for a change on burst"
    conns = writers()
    assert len(conns) == 16 and all(start > t0 for _, start in conns), (t0, conns)
    after = settled(sandbox)
    assert not set(before) & set(after) or all(after[w] >= before[w] for w in set(before) & set(after))


def test_a_wrong_archive_password_on_burst_fails_the_gate_naming_the_secret(deployed):
    local = SECRETS_DIR / "archive-write-password.txt"
    original = local.read_bytes()
    try:
        local.write_text("not-what-the-archive-has\n")
        p = tool("deploy", "--version", "v0.3.5", "--yes", timeout=600)
        assert p.returncode == 1 and p.stderr.count("error:") == 1, p.stdout[-3000:] + p.stderr
        line = p.stderr.strip().splitlines()[-1]
        assert "secret archive-write-password" in line and "ampel-client" in line, line
        assert "not-what-the-archive-has" not in p.stdout + p.stderr
    finally:
        local.write_bytes(original)
        assert tool("deploy", "--version", "v0.3.5", "--yes", timeout=600).returncode == 0
    assert len(writers()) == 16


def tree(root: Path, skip) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if any(rel == s or rel.startswith(s + "/") for s in skip) or p.is_symlink() or not p.is_file():
            continue
        st = p.stat()
        out[rel] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


SKIP = ("proc", "dev", "usr", "etc", "tmp", "var", "run", "sshd", "sshd.log", "data/ampel/archive",
        "data/ampel/mongo", "home/ampel/.singularity")


def test_a_dry_deploy_changes_nothing_on_either_host(deployed):
    sandbox = deployed
    original = TRANSIT_YML.read_text()
    try:
        TRANSIT_YML.write_text(original + "# a comment: still a change to what the stack runs from\n")
        trees, server = {h: tree(r, SKIP) for h, r in (("burst", BURST), ("transit", TRANSIT))}, postmaster(sandbox)
        p = tool("deploy", "--version", "v0.3.5", "--dry", "--force", "up", "--force", "secrets", check=True, timeout=600)
        assert "==> up transit:" in p.stdout and "==> up burst:" in p.stdout and "dry run of v0.3.5" in p.stdout
        assert {h: tree(r, SKIP) for h, r in (("burst", BURST), ("transit", TRANSIT))} == trees
        assert postmaster(sandbox) == server
    finally:
        TRANSIT_YML.write_text(original)


def test_an_archive_path_that_is_new_or_empty_is_refused_with_the_consequence(deployed):
    original = TRANSIT_ENV.read_text()
    other = TRANSIT / "data/ampel/archive/elsewhere"
    try:
        TRANSIT_ENV.write_text(original.replace("ARCHIVE_PATH=/data/ampel/archive/dryrun",
                                                "ARCHIVE_PATH=/data/ampel/archive/elsewhere"))
        for args in (["plan"], ["deploy", "--dry"]):  # (deploy acts on the plan's decisions: the same refusal)
            p = tool(*args, "--version", "v0.3.5", timeout=300)
            assert p.returncode == 1 and p.stderr.count("error:") == 1, p.stdout + p.stderr
            assert "ARCHIVE_PATH /data/ampel/archive/elsewhere on transit does not exist: the archive would start " \
                   "empty there, without any of the alerts archived so far" in p.stderr, p.stderr
            assert "--new-archive" in p.stderr and not other.exists()
        other.mkdir()
        p = tool("plan", "--version", "v0.3.5", timeout=300)
        assert p.returncode == 1 and "/data/ampel/archive/elsewhere on transit is empty" in p.stderr
    finally:
        TRANSIT_ENV.write_text(original)
        if other.exists():
            other.rmdir()
    assert tool("plan", "--version", "v0.3.5", timeout=300).returncode == 0


def test_status_doctor_history_and_prune_show_the_archive_and_a_stopped_one_is_started(deployed):
    st = json.loads(tool("status", "--json", check=True).stdout)["archive"]
    assert st["answers"] and st["version"] == "3.0" and st["path"] == "/data/ampel/archive/dryrun", st
    assert st["bytes"] > 1 << 20 and st["free"] > 1 << 20
    assert re.search(r"^archive on transit \(/data/ampel/archive/dryrun\): answers, schema 3\.0, [\d.]+ MiB, "
                     r"[\d.]+ (MiB|GiB) free$", tool("status", check=True).stdout, re.M)
    assert re.search(r"^ok  +transit: archive: answers, schema 3\.0, \d+ MiB, \d+ MiB free under "
                     r"/data/ampel/archive/dryrun$", tool("doctor").stdout, re.M)
    ok = [line for line in tool("history", check=True).stdout.splitlines() if " ok " in line]
    assert ok and "archive schema 3.0" in ok[0], ok[:3]
    listing = tool("prune", check=True).stdout
    assert re.search(r"^database transit:/data/ampel/archive/dryrun: [\d.]+ MiB \(databases are never pruned\)$",
                     listing, re.M), listing
    # transit's stack stopped (a reboot, say): status says so, the plan starts it again, nothing else
    server = postmaster(deployed)
    assert on("transit", "singularity-stack rm transit").returncode == 0
    time.sleep(2)
    st = json.loads(tool("status", "--json", check=True).stdout)["archive"]
    assert not st["answers"] and "does not answer" in st["problem"], st
    assert re.search(r"^FAIL  transit: archive: ", tool("doctor").stdout, re.M)
    plan = json.loads(tool("plan", "--version", "v0.3.5", "--json", check=True).stdout)["steps"]
    up = {h["host"]: h for h in next(s for s in plan if s["step"] == "up")["hosts"]}
    assert up["transit"]["action"] == "run" and "not running healthy" in up["transit"]["reason"], up
    assert up["burst"]["action"] == "skip"
    p = tool("deploy", "--version", "v0.3.5", "--yes", check=True, timeout=600)
    # (the migrations are read in the running archive: after transit's stack has started, before burst's)
    assert "==> schema transit: the archive does not run now" in p.stdout, p.stdout[-3000:]
    assert p.stdout.index("==> up transit") < p.stdout.index("==> schema transit: skip") < p.stdout.index("==> up burst")
    assert postmaster(deployed) != server and archive_query("SELECT count(*) FROM versions") == "4"
    assert len(writers()) == 16
