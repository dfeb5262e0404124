"""The schema step's pure parts: the listing of a tree at a commit (run on a real git
repo), what is sent to psql for one migration, what psql and pg_restore said when
they failed, what a backup takes and whether it fits, which of burst's services are
the archive's clients, and a plan that must be confirmed off a terminal."""
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ampel_tasks.facts import archive, migrations, schemasql, writers
from ampel_tasks.steps import archivebackup
from ampel_tasks.operations.deploy import _confirm
from ampel_tasks.config.errors import DeployError
from ampel_tasks.facts.migrations import ArchiveSchema, Migration
from ampel_tasks.flow.plan import Decision
from ampel_tasks.facts.replicas import Replica
from ampel_tasks.steps.schema import _initdb_repo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))
import fixtures  # noqa: E402

ENV = {"ARCHIVE_PORT": "5432", "ARCHIVE_PATH": "/data/ampel/archive/dryrun", "GRAPHITE_PORT": "2003",
       "SINGULARITY_CACHEDIR": "/data/ampel/singularity",
       "ARCHIVE_INITDB_PATH": "/home/ampel/Ampel-v0.3/ampel-core/deploy/production/initdb/archive"}
A = archive.describe(yaml.safe_load(fixtures.TRANSIT_YML), ENV, "transit", "archive", "transit.yml")


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_the_archive_service_gives_its_superuser_socket_image_and_initdb():
    assert (A.superuser, A.socket_dir, A.image_file) == ("ampel", "/var/tmp", "/data/ampel/singularity/postgres-10.3.simg")
    copies = {"ampel-base": None, "ampel-core": None}
    assert _initdb_repo(A.initdb, copies) == ("ampel-core", "deploy/production/initdb/archive")
    # a new series' deploy: dryrun.env still names the old tree until `db` edits it; the
    # migrations are the same repo's, read in the version's own tree
    assert _initdb_repo("/home/ampel/Ampel-v0.3/ampel-core/deploy/production/initdb/archive", copies) == \
        ("ampel-core", "deploy/production/initdb/archive")
    with pytest.raises(DeployError, match="is in none of the repos under AMPEL_SRC"):
        _initdb_repo("/srv/initdb", copies)


def test_the_migrations_at_a_commit_are_read_from_git_not_from_the_work_tree(tmp_path):
    repo = tmp_path / "ampel-core"
    initdb = repo / "deploy/production/initdb/archive"
    initdb.mkdir(parents=True)
    for name, text in fixtures.ARCHIVE_INITDB.items():
        (initdb / name).write_text(text)
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "v0.3.5")
    first = git(repo, "rev-parse", "HEAD")
    (initdb / "05_schema_3.1.sql").write_text("INSERT INTO versions (alert_version) VALUES ('3.1');\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "3.1")
    (initdb / "06_uncommitted.sql").write_text("SELECT 1;\n")  # (in the work tree only)

    def at(commit):
        cmd = migrations.tree_listing_command(str(repo), commit, "deploy/production/initdb/archive")
        return migrations.parse_tree_listing(subprocess.run(["bash", "-c", cmd], capture_output=True, text=True).stdout)
    assert [m.name for m in at(first)] == sorted(n for n in fixtures.ARCHIVE_INITDB if n.endswith(".sql"))
    now = at(git(repo, "rev-parse", "HEAD"))
    assert [(m.name, m.version) for m in now][-1] == ("05_schema_3.1.sql", "3.1")
    text = fixtures.ARCHIVE_INITDB["02_schema_2.0.sql"]
    assert now[2].sha256 == hashlib.sha256(text.encode()).hexdigest() and now[2].text.rstrip("\n") == text.rstrip("\n")
    assert at("1" * 40) is None  # a commit the copy does not have: not known yet


def m(text, name="07_x.sql"):
    return Migration(name, int(name[:2]), "ab" * 32, text)


def test_a_migration_in_its_own_begin_commit_is_unwrapped_any_other_transaction_statement_refused():
    assert migrations.as_one_transaction(m("BEGIN;\nALTER TABLE alert ADD COLUMN x INT;\nCOMMIT;\n")) == \
        ("\nALTER TABLE alert ADD COLUMN x INT;\n", None)
    body, refused = migrations.as_one_transaction(m("ALTER TABLE alert ADD COLUMN x INT;\nCOMMIT;\nVACUUM alert;\n"))
    assert body == "" and refused == "07_x.sql has its own transaction statements (COMMIT): it cannot be applied " \
                                      "as one transaction"
    plpgsql = "DO $$ BEGIN\n  PERFORM 1;\nEND; $$;\n"  # a block's BEGIN/END are no transaction
    assert migrations.as_one_transaction(m(plpgsql)) == (plpgsql, None)


def test_the_tables_a_migration_touches_are_what_a_backup_before_it_holds():
    got = migrations.altered(m("ALTER TABLE candidate ADD COLUMN x INT;\nUPDATE ONLY alert SET partition = 0;\n"
                               "CREATE INDEX CONCURRENTLY cutout_i ON cutout (alert_id);\n-- UPDATE nothing SET\n"))
    assert got == ["alert", "candidate", "cutout"]


def test_one_migration_is_sent_with_the_ledger_the_grants_and_its_row_in_one_script():
    mig = m("CREATE TABLE ztf_tns (id SERIAL PRIMARY KEY, name TEXT);\n")
    script = schemasql.apply_script(mig, mig.text, A, {"00_a.sql": "cd" * 32}, "o'brien")
    lines = script.splitlines()
    assert lines[0].startswith("CREATE TEMP TABLE ampel_relations_before ON COMMIT DROP")
    assert lines[1].startswith("CREATE TABLE IF NOT EXISTS ampel_migrations")
    assert lines[2] == ("INSERT INTO ampel_migrations (name, sha256, applied_by) VALUES ('00_a.sql', '" + "cd" * 32 +
                        "', 'seeded from versions') ON CONFLICT (name) DO NOTHING;")
    assert lines[3] == "CREATE TABLE ztf_tns (id SERIAL PRIMARY KEY, name TEXT);"
    assert "GRANT SELECT ON public.%I TO %I', t.relname, 'ampel-readonly'" in script
    assert "GRANT USAGE, SELECT ON SEQUENCE public.%I TO %I', t.relname, 'ampel-client'" in script
    assert lines[-1].endswith("VALUES ('07_x.sql', '" + "ab" * 32 + "', 'o''brien') ON CONFLICT (name) DO NOTHING;")
    assert schemasql.psql(A, "--single-transaction ") == \
        "psql -X -q -p 5432 -U ampel -d ztfarchive -v ON_ERROR_STOP=1 --single-transaction -f -"


def test_psqls_error_is_quoted_with_the_line_of_the_migrations_own_file():
    said = 'psql:<stdin>:4: ERROR:  relation "nowhere" does not exist\n'  # (the preamble is 2 lines without a seed)
    assert schemasql.failure(m("ALTER TABLE a ADD b INT;\nALTER TABLE a ADD c INT REFERENCES nowhere;\n"), {}, said) == \
        '07_x.sql line 2: ERROR: relation "nowhere" does not exist'
    seeded = {"00_a.sql": "x", "01_b.sql": "y"}
    assert schemasql.failure(m("x"), seeded, 'psql:<stdin>:5: ERROR:  syntax error at or near "x"') == \
        '07_x.sql line 1: ERROR: syntax error at or near "x"'
    assert schemasql.failure(m("x"), {}, "psql: error: connection to server failed\n") == \
        "07_x.sql: psql: error: connection to server failed"


# pg_restore 15 restoring the archive's cone index with an empty search_path (captured on the sandbox)
RESTORE_FAILED = """pg_restore: error: could not execute query: ERROR:  type "earth" does not exist
LINE 1: ...ians($1))*sin(radians($2))),earth()*sin(radians($1)))::earth
QUERY:  SELECT cube(cube(cube(earth()*cos(radians($1))*cos(radians($2))),earth()*cos(radians($1))*sin(radians($2))),earth()*sin(radians($1)))::earth
Command was: CREATE INDEX candidate_cone ON public.candidate USING gist (public.ll_to_earth("dec", ra));


pg_restore: error: a worker process died unexpectedly
"""


def test_a_failed_restore_names_its_first_error_not_the_workers_death():
    assert schemasql.first_error(RESTORE_FAILED) == \
        'pg_restore: error: could not execute query: ERROR:  type "earth" does not exist'
    assert schemasql.first_error("pg_dump: could not open output\n\n") == "pg_dump: could not open output"
    cmd = schemasql.restore_command(A, "BOX", "/backups/d1", "restored_1", 4)
    assert cmd.index("--section=pre-data") < cmd.index("ALTER FUNCTION") < cmd.index("--section=post-data -j 4")


SCHEMA = ArchiveSchema(["1.8", "3.0"], 10, None, 60 << 30, {"alert": 20 << 30, "candidate": 30 << 30, "cutout": 5 << 30})


def test_a_backup_is_the_whole_database_when_small_else_what_the_migration_touches():
    assert archivebackup.scope(SCHEMA, ["candidate"], 100 << 30) == ([], 60 << 30)
    assert archivebackup.scope(SCHEMA, ["candidate", "alert"], 50 << 30) == (["alert", "candidate"], 50 << 30)
    assert archivebackup.scope(SCHEMA, [], 50 << 30) == ([], 60 << 30)  # (archive-backup: everything)
    assert archivebackup.parse_free("    Avail\n79923900416\n") == 79923900416


def test_a_backup_that_cannot_fit_is_refused_with_the_numbers_before_anything():
    with pytest.raises(DeployError) as e:
        archivebackup.require_space(50 << 30, 12 << 30, "/data/ampel/archive/backups on transit")
    assert str(e.value) == ("a backup of up to 51200.0 MiB does not fit in /data/ampel/archive/backups on transit, "
                            "which has 12288.0 MiB free: nothing was backed up or migrated; make room or set "
                            "ampel.archive.backup_dir")
    archivebackup.require_space(12 << 30, 12 << 30, "there")


def test_the_archives_clients_on_burst_are_the_services_given_its_passwords():
    doc = yaml.safe_load(fixtures.burst_yml())
    assert writers.clients(doc, (A.read_secret, A.write_secret)) == ["alertprocessor", "stats"]
    instances = {"a1": ("alertprocessor", 0), "a2": ("alertprocessor", 1), "s": ("stats", 0), "m": ("mongo", 0)}
    now = {"a1": Replica(10, 40, 11, 39), "a2": Replica(20, 40, None), "s": Replica(30, 40, 31, 39),
           "m": Replica(40, 40, 41, 40)}
    assert writers.children(instances, now, ["alertprocessor", "stats"]) == {"a1": 11, "s": 31}


def test_off_a_terminal_a_plan_with_a_costly_migration_stops_before_anything(monkeypatch):
    class Run:
        yes = False
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))
    costly = Decision("schema", "run", "1 pending", {"confirm": ["06_x.sql [changes a column's type: alert, 3.1 MiB]"]})
    with pytest.raises(DeployError, match=r"06_x.sql \[changes .*needs --yes .*nothing was changed"):
        _confirm(Run(), [Decision("src", "run", "moves"), costly])
    _confirm(Run(), [Decision("schema", "run", "1 pending", {"confirm": []})])  # nothing to ask: goes on
