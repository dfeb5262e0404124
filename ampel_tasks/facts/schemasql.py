"""What the schema step sends to the archive: each migration as one transaction
(with the tool's ledger and the grants the new tables need), and what psql said
about a failure; the backup and restore commands beside it.

psql runs inside the archive's instance as its superuser over the local socket
(trusted there, as the runbook's procedure does), the script on its stdin; the
dumps run from a second container of the archive's image file, bound to the same
socket and to the backup directory. Builders and parsers are pure.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional

from .archive import Archive
from .migrations import LEDGER, LEDGER_DDL, Migration


def literal(value: str) -> str:
    """An SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _login(a: Archive) -> str:
    """The archive's superuser on its port (over the socket: trusted there)."""
    return f"-p {a.port} -U {shlex.quote(a.superuser)}"


def _on_socket(a: Archive) -> str:
    """_login through the socket directory a second container binds at /run/postgresql."""
    return f"-h /run/postgresql {_login(a)}"


def psql(a: Archive, extra: str = "", app: str = "") -> str:
    """psql as the archive's superuser over its socket, the script on stdin, stopping at
    the first error; `app`: the session's application_name (to find it again)."""
    # (the name in psql's own arguments too: pkill -f finds psql itself by it)
    named, marked = (f"PGAPPNAME={shlex.quote(app)} ", f"-v ampel_session={shlex.quote(app)} ") if app else ("", "")
    return f"{named}psql -X -q {_login(a)} -d {shlex.quote(a.database)} -v ON_ERROR_STOP=1 {marked}{extra}-f -"


def app_name(m: Migration, run: str) -> str:
    """The application_name of the session applying `m` in run `run` (unique on the host)."""
    return f"ampel-tasks-{run}-{m.name}"[:63]


def end_session(a: Archive, app: str) -> str:
    """psql ending the session named `app`: its transaction rolls back at once."""
    sql = f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = {literal(app)}"
    return f"psql -X -q -At {_login(a)} -d {shlex.quote(a.database)} -c {shlex.quote(sql)}"


BEFORE = "ampel_relations_before"


def _grants(a: Archive) -> str:
    """Grants on every table and sequence the migration created (none exist by default)."""
    read, write = literal(a.read_user), literal(a.write_user)
    return f"""DO $ampel$ DECLARE t record; BEGIN
FOR t IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relname <> {literal(LEDGER)}
  AND c.oid NOT IN (SELECT oid FROM {BEFORE}) LOOP
  IF t.relkind = 'S' THEN
    EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE public.%I TO %I', t.relname, {write});
  ELSE
    EXECUTE format('GRANT SELECT ON public.%I TO %I', t.relname, {read});
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON public.%I TO %I', t.relname, {write});
  END IF;
END LOOP; END $ampel$;
"""


def _ledger_row(name: str, sha: str, by: str) -> str:
    return (f"INSERT INTO {LEDGER} (name, sha256, applied_by) VALUES ({literal(name)}, {literal(sha)}, {literal(by)}) "
            "ON CONFLICT (name) DO NOTHING;")


def preamble(seed: Dict[str, str], by: str = "seeded from versions") -> str:
    """Before the migration's text: the relations that exist, the ledger (seeded from
    `versions` the first time), one line per statement."""
    lines = [f"CREATE TEMP TABLE {BEFORE} ON COMMIT DROP AS SELECT c.oid FROM pg_class c "
             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public';",
             LEDGER_DDL + ";"]
    lines += [_ledger_row(name, sha, by) for name, sha in sorted(seed.items())]
    return "\n".join(lines) + "\n"


def apply_script(m: Migration, text: str, a: Archive, seed: Dict[str, str], operator: str) -> str:
    """One migration's script for `psql --single-transaction`: nothing of it stays if any statement fails."""
    return preamble(seed) + text.rstrip() + "\n;\n" + _grants(a) + _ledger_row(m.name, m.sha256, operator) + "\n"


PSQL_ERROR = re.compile(r"^psql:[^:]*:(\d+): (ERROR|FATAL):\s+(.*)$", re.M)


def failure(m: Migration, seed: Dict[str, str], output: str) -> str:
    """psql's own error for migration `m`, its line counted in the migration's file (pure)."""
    found = PSQL_ERROR.search(output)
    if not found:
        said = [line.strip() for line in output.splitlines() if line.strip()]
        return f"{m.name}: {said[-1] if said else 'psql failed without a word'}"
    line = int(found.group(1)) - preamble(seed).count("\n")
    where = f"line {line}" if line >= 1 else "the tool's preamble"
    return f"{m.name} {where}: {found.group(2)}: {found.group(3).strip()}"


# -- backups ------------------------------------------------------------------------------

def dump_command(a: Archive, exec_image: str, backup_dir: str, name: str, jobs: int,
                 tables: Optional[List[str]] = None) -> str:
    """pg_dump in directory format with `jobs` parallel jobs, schema and data, of the
    database or of `tables`, from a second container of the archive's image file."""
    only = "".join(f" -t {shlex.quote('public.' + t)}" for t in tables or [])
    target = shlex.quote(f"{backup_dir.rstrip('/')}/{name}")
    return f"{exec_image} pg_dump {_on_socket(a)} -d {shlex.quote(a.database)} -Fd -j {jobs}{only} -f {target}"


# pg_restore empties search_path (PostgreSQL 10.3 on); an extension's SQL function that
# names its own types unqualified (earthdistance's ll_to_earth, in the archive's cone
# index) then fails the index's creation: those functions get their schema's path first
EXTENSION_PATHS = """DO $$ DECLARE f record; BEGIN
FOR f IN SELECT p.oid::regprocedure AS sig, n.nspname FROM pg_proc p
  JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
  WHERE l.lanname = 'sql' AND p.proconfig IS NULL LOOP
  EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_catalog', f.sig, f.nspname);
END LOOP; END $$;"""


def restore_command(a: Archive, exec_image: str, dump: str, into: str, jobs: int) -> str:
    """A new database `into`, the dump restored into it (the live database is not
    touched): its definitions, the extensions' paths, then data and indexes in parallel."""
    at = _on_socket(a)
    db, src = shlex.quote(into), shlex.quote(dump)
    return (f"{exec_image} createdb {at} -T template0 {db} && "
            f"{exec_image} pg_restore {at} -d {db} --exit-on-error --section=pre-data {src} && "
            f"{exec_image} psql -X -q {at} -d {db} -v ON_ERROR_STOP=1 -c {shlex.quote(EXTENSION_PATHS)} && "
            f"{exec_image} pg_restore {at} -d {db} --exit-on-error --section=data --section=post-data -j {jobs} {src}")


def drop_command(a: Archive, exec_image: str, database: str) -> str:
    """Drop `database` (a restore's own new one, after it failed)."""
    return f"{exec_image} dropdb {_on_socket(a)} --if-exists {shlex.quote(database)}"


def first_error(output: str) -> str:
    """The first error a dump or restore printed, else its last line (pure)."""
    said = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in said if "error:" in line.lower() or line.startswith("ERROR")]
    return (errors or said or ["no output"])[0 if errors else -1]


SCHEMA_DIGEST = ("pg_dump {login} -d {db} --schema-only --no-owner "
                 "| grep -v -e '^--' -e '^$' -e '^SET ' -e '^SELECT pg_catalog.set_config' -e '^\\\\' "
                 "| sha256sum | cut -d' ' -f1")  # (psql's lines, e.g. recent pg_dump's \\restrict KEY, left out)


def schema_digest_command(a: Archive, exec_image: str, database: str) -> str:
    """The checksum of a database's schema (what pg_dump --schema-only writes, comments dropped)."""
    inner = SCHEMA_DIGEST.format(login=_on_socket(a), db=shlex.quote(database))
    return f"{exec_image} sh -c {shlex.quote(inner)}"


@dataclass(frozen=True)
class Backup:
    """One backup as its record says: where, of what, when, for which migration."""
    path: str
    database: str
    tables: List[str]  # [] for the whole database
    bytes: int
    schema: str  # the checksum of the database's schema when it was taken
    versions: List[str]
    taken: str
    before: str  # the migration it was taken before ("" when taken by hand)

    def as_json(self) -> dict:
        return dict(self.__dict__)


def parse_backup_record(text: str) -> Optional[Backup]:
    try:
        doc = json.loads(text)
        return Backup(**{k: doc[k] for k in Backup.__dataclass_fields__})
    except (ValueError, KeyError, TypeError):
        return None
