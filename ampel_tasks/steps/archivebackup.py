"""Backups of the archive on transit, and their restore: tasks archive-backup and
archive-restore, and the backup the schema step takes before any migration.

A backup is pg_dump's directory format (schema and data, parallel jobs) from a
second container of the archive's image file, on transit under
ampel.archive.backup_dir, with a record beside it (`<name>.json`: what it holds, the
schema's checksum, the versions). The free space is checked first. A restore makes
a new database from a dump and checks its schema against the record; the live
database is never touched by it.
"""
from __future__ import annotations

import json
import posixpath
import shlex
import time
from typing import List


from ..config import console
from ..flow import run as runs
from ..facts import schemasql, stackinputs, state
from ..facts.archive import Archive
from ..config.errors import DeployError
from ..facts.migrations import ArchiveSchema
from ..facts.site import Site
from ..remote.registrypush import mib


def space_command(path: str) -> str:
    """The free bytes where `path` is (or would be made)."""
    q = shlex.quote(path)
    return f"d={q}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; df -B1 --output=avail \"$d\" | tail -1"


def parse_free(text: str) -> int:
    words = text.split()
    return int(words[-1]) if words and words[-1].isdigit() else 0


def scope(schema: ArchiveSchema, touched: List[str], whole_below: int) -> tuple:
    """([tables] or [] for the whole database, bytes it may take) (pure): the whole
    database where it is small enough, else the tables a migration touches."""
    if schema.bytes <= whole_below or not touched:
        return [], schema.bytes
    return sorted(touched), sum(schema.tables.get(t, 0) for t in touched)


def require_space(need: int, free: int, where: str) -> None:
    if need > free:
        raise DeployError(f"a backup of up to {mib(need)} MiB does not fit in {where}, which has {mib(free)} MiB free: "
                          "nothing was backed up or migrated; make room or set ampel.archive.backup_dir")


def exec_image(site, a: Archive, dumps: str) -> str:
    """A second container of the archive's image file, bound to its socket and to `dumps`."""
    if not a.socket_dir:
        raise DeployError("the archive service binds no host directory at /run/postgresql (its socket): "
                          "pg_dump cannot reach it")
    return site.command("exec_image", socket_dir=a.socket_dir, dumps=dumps, image_file=a.image_file)


def take(r, site, a: Archive, schema: ArchiveSchema, touched: List[str], before: str = "") -> None:
    """A backup now (refused with the numbers when it cannot fit); its record kept for the manifest."""
    s, host = r.settings, site.stack_host
    folder = s.archive["backup_dir"]
    tables, need = scope(schema, touched, int(s.archive["whole_below_gib"]) << 30)
    free = parse_free(host.read(space_command(folder), user=s.service_user, warn=True).stdout)
    require_space(need, free, f"{folder} on {host.name}")
    name = f"{a.database}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    path = posixpath.join(folder, name)
    what = f"the tables {', '.join(tables)}" if tables else f"database {a.database}"
    console.step(f"backup {host.name}", f"{what} ({mib(need)} MiB) -> {path}")
    box = exec_image(site, a, folder)
    res = host.change(f"{{ install -d -m 0700 {shlex.quote(folder)} && " +
                      schemasql.dump_command(a, box, folder, name, int(s.archive["backup_jobs"]), tables) +
                      f"; }} 2>&1 || {{ rm -rf {shlex.quote(path)}; exit 1; }}", user=s.service_user, warn=True)
    if not res.ok:
        raise DeployError(f"the backup in {folder} on {host.name} failed: {schemasql.first_error(res.stdout)}; "
                          "nothing was migrated")
    if r.dry:
        return
    digest = host.read(schemasql.schema_digest_command(a, box, a.database), user=s.service_user).stdout.strip()
    b = schemasql.Backup(path, a.database, tables, need, digest, list(schema.versions), state.now(), before)
    host.write_file(path + ".json", json.dumps(b.as_json(), indent=1) + "\n", user=s.service_user, mode="0600")
    r.outcome.archive_backups.append(b.as_json())
    console.note(f"backup {path}: {what}, schema {schema.versions[-1] if schema.versions else '?'}")


def _archive(r) -> tuple:
    """transit's Site and archive, as the running deployment has them."""
    if r.settings.archive_host is None:
        raise DeployError("this site has no archive host (a host with the role 'archive')")
    if not state.adopt_running(r):
        raise DeployError("no deployment is recorded as running: the archive's stack file is read from its tree")
    site = Site(r, archive=True)
    ins = stackinputs.gather(r, site)
    if ins is None:
        raise DeployError(f"{site.stack_file} is not on {site.stack_host.name}")
    return site, ins.archive


def archive_backup(c, dry=False):
    """`invoke archive-backup` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, dry=dry)
    site, a = _archive(r)
    state.State(r).acquire()
    take(r, site, a, stackinputs.read_schema(r, site, a), [])


def archive_restore(c, from_, into=None, dry=False):
    """`invoke archive-restore` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, dry=dry)
    site, a = _archive(r)
    host, s = site.stack_host, r.settings
    dump = from_.rstrip("/")
    record = schemasql.parse_backup_record(host.read_file(dump + ".json", user=s.service_user) or "")
    into = into or f"{a.database}_restored_{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    state.State(r).acquire()
    box = exec_image(site, a, posixpath.dirname(dump))
    console.step(f"restore {host.name}", f"{dump} -> new database {into}")
    res = host.change(schemasql.restore_command(a, box, dump, into, int(s.archive["backup_jobs"])) + " 2>&1",
                      user=s.service_user, warn=True)
    if not res.ok:
        host.change(schemasql.drop_command(a, box, into), user=s.service_user, warn=True,
                    show=f"drop the half-restored {into}")
        raise DeployError(f"the restore of {dump} into {into} failed (the new database was dropped again): "
                          f"{schemasql.first_error(res.stdout)}")
    if r.dry:
        return
    _check(r, site, a, box, record, into)


def _check(r, site, a: Archive, box: str, record, into: str) -> None:
    if record is None:
        console.note(f"restored into {into}; the dump has no record, so its schema was not compared")
    elif record.tables:
        console.note(f"restored the tables {', '.join(record.tables)} into {into}")
    elif site.stack_host.read(schemasql.schema_digest_command(a, box, into),
                              user=r.settings.service_user).stdout.strip() != record.schema:
        raise DeployError(f"restored into {into}, but its schema differs from the one the backup recorded")
    else:
        console.note(f"restored into {into}: its schema equals the backup's (schema {record.versions[-1] if record.versions else '?'})")
