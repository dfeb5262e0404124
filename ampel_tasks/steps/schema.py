"""Task schema: the archive's schema migrations on transit, from the tree its archive
mounts, each in one transaction, after a backup; never run twice, never half-applied."""
from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional


from . import archivebackup
from ..config import console
from ..remote import interrupts
from ..facts import migrations, schemasql, sources, stackinputs, writers
from ..flow import run as runs
from ..facts.archive import Archive
from ..config.errors import DeployError
from ..facts.migrations import ArchiveSchema, Migration
from ..flow.plan import Decision, Part
from ..facts.site import Site
from . import evidence
from .src import src_evidence


@dataclass(frozen=True)
class SchemaEvidence:
    archive: Archive
    commit: str  # the commit of the tree's repo the migrations are read at
    migrations: Optional[List[Migration]]  # None: transit's copy does not have that commit yet
    state: Optional[ArchiveSchema]  # None: no archive answers (a new one, or its stack is down)
    new: bool  # ARCHIVE_PATH holds no cluster yet


def _initdb_repo(initdb: str, copies) -> tuple:
    """(repo, path inside it) of the archive's initdb directory: the first component of
    its path that is one of the copies under AMPEL_SRC (pure). By name, not by prefix:
    in a new series' deploy dryrun.env names the old tree until `db` edits it."""
    parts = [p for p in initdb.split("/") if p]
    for i, part in enumerate(parts[:-1]):
        if part in copies:
            return part, "/".join(parts[i + 1:])
    raise DeployError(f"ARCHIVE_INITDB_PATH {initdb} is in none of the repos under AMPEL_SRC ({', '.join(sorted(copies))})")


def _copies(r, site) -> Optional[dict]:
    """transit's copies, each with the commit the migrations are read at: where src
    brought it in this run, else where src would bring it."""
    if runs.changed_on(r, site.stack_host.name, ("src",)):
        return sources.read_status(site.stack_host, site)
    return (src_evidence(r, site) or {}).get("copies")


def _gather(r, site) -> Optional[SchemaEvidence]:
    ins = stackinputs.gather(r, site)
    copies = _copies(r, site)
    if ins is None or copies is None:
        return None
    a, host, s = ins.archive, site.stack_host, r.settings
    if not copies:  # (no tree on transit yet: src makes it)
        return SchemaEvidence(a, "", None, None, ins.path.state != "cluster")
    repo, path = _initdb_repo(a.initdb, copies)
    copy = copies[repo]
    commit = copy.wanted or copy.head
    res = host.read(migrations.tree_listing_command(f"{site.ampel_src}/{repo}", commit, path), user=site.src_user)
    found = migrations.parse_tree_listing(res.stdout)
    if found is None:  # (src fetches it there) the operator's checkout may have the commit
        found = _local_listing(s.source_dir, commit, path)
    state = stackinputs.read_schema(r, site, a) if ins.path.state == "cluster" and not ins.problems else None
    return SchemaEvidence(a, commit, found, state, ins.path.state != "cluster")


def _local_listing(checkout, commit: str, path: str) -> Optional[List[Migration]]:
    """The migrations at `commit` in the operator's own checkout, if it holds that commit."""
    p = subprocess.run(["bash", "-c", migrations.tree_listing_command(str(checkout), commit, path)],
                       capture_output=True, text=True, timeout=60)
    return migrations.parse_tree_listing(p.stdout) if p.returncode == 0 else None


def schema_evidence(r, site) -> Optional[SchemaEvidence]:
    return evidence(r, "schema", lambda: _gather(r, site))


def decide_schema(r):
    """Decision for `schema` (transit): the pending migrations, each with the version it
    brings and what it costs; skip when none is; refused for a downgrade or a changed
    applied migration."""
    if r.settings.archive_host is None:
        return Decision("schema", "skip", "no archive host on this site")
    site = Site(r, archive=True)
    return _decide(site, schema_evidence(r, site))


def _decide(site, ev: Optional[SchemaEvidence]):
    if ev is None or ev.migrations is None:
        return None
    if ev.new:
        return Decision("schema", "skip", f"a new archive: postgres applies the tree's {len(ev.migrations)} "
                                          "migrations when it first starts")
    if ev.state is None:
        return None
    todo = pending_of(ev, site)
    if not todo:
        return Decision("schema", "skip", f"the archive is at schema {_version(ev.state)}; all "
                                          f"{len(ev.migrations)} migrations of the tree are applied")
    why = "; ".join(_line(m, ev.state) for m in todo)
    return Decision("schema", "run", f"{len(todo)} pending: {why}", {"pending": todo, "confirm": costly(todo, ev.state)})


def pending_of(ev: SchemaEvidence, site) -> List[Migration]:
    """The migrations to apply; refusals (changed, missing, out of order, a downgrade,
    a file with transaction statements of its own) raise, naming the file."""
    where = f"{site.ampel_src} on {site.stack_host.name} at {ev.commit[:10]}"
    newer = migrations.newer_than_code(ev.state.versions, ev.migrations)
    if newer:
        raise DeployError(f"the archive on {site.stack_host.name} is at schema {newer}, which no migration in {where} "
                          f"records: a downgrade is refused (deploy a version whose migrations reach {newer})")
    todo, refusals = migrations.pending(ev.migrations, migrations.ledger_of(ev.state, ev.migrations))
    refusals += [x for x in (migrations.as_one_transaction(m)[1] for m in todo) if x]
    migrations.require_no_refusals(refusals, where)
    return todo


def _version(state: ArchiveSchema) -> str:
    return state.versions[-1] if state.versions else "unknown"


def _line(m: Migration, state: ArchiveSchema) -> str:
    costs = [f"{why}: {t}, {state.tables.get(t, 0) / 2**20:.1f} MiB" for t, why in migrations.costs(m, state.server_major)]
    brings = f" -> {m.version}" if m.version else " (records no version)"
    return m.name + brings + (f" [{'; '.join(costs)}]" if costs else "")




def parts(r):
    """transit's part: its pending migrations; when the archive does not run now (a
    reboot) and `up` follows, deferred until transit's stack has started (`up`'s act
    then has the runner run this step again, and its evidence is read anew)."""
    if r.settings.archive_host is None:
        return []
    site = Site(r, archive=True)
    host = site.stack_host
    resumed, r.outcome.schema_deferred = r.outcome.schema_deferred, False
    ev = _gather(r, site) if resumed else schema_evidence(r, site)
    label = f"schema {host.name}"
    if not resumed and "up" in r.steps and not r.dry and ev is not None and ev.state is None and not ev.new:
        defer = Decision("schema", "run", "the archive does not run now: its migrations are read and applied once "
                                          "transit's stack has started (up)", {"defer": True})
        return [Part(defer, label, host.name, site=site, evidence=ev)]
    return [Part(_decide(site, ev), label, host.name, site=site, evidence=ev)]


def act(r, part: Part):
    """Each pending migration after a backup, in one transaction; the archive's clients
    on burst restarted when `up` does not follow."""
    site, ev, d = part.site, part.evidence, part.decision
    host = site.stack_host
    if d is not None and d.data.get("defer"):
        r.outcome.schema_deferred = True
        return "deferred"
    if d is None or ev is None or ev.state is None:
        if r.dry:
            console.note("then: the pending migrations, each after a backup, in one transaction")
            return "changed"
        raise DeployError(f"the archive's schema on {host.name} cannot be read (is its stack running? `invoke up`)")
    todo = d.data["pending"]
    _confirm(r, todo, ev.state)
    archivebackup.take(r, site, ev.archive, ev.state, _touched(todo, ev.state), before=todo[0].name)
    runs.mark_changed(r, "schema", host.name)
    for i, m in enumerate(todo):
        _apply(r, site, ev, m, todo[:i])
    after = stackinputs.read_schema(r, site, ev.archive) if not r.dry else ev.state
    console.note(f"the archive on {host.name} is at schema {_version(after)} (was {_version(ev.state)})")
    if "up" not in r.steps:
        writers.restart(r, Site(r), (ev.archive.read_secret, ev.archive.write_secret))
    return "changed"


def _touched(todo: List[Migration], state: ArchiveSchema) -> List[str]:
    return sorted({t for m in todo for t, _ in migrations.costs(m, state.server_major)} |
                  {t for m in todo for t in migrations.altered(m)})


def costly(todo: List[Migration], state: ArchiveSchema) -> List[str]:
    """The migrations that rewrite a table, each with its cost: asked before they run."""
    return [_line(m, state) for m in todo if migrations.costs(m, state.server_major)]


def _confirm(r, todo: List[Migration], state: ArchiveSchema) -> None:
    """A migration that rewrites a table runs only with --yes or a terminal's yes."""
    asked = costly(todo, state)
    if not asked or r.yes or r.dry:
        return
    what = "; ".join(asked)
    if sys.stdin.isatty():
        if input(f"rewrites tables: {what}. apply? [y/N] ").strip().lower() in ("y", "yes"):
            return
        raise DeployError("schema migration cancelled; nothing was migrated")
    raise DeployError(f"{what}: a migration that rewrites a table needs --yes (or a terminal to confirm); "
                      "nothing was migrated")


def _apply(r, site, ev: SchemaEvidence, m: Migration, done: List[Migration]) -> None:
    """One migration in one transaction; psql's own error (file and line) if it fails.
    The script is written on transit first (its size checked) and psql reads the whole
    file: a connection lost while sending could otherwise end psql's input early, and
    psql commits what it read at the end of its input."""
    a, host, user = ev.archive, site.stack_host, r.settings.service_user
    text, _ = migrations.as_one_transaction(m)
    seed = migrations.seeded_ledger(ev.migrations, ev.state.versions) if ev.state.ledger is None else {}
    app = schemasql.app_name(m, f"{os.getpid()}")
    script = posixpath.join(r.settings.paths["state_dir"], f"{app}.sql")
    host.change(f"install -d -m 0700 {shlex.quote(r.settings.paths['state_dir'])}", user=user)
    host.write_file(script, schemasql.apply_script(m, text, a, seed, r.settings.operator), user=user, mode="0600",
                    show=f"write {m.name}'s transaction to {script}")
    cmd = stackinputs.in_archive(site, a, schemasql.psql(a, "--single-transaction ", app=app))
    try:
        res = host.change(f"{cmd} < {shlex.quote(script)} 2>&1; rc=$?; rm -f {shlex.quote(script)}; exit $rc",
                          user=user, warn=True, show=f"apply {m.name} in one transaction: psql inside instance://{a.instance}")
    except KeyboardInterrupt:
        _abandon(r, site, a, m, app)
    if not res.ok:
        kept = f" ({', '.join(x.name for x in done)} applied before it stay)" if done else ""
        raise DeployError(f"{schemasql.failure(m, seed, res.stdout)}: rolled back, the archive is as it was before "
                          f"{m.name}{kept}")
    console.note(f"{m.name} applied" + (f": schema {m.version}" if m.version else ""))


def _abandon(r, site, a: Archive, m: Migration, app: str) -> None:
    """Ctrl-C during a migration: psql on transit (which a dropped ssh does not stop, and
    which would commit when done) is ended, and so is its session, whose transaction
    rolls back; then the ledger says whether it had committed before."""
    host, user = site.stack_host, r.settings.service_user
    with interrupts.deferred():
        host.change(f"pkill -TERM -u {shlex.quote(user)} -f {shlex.quote('[' + app[0] + ']' + app[1:])}; true",
                    user=user, show=f"end psql applying {m.name}")
        end = stackinputs.in_archive(site, a, schemasql.end_session(a, app))
        host.change(f"{end} >/dev/null 2>&1; true", user=user, show=f"end the session applying {m.name}")
        after = stackinputs.read_schema(r, site, a)
    if after.ledger and m.name in after.ledger:
        raise DeployError(f"interrupted after {m.name} had committed: it is applied (schema {_version(after)})", 130)
    raise DeployError(f"interrupted during {m.name}: its session was ended and its transaction rolled back; the "
                      f"archive is as it was before it (schema {_version(after)})", 130)


def record_initialised(r, site, a: Archive) -> None:
    """After a new archive's first start: every migration of the tree in the ledger
    (postgres' entrypoint applied them all, those that record no version too)."""
    copies = sources.read_status(site.stack_host, site)
    if not copies or r.dry:
        return
    repo, path = _initdb_repo(a.initdb, copies)
    res = site.stack_host.read(migrations.tree_listing_command(f"{site.ampel_src}/{repo}", copies[repo].head, path),
                               user=site.src_user)
    found = migrations.parse_tree_listing(res.stdout) or []
    script = schemasql.preamble({m.name: m.sha256 for m in found}, "applied by postgres' entrypoint at the first start")
    cmd = stackinputs.in_archive(site, a, schemasql.psql(a, "--single-transaction "))
    site.stack_host.change(cmd, user=r.settings.service_user, data=script.encode(),
                           show=f"record the {len(found)} migrations of the new archive in its ledger {migrations.LEDGER}")
