"""The archive's schema upgrades on transit, in the order the site lives them.

v0.3.5 runs; alerts of a newer avro schema arrive and the writers crash-loop; a
release whose only change is a migration to that schema (as v0.2.1 was) migrates
the running archive and the writers start again; a release whose migration
rewrites a column's type, with writer code to match (as v0.3.8), asks, backs up,
migrates, then deploys burst; a broken migration changes nothing and says why; the
backup taken before the second migration restores to the schema and rows it held;
the plan for the running version is then all skip, for both operators.

What is checked is read from the archive itself (psql and pg_dump over TCP, as a
client), from transit's files and from burst's processes, not from the tool's
output alone. Upstream changes are reverted at the end.
"""
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SECRETS_DIR, TRANSIT_ADDRESS, archive_query, archived, postmaster, tool
from sandboxsite import CHECKOUTS, STEPS, Upstream, burst, checkout_as_upstream, second_operator, transit

pytestmark = pytest.mark.sandbox
INITDB = "deploy/production/initdb/archive"
SCHEMA_31 = ("-- alerts of schema 3.1 (additive, as v0.2.1's was)\n"
             "ALTER TABLE candidate ADD COLUMN tooflag SMALLINT;\n"
             "CREATE TABLE tns_name (tns_id SERIAL PRIMARY KEY, candid BIGINT NOT NULL, name TEXT NOT NULL);\n"
             "INSERT INTO versions (alert_version) VALUES ('3.1');\n")
FIDELITY = ("-- as v0.3.8's: neither in a transaction nor recorded in versions\n"
            "ALTER TABLE alert ALTER COLUMN ingestion_time TYPE TIMESTAMPTZ USING to_timestamp(ingestion_time);\n")
BROKEN = ("ALTER TABLE candidate ADD COLUMN isdiffpos TEXT;\n"
          "SELECT pg_sleep(6);  -- (long enough for a Ctrl-C to land in it)\n"
          "ALTER TABLE candidate ADD COLUMN nearest BIGINT REFERENCES nowhere;\n")
# the writer code matching FIDELITY: ingestion_time as a timestamp
WRITES_TIMESTAMPS = ("ampel/core/services.py", lambda t: t.replace(
    "dict(a, t=int(time.time()))", "dict(a, t=__import__('datetime').datetime.now(__import__('datetime').timezone.utc))"),
    "archive ingestion_time as a timestamp")
TABLES = ("versions", "alert", "candidate", "prv_candidate", "upper_limit", "cutout")


def as_superuser(argv, database="ztfarchive"):
    password = (SECRETS_DIR / "archive-root-password.txt").read_text().strip()
    url = f"postgresql://ampel:{password}@{TRANSIT_ADDRESS}:5432/{database}"
    return subprocess.run(argv + [url], capture_output=True, text=True, timeout=120, check=True).stdout


def schema_of(database="ztfarchive") -> str:
    """The database's schema as pg_dump writes it (comments, settings and psql's own lines,
    such as \\restrict with its random key, left out)."""
    text = as_superuser(["pg_dump", "--schema-only", "--no-owner", "-d"], database)
    return "\n".join(l for l in text.splitlines() if l.strip() and not l.startswith(("--", "SET ", "SELECT pg_catalog", "\\")))


def counts(database="ztfarchive") -> dict:
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in TABLES)
    rows = as_superuser(["psql", "-X", "-At", "-c", sql, "-d"], database)
    return {t: int(n) for t, n in (line.split("|") for line in rows.splitlines())}


def versions() -> list:
    return archive_query("SELECT alert_version FROM versions ORDER BY version_id").splitlines()


def writing(sandbox, replicas=16, within=12) -> set:
    """The writers that archive something from now on (no gap in any writer's alerts):
    once all `replicas` have, or after `within` s (a writer beats every 5 s)."""
    before, deadline = archived(sandbox), time.time() + within
    while True:
        time.sleep(1)
        after = archived(sandbox)
        grown = {w for w, n in after.items() if n > before.get(w, 0)}
        if len(grown) >= replicas or time.time() > deadline:
            return grown


def one_error_line(text: str) -> bool:
    """Exactly one line of the output is the tool's `error:` line."""
    return len([line for line in text.splitlines() if line.startswith("error:")]) == 1


def deploy(version, *args, **as_operator):
    return tool("deploy", "--version", version, *args, timeout=1200, **as_operator)


def plan(version, **as_operator) -> dict:
    p = tool("plan", "--version", version, "--json", check=True, **as_operator)
    return {s["step"]: s for s in json.loads(p.stdout)["steps"]}


def backups(sandbox) -> dict:
    """{backup: its record} on transit."""
    folder = transit(sandbox, "data/ampel/archive/backups")
    return {f.stem: json.loads(f.read_text()) for f in folder.glob("*.json")} if folder.is_dir() else {}


@pytest.mark.changes_recipe
def test_schema_upgrades_in_the_order_the_site_lives_them(deployed, tmp_path):
    sandbox = deployed
    stamp = f"s{int(time.time()) % 100000}"
    v = {name: f"{name}-{stamp}" for name in ("v0.3.4", "v0.3.6", "v0.3.8", "v0.3.9")}
    core = Upstream(tmp_path / "core", "Ampel-core")
    older = core.head()
    stream = burst(sandbox, "home/ampel/Ampel-v0.3/STREAM")
    try:
        # -- alerts of schema 3.1 arrive: every writer refuses them and ends; the nannies restart them
        # (an archive made before the tool: no ledger; the tool seeds it from `versions`)
        as_superuser(["psql", "-X", "-q", "-c", "DROP TABLE IF EXISTS ampel_migrations", "-d"])
        stream.write_text("3.1\n")
        deadline = time.time() + 20
        while True:  # (each writer ends at its next beat, 5 s at most; its nanny waits 10 s)
            time.sleep(2)
            now = json.loads(tool("status", "--json", check=True).stdout)
            if now["healthy"] is False or time.time() > deadline:
                break
        assert now["healthy"] is False and any("alertprocessor" in p for p in now["problems"]), now["problems"]

        # -- the schema-only release: the running archive migrates, the writers start again
        core.change(f"{INITDB}/05_schema_3.1.sql", lambda _: SCHEMA_31, "archive schema 3.1")
        checkout_as_upstream(*CHECKOUTS[0])  # the operator's `git pull`
        server = postmaster(sandbox)
        planned = plan(v["v0.3.6"])["schema"]
        assert planned["action"] == "run" and "05_schema_3.1.sql -> 3.1" in planned["reason"], planned
        # the migration alone, as the site's procedure does it: the archive is not stopped, its clients restart
        p = tool("schema", "--version", v["v0.3.6"], timeout=900)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        assert "==> restart burst: alertprocessor, stats" in p.stdout and "burst healthy after" in p.stdout
        assert postmaster(sandbox) == server and versions()[-1] == "3.1", "the archive was stopped"
        assert len(writing(sandbox)) == 16, "the writers do not archive after the migration"
        # the release deployed: nothing left to migrate; transit's stack keeps running
        p = deploy(v["v0.3.6"], "--yes")
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        assert "==> schema transit: skip (the archive is at schema 3.1" in p.stdout
        assert "==> up transit: skip" in p.stdout and postmaster(sandbox) == server, "the archive was stopped"
        assert archive_query("SELECT name FROM ampel_migrations ORDER BY name", user="ampel-readonly").startswith(
            "ERROR"), "the ledger is the tool's: not the read user's"
        ledger = as_superuser(["psql", "-X", "-At", "-c", "SELECT name, applied_by FROM ampel_migrations ORDER BY name",
                               "-d"]).split()
        assert ledger[0] == "00_archive_schema_1.8.sql|seeded" and "05_schema_3.1.sql|ampelop" in ledger, ledger
        # the new table's grants: the read user reads it, the write user writes it (and its sequence)
        assert archive_query("SELECT count(*) FROM tns_name") == "0"
        assert archive_query("INSERT INTO tns_name (candid, name) VALUES (1, 'AT2018a') RETURNING tns_id",
                             user="ampel-client", secret="archive-write-password") == "1"
        first = [b for b in backups(sandbox).values() if b["before"] == "05_schema_3.1.sql"]
        assert len(first) == 1 and first[0]["tables"] == [] and first[0]["versions"][-1] == "3.0", backups(sandbox)
        live = writing(sandbox)
        assert len(live) == 16, f"{len(live)} writers archive after the migration"
        assert archive_query("SELECT count(*) FROM alert WHERE schemavsn = '3.1'") != "0"
        assert json.loads(tool("status", "--json", check=True).stdout)["healthy"] is True

        # -- the type-changing release with writer code to match: the plan shows the cost; it asks
        core.change(f"{INITDB}/06_schema_fidelity.sql", lambda _: FIDELITY, "schema fidelity")
        core.change(*WRITES_TIMESTAMPS)
        checkout_as_upstream(*CHECKOUTS[0])
        op2 = second_operator(sandbox)
        checkout_as_upstream(*CHECKOUTS[1])
        mine, theirs = plan(v["v0.3.8"])["schema"], plan(v["v0.3.8"], **op2)["schema"]
        same = [re.sub(r"[\d.]+ MiB", "(size)", x["reason"]) for x in (mine, theirs)]  # (the writers go on)
        assert mine["action"] == theirs["action"] == "run" and same[0] == same[1], same
        assert re.search(r"06_schema_fidelity\.sql \(records no version\) \[changes a column's type .*: alert, "
                         r"[\d.]+ MiB\]", mine["reason"]), mine["reason"]
        before_schema, server = schema_of(), postmaster(sandbox)
        refused = deploy(v["v0.3.8"])
        assert refused.returncode == 1 and one_error_line(refused.stderr), refused.stderr
        assert "needs --yes" in refused.stderr and "nothing was changed" in refused.stderr
        assert schema_of() == before_schema and "==> src" not in refused.stdout
        dry = deploy(v["v0.3.8"], "--yes", "--dry")
        assert dry.returncode == 0 and re.search(r"^schema +transit +would run", dry.stdout, re.M), dry.stdout[-3000:]
        assert schema_of() == before_schema and len(backups(sandbox)) == 1, "--dry backed up or migrated"
        before_rows = counts()
        p = deploy(v["v0.3.8"], "--yes")
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        after_rows = counts()
        assert postmaster(sandbox) == server
        assert archive_query("SELECT data_type FROM information_schema.columns WHERE table_name = 'alert' "
                             "AND column_name = 'ingestion_time'") == "timestamp with time zone"
        second = [(name, b) for name, b in backups(sandbox).items() if b["before"] == "06_schema_fidelity.sql"]
        assert len(second) == 1 and second[0][1]["versions"][-1] == "3.1"
        assert p.stdout.index("==> schema transit") < p.stdout.index("==> up burst")
        manifest = json.loads(tool("history", "--json", check=True).stdout)[0]
        assert manifest["version"] == v["v0.3.8"] and manifest["archive_backups"] == [second[0][1]]
        assert len(writing(sandbox)) == 16, "the new writers archive timestamps"

        # -- a broken migration: the archive as it was, the writers untouched, one line with postgres' words
        core.change(f"{INITDB}/07_broken.sql", lambda _: BROKEN, "a broken migration")
        checkout_as_upstream(*CHECKOUTS[0])
        good, rows_at, writers_at = schema_of(), counts(), writing(sandbox)
        p = deploy(v["v0.3.9"], "--yes")
        assert p.returncode == 1 and one_error_line(p.stderr), p.stderr
        assert re.search(r'error: 07_broken\.sql line 3: ERROR: relation "nowhere" does not exist: rolled back',
                         p.stderr), p.stderr
        assert schema_of() == good and versions()[-1] == "3.1"
        assert writing(sandbox) == writers_at, "the writers were restarted for a migration that failed"
        assert counts()["versions"] == rows_at["versions"]
        backup_faults(version=v["v0.3.9"])
        interrupted_migration(tmp_path, v["v0.3.9"], "07_broken.sql")
        assert schema_of() == good and sessions() == "0"

        # -- the backup taken before the second migration restores to what the archive held then
        name, record = second[0]
        p = tool("archive-restore", "--from", record["path"], "--into", f"restored_{stamp}", timeout=600)
        assert p.returncode == 0 and "its schema equals the backup's" in p.stdout, p.stdout[-2000:] + p.stderr
        assert schema_of(f"restored_{stamp}") == before_schema
        restored = counts(f"restored_{stamp}")
        for t in TABLES:  # (the writers went on during the dump: the dump is one snapshot between the two counts)
            assert before_rows[t] <= restored[t] <= after_rows[t], (t, before_rows, restored, after_rows)
        # one snapshot: each writer's alerts in the restored database are numbered 1..n with no gap
        per_writer = as_superuser(["psql", "-X", "-At", "-c", "SELECT count(*) = max(candid % 10000000) FROM alert "
                                   "WHERE objectId LIKE 'ZTF18%' GROUP BY candid / 10000000", "-d"], f"restored_{stamp}")
        assert set(per_writer.split()) == {"t"}, per_writer

        # -- an older release's code (its tag before the migration to 3.1) on the newer archive: refused by the plan
        core.tag(older, v["v0.3.4"])
        p = tool("plan", "--version", v["v0.3.4"], timeout=300)
        assert p.returncode == 1 and one_error_line(p.stderr), p.stdout[-3000:] + p.stderr
        assert "is at schema 3.1, which no migration in" in p.stderr and "a downgrade is refused" in p.stderr

        # -- back on the running version: all skip, for both operators
        core.revert()
        checkout_as_upstream(*CHECKOUTS[0])
        checkout_as_upstream(*CHECKOUTS[1])
        p = deploy(v["v0.3.8"], "--yes")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
        for who in ({}, op2):
            got = {step: d["action"] for step, d in plan(v["v0.3.8"], **who).items()}
            assert got == dict.fromkeys(STEPS + ("schema",), "skip") or got == {**dict.fromkeys(STEPS, "skip"),
                                                                                  "schema": "skip"}, got
    finally:
        stream.unlink(missing_ok=True)
        core.revert()
        for clone, cfg in CHECKOUTS:
            checkout_as_upstream(clone, cfg)
        undo_migrations(sandbox, f"restored_{stamp}")


# the sandbox's archive taken back to v0.3.5's schema (a downgrade the tool refuses, rightly):
# other tests deploy v0.3.5 on this site
DOWN = """
DO $$ BEGIN
  IF (SELECT data_type FROM information_schema.columns WHERE table_name = 'alert' AND column_name = 'ingestion_time')
     <> 'bigint' THEN
    ALTER TABLE alert ALTER COLUMN ingestion_time TYPE BIGINT USING extract(epoch FROM ingestion_time)::bigint;
  END IF;
END $$;
ALTER TABLE candidate DROP COLUMN IF EXISTS tooflag;
ALTER TABLE candidate DROP COLUMN IF EXISTS isdiffpos;
DELETE FROM versions WHERE alert_version = '3.1';
DROP TABLE IF EXISTS ampel_migrations;
DROP TABLE IF EXISTS tns_name;
"""


def undo_migrations(sandbox, restored: str):
    as_superuser(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", DOWN, "-d"])
    as_superuser(["psql", "-X", "-q", "-c", f"DROP DATABASE IF EXISTS {restored}", "-d"])
    subprocess.run(["rm", "-rf", str(transit(sandbox, "data/ampel/archive/backups"))], check=True)


def on_transit_as_root(command: str) -> str:
    """A command in transit's own mount namespace (its sshd's), as root: the sandbox's hand."""
    sshd = next(p for p in subprocess.run(["ip", "netns", "pids", "ampel-transit"], capture_output=True, text=True,
                                          check=True).stdout.split()
                if "sshd" in Path(f"/proc/{p}/cmdline").read_text() and "[listener]" in Path(f"/proc/{p}/cmdline").read_text())
    return subprocess.run(["nsenter", "-t", sshd, "-m", "--", "sh", "-c", command], capture_output=True, text=True,
                          check=True).stdout


def sessions() -> str:
    return as_superuser(["psql", "-X", "-At", "-c", "SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                                    "LIKE 'ampel-tasks-%'", "-d"]).strip()


def backup_faults(version: str):
    """No room for the backup: refused with the numbers before any dump; a disk that
    fills during the dump (no inode left): it stops there, its half dump removed. The
    archive's schema is unchanged either way."""
    before = schema_of()
    on_transit_as_root("mkdir -p /data/ampel/small /data/ampel/full && "
                       "mount -t tmpfs -o size=4m,uid=1001,gid=1001 tmpfs /data/ampel/small && "
                       "mount -t tmpfs -o size=256m,nr_inodes=8,uid=1001,gid=1001 tmpfs /data/ampel/full")
    try:
        p = tool("schema", "--version", version, "--yes", env={"INVOKE_AMPEL_ARCHIVE_BACKUP_DIR": "/data/ampel/small/b"},
                 timeout=900)
        assert p.returncode == 1 and one_error_line(p.stderr), p.stdout[-2000:] + p.stderr
        assert re.search(r"error: a backup of up to [\d.]+ MiB does not fit in /data/ampel/small/b on transit, which "
                         r"has 4\.0 MiB free: nothing was backed up or migrated", p.stderr), p.stderr
        assert schema_of() == before
        p = tool("schema", "--version", version, "--yes", env={"INVOKE_AMPEL_ARCHIVE_BACKUP_DIR": "/data/ampel/full/b"},
                 timeout=900)
        assert p.returncode == 1 and one_error_line(p.stderr), p.stdout[-2000:] + p.stderr
        assert "No space left on device" in p.stderr and "nothing was migrated" in p.stderr, p.stderr
        assert on_transit_as_root("ls -A /data/ampel/full/b") == "" and schema_of() == before
    finally:
        on_transit_as_root("umount /data/ampel/small /data/ampel/full; rmdir /data/ampel/small /data/ampel/full; true")


def interrupted_migration(tmp_path, version: str, name: str):
    """Ctrl-C while the migration runs: psql and its session ended, the transaction
    rolled back, and nothing commits later."""
    before, out = schema_of(), tmp_path / "interrupted"
    with open(out, "w") as f:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "invoke"), "-f", "config/sandbox.yaml", "schema",
                                 "--version", version, "--yes"], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    deadline = time.time() + 300
    while "    backup /data/ampel/archive/backups" not in out.read_text() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.5)  # (in the migration's 6 s sleep)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, out.read_text()[-3000:]
    said = out.read_text()
    assert one_error_line(said) and f"error: interrupted during {name}: its session was ended and its transaction " \
                                    "rolled back" in said, said[-3000:]
    assert schema_of() == before and sessions() == "0"
    time.sleep(5)
    assert schema_of() == before, "the migration committed after the tool was interrupted"
