"""The archive's schema migrations: the numbered SQL files of the initdb directory in
transit's tree, which of them the database has, and what each would cost.

The archive records a schema version (`versions`), but not every migration records
one (v0.3.8's `06_schema_fidelity.sql` does not): which files are applied is kept in
a ledger (file name and checksum per applied migration), seeded for a database made
before the tool from `versions`: every file up to the last one whose version is
recorded was applied by postgres' entrypoint when the database was made, or by hand.

Facts are a command and a pure parser; the decisions here are pure.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..config.errors import DeployError

NUMBERED = re.compile(r"^(\d+)_.*\.sql$")
RECORDS = re.compile(r"INSERT\s+INTO\s+versions\s*\(\s*alert_version\s*\)\s*VALUES\s*\(\s*'([^']+)'", re.I)


@dataclass(frozen=True)
class Migration:
    name: str
    number: int
    sha256: str
    text: str = field(repr=False)

    @property
    def version(self) -> Optional[str]:
        """The schema version this migration records, if it records one."""
        found = RECORDS.findall(self.text)
        return found[-1] if found else None


def tree_listing_command(repo_dir: str, commit: str, initdb_dir: str) -> str:
    """The numbered SQL files of `initdb_dir` (relative to the repo) at `commit`: per
    file `@@file NAME SHA256`, then its text; `@@unknown-commit` when the copy lacks the commit."""
    r, c, d = shlex.quote(repo_dir), shlex.quote(commit), shlex.quote(initdb_dir.strip("/") + "/")
    return (f"cd {r} && {{ git cat-file -e {c}^{{commit}} 2>/dev/null || {{ echo @@unknown-commit; exit 0; }}; }} && "
            f"for f in $(git ls-tree --name-only {c} -- {d}); do b=${{f##*/}}; case \"$b\" in [0-9]*.sql) ;; "
            f"*) continue;; esac; echo \"@@file $b $(git show {c}:\"$f\" | sha256sum | cut -d' ' -f1)\"; "
            f"git show {c}:\"$f\"; echo; done")


def parse_listing(text: str) -> List[Migration]:
    """[Migration] in their number's order (pure); a name without a number is no migration."""
    out = []
    for block in text.split("@@file ")[1:]:
        head, _, body = block.partition("\n")
        parts = head.split()
        if len(parts) != 2:
            continue
        m = NUMBERED.match(parts[0])
        if m:
            out.append(Migration(parts[0], int(m.group(1)), parts[1], body))
    return sorted(out, key=lambda x: (x.number, x.name))


def parse_tree_listing(text: str) -> Optional[List[Migration]]:
    """tree_listing_command's output (pure): None when the copy lacks the commit."""
    return None if "@@unknown-commit" in text.splitlines()[:1] else parse_listing(text)


TRANSACTION = re.compile(r"^\s*(?:(BEGIN|COMMIT|END|ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?|(START)\s+TRANSACTION[^;]*)"
                         r"\s*;", re.I | re.M)
DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.S)  # a function's or DO block's body


def as_one_transaction(m: Migration) -> Tuple[str, Optional[str]]:
    """(the text to run inside the tool's one transaction, a refusal) (pure): a file
    wrapped in its own BEGIN ... COMMIT is unwrapped (it asked for one transaction);
    any other transaction statement would end the tool's transaction half-way."""
    body = _without_comments(m.text)
    found = list(TRANSACTION.finditer(DOLLAR_QUOTED.sub(lambda x: " " * len(x.group(0)), body)))
    if not found:
        return m.text, None
    words = [(f.group(1) or f.group(2)).upper() for f in found]
    if words in (["BEGIN", "COMMIT"], ["START", "COMMIT"], ["BEGIN", "END"]) and not body[:found[0].start()].strip() \
            and not body[found[1].end():].strip():
        return body[found[0].end():found[1].start()], None
    return "", f"{m.name} has its own transaction statements ({', '.join(words)}): it cannot be applied as one transaction"


def seeded_ledger(migrations: List[Migration], versions: List[str]) -> Dict[str, str]:
    """The ledger of a database made before the tool (pure): every migration up to the
    last one whose version `versions` holds, with its checksum now."""
    last = max((i for i, m in enumerate(migrations) if m.version in versions), default=-1)
    return {m.name: m.sha256 for m in migrations[: last + 1]}


def pending(migrations: List[Migration], ledger: Dict[str, str]) -> Tuple[List[Migration], List[str]]:
    """(migrations to apply in order, refusals) (pure): an applied migration whose
    file changed since is refused by name; so is one applied that the tree lacks, and
    a gap (a migration not applied before one that is)."""
    refusals = [f"{m.name} was applied with checksum {ledger[m.name][:12]}, the file now has {m.sha256[:12]}"
                for m in migrations if m.name in ledger and ledger[m.name] != m.sha256]
    names = {m.name for m in migrations}
    refusals += [f"{name} is applied but not in the tree (a downgrade?)" for name in sorted(set(ledger) - names)]
    todo = [m for m in migrations if m.name not in ledger]
    last_applied = max((m.number for m in migrations if m.name in ledger), default=-1)
    refusals += [f"{m.name} is not applied but a later migration is" for m in todo if m.number < last_applied]
    return todo, refusals


# a statement that rewrites a table, or reads all of it under a lock
REWRITES = [
    (re.compile(r"ALTER\s+TABLE\s+(?:ONLY\s+)?(\w+)[^;]*?ALTER\s+(?:COLUMN\s+)?\w+\s+(?:SET\s+DATA\s+)?TYPE\b", re.I | re.S),
     "changes a column's type (rewrites the table)", None),
    (re.compile(r"ALTER\s+TABLE\s+(?:ONLY\s+)?(\w+)[^;]*?ADD\s+(?:COLUMN\s+)?\w+\s+[^,;]*?\bDEFAULT\b", re.I | re.S),
     "adds a column with a default (rewrites the table before PostgreSQL 11)", 11),
    (re.compile(r"\bUPDATE\s+(?:ONLY\s+)?(\w+)\s+SET\b", re.I), "updates rows of the table", None),
]


def costs(m: Migration, server_major: int) -> List[Tuple[str, str]]:
    """[(table, why)] for each statement of `m` that rewrites a table (pure); an ADD
    COLUMN with a default is free from PostgreSQL 11 on."""
    out = []
    for pattern, why, free_from in REWRITES:
        if free_from is not None and server_major >= free_from:
            continue
        out += [(t.lower(), why) for t in pattern.findall(_without_comments(m.text))]
    return out


TOUCHES = re.compile(r"\b(?:ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|UPDATE(?:\s+ONLY)?|DELETE\s+FROM|INSERT\s+INTO|"
                     r"DROP\s+TABLE(?:\s+IF\s+EXISTS)?|TRUNCATE(?:\s+TABLE)?|INDEX\s+(?:CONCURRENTLY\s+)?\w*\s*ON(?:\s+ONLY)?)"
                     r"\s+(?:public\.)?(\w+)", re.I)


def altered(m: Migration) -> List[str]:
    """The existing tables `m` changes (pure): what a backup before it must hold."""
    return sorted({t.lower() for t in TOUCHES.findall(_without_comments(m.text))})


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def newer_than_code(versions: List[str], migrations: List[Migration]) -> Optional[str]:
    """The database's version when the code's migrations never record it (a downgrade), else None (pure)."""
    known = {m.version for m in migrations if m.version}
    last = versions[-1] if versions else None
    return last if last and known and last not in known else None


def require_no_refusals(refusals: List[str], where: str) -> None:
    if refusals:
        raise DeployError(f"the archive's migrations in {where}: " + "; ".join(refusals))


LEDGER = "ampel_migrations"  # the tool's ledger table in the archive: one row per applied migration
LEDGER_DDL = (f"CREATE TABLE IF NOT EXISTS {LEDGER} (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, "
              "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_by TEXT NOT NULL)")

# psql script (psql 10's \if): the recorded versions, the server's major version, the ledger if there is one
STATE_SCRIPT = f"""\\pset tuples_only on
\\pset format unaligned
SELECT 'version=' || alert_version FROM versions ORDER BY version_id;
SELECT 'server=' || current_setting('server_version_num');
SELECT 'bytes=' || pg_database_size(current_database());
SELECT 'table=' || c.relname || ' ' || pg_total_relation_size(c.oid) FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p');
SELECT to_regclass('public.{LEDGER}') IS NOT NULL AS has_ledger \\gset
\\if :has_ledger
SELECT 'applied=' || name || ' ' || sha256 FROM {LEDGER} ORDER BY applied_at, name;
\\else
SELECT 'ledger=none';
\\endif
"""


@dataclass(frozen=True)
class ArchiveSchema:
    versions: List[str]
    server_major: int
    ledger: Optional[Dict[str, str]]  # None: the tool has not kept one in this database yet
    bytes: int = 0  # the database's size
    tables: Dict[str, int] = field(default_factory=dict)  # {table: bytes with its indexes}


def parse_state(text: str) -> ArchiveSchema:
    """What STATE_SCRIPT printed (pure)."""
    versions, ledger, server, tables, size = [], {}, 0, {}, 0
    has_ledger = True
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "version":
            versions.append(value.strip())
        elif key == "server" and value.strip().isdigit():
            server = int(value) // 10000
        elif key == "applied":
            name, _, sha = value.strip().partition(" ")
            ledger[name] = sha
        elif key == "ledger":
            has_ledger = False
        elif key == "bytes" and value.strip().isdigit():
            size = int(value)
        elif key == "table" and value.strip().rpartition(" ")[2].isdigit():
            name, _, n = value.strip().rpartition(" ")
            tables[name] = int(n)
    if not server:
        raise DeployError(f"the archive's schema could not be read: {text.strip().splitlines()[-1:] or ['no output']}")
    return ArchiveSchema(versions, server, ledger if has_ledger else None, size, tables)


def ledger_of(schema: ArchiveSchema, migrations: List[Migration]) -> Dict[str, str]:
    """The ledger to decide on: the database's, else one seeded from its versions (pure)."""
    return dict(schema.ledger) if schema.ledger is not None else seeded_ledger(migrations, schema.versions)
