"""The archive's migrations decided from a captured listing of transit's initdb
directory (the sandbox's, in v0.3.5's shape, and v0.3.8's kinds of change)."""
import hashlib
import sys
from pathlib import Path

import pytest

from ampel_tasks.facts import migrations
from ampel_tasks.config.errors import DeployError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))
import fixtures  # noqa: E402


def listing(files: dict) -> str:
    """What migrations.tree_listing_command prints for these files (the numbered .sql ones, sorted)."""
    out = ""
    for name in sorted(n for n in files if n[0].isdigit() and n.endswith(".sql")):
        out += f"@@file {name} {hashlib.sha256(files[name].encode()).hexdigest()}\n{files[name]}\n"
    return out


V035 = migrations.parse_listing(listing(fixtures.ARCHIVE_INITDB))
FIDELITY = ("-- v0.3.8: neither in a transaction nor recorded\n"
            "ALTER TABLE candidate ALTER COLUMN fid TYPE SMALLINT;\nUPDATE alert SET partition = 0;\n")


def test_the_numbered_files_in_order_with_the_versions_they_record():
    assert [(m.name, m.version) for m in V035] == [
        ("00_archive_schema_1.8.sql", "1.8"), ("01_schema_1.9.sql", "1.9"), ("02_schema_2.0.sql", "2.0"),
        ("03_cone_search.sql", None), ("04_schema_3.0.sql", "3.0")]
    assert "create_users.sh" not in {m.name for m in V035}


def test_a_database_made_before_the_tool_is_seeded_from_its_versions():
    ledger = migrations.seeded_ledger(V035, ["1.8", "1.9", "2.0", "3.0"])
    assert list(ledger) == [m.name for m in V035]  # 03 records nothing, but 04 came after it
    todo, refusals = migrations.pending(V035, ledger)
    assert todo == [] and refusals == []
    # at 2.0: cone search and 3.0 are pending, in order
    todo, refusals = migrations.pending(V035, migrations.seeded_ledger(V035, ["1.8", "1.9", "2.0"]))
    assert [m.name for m in todo] == ["03_cone_search.sql", "04_schema_3.0.sql"] and refusals == []


def test_an_unrecorded_migration_is_found_by_the_ledger():
    files = dict(fixtures.ARCHIVE_INITDB, **{"05_index_cutout.sql": "CREATE INDEX cutout_alert ON cutout (alert_id);\n",
                                             "06_schema_fidelity.sql": FIDELITY})
    found = migrations.parse_listing(listing(files))
    ledger = migrations.seeded_ledger(found, ["1.8", "1.9", "2.0", "3.0"])
    todo, _ = migrations.pending(found, ledger)
    assert [m.name for m in todo] == ["05_index_cutout.sql", "06_schema_fidelity.sql"]
    ledger.update({m.name: m.sha256 for m in todo})
    assert migrations.pending(found, ledger) == ([], [])


def test_an_applied_migration_whose_file_changed_is_refused_by_name():
    ledger = migrations.seeded_ledger(V035, ["1.8", "1.9", "2.0", "3.0"])
    edited = migrations.parse_listing(listing(dict(fixtures.ARCHIVE_INITDB, **{
        "02_schema_2.0.sql": fixtures.ARCHIVE_INITDB["02_schema_2.0.sql"] + "-- edited\n"})))
    _, refusals = migrations.pending(edited, ledger)
    assert len(refusals) == 1 and refusals[0].startswith("02_schema_2.0.sql was applied with checksum ")
    with pytest.raises(DeployError, match="02_schema_2.0.sql was applied"):
        migrations.require_no_refusals(refusals, "transit:/home/ampel/Ampel-v0.3")


def test_a_database_newer_than_the_code_is_a_downgrade():
    assert migrations.newer_than_code(["1.8", "1.9", "2.0", "3.0", "3.1"], V035) == "3.1"
    assert migrations.newer_than_code(["1.8", "1.9", "2.0", "3.0"], V035) is None


def test_statements_that_rewrite_a_table_are_flagged_with_the_table():
    fidelity = migrations.parse_listing(listing({"06_schema_fidelity.sql": FIDELITY}))[0]
    assert migrations.costs(fidelity, 10) == [("candidate", "changes a column's type (rewrites the table)"),
                                              ("alert", "updates rows of the table")]
    v20 = next(m for m in V035 if m.name == "02_schema_2.0.sql")
    assert migrations.costs(v20, 10) == [("candidate", "updates rows of the table")]
    with_default = migrations.parse_listing(listing({"07_x.sql": "ALTER TABLE alert ADD COLUMN seen BOOLEAN DEFAULT false;\n"}))[0]
    assert migrations.costs(with_default, 10) == [("alert", "adds a column with a default (rewrites the table before "
                                                            "PostgreSQL 11)")]
    assert migrations.costs(with_default, 15) == []
    # 3.0 adds sixteen nullable columns: no rewrite
    assert migrations.costs(next(m for m in V035 if m.name == "04_schema_3.0.sql"), 10) == []


# what migrations.STATE_SCRIPT prints through psql (-X -q): a database made before the tool, then one with a ledger
BEFORE_THE_TOOL = "version=1.8\nversion=1.9\nversion=2.0\nversion=3.0\nserver=100003\nledger=none\n"
WITH_LEDGER = ("version=1.8\nversion=1.9\nversion=2.0\nversion=3.0\nserver=150010\n"
               "applied=00_archive_schema_1.8.sql " + "a" * 64 + "\napplied=05_index_cutout.sql " + "b" * 64 + "\n")


def test_the_archives_schema_state_read_through_psql():
    before = migrations.parse_state(BEFORE_THE_TOOL)
    assert before == migrations.ArchiveSchema(["1.8", "1.9", "2.0", "3.0"], 10, None)
    assert migrations.ledger_of(before, V035) == migrations.seeded_ledger(V035, before.versions)
    kept = migrations.parse_state(WITH_LEDGER)
    assert kept.server_major == 15 and kept.ledger == {"00_archive_schema_1.8.sql": "a" * 64,
                                                       "05_index_cutout.sql": "b" * 64}
    assert migrations.ledger_of(kept, V035) == kept.ledger
    with pytest.raises(DeployError, match="could not be read"):
        migrations.parse_state('psql:<stdin>:3: ERROR:  relation "versions" does not exist\n')
