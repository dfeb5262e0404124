"""The tasks over the whole site: plan, deploy, status, history, rollback, prune,
doctor and the archive's backups: signatures, help and docstrings only; each calls
the module that owns it."""
from invoke import task

from .runoptions import run_options
from ..config.helptext import DRY_HELP, LOCK_HELP, NEW_ARCHIVE_HELP, SKIP_TESTS_HELP, VERBOSE_HELP, VERSION_HELP
from ..steps import ORDER


@task(help={"version": VERSION_HELP, "json": "print the plan as JSON", "new_archive": NEW_ARCHIVE_HELP,
            "dry": DRY_HELP})
@run_options("new_archive")
def plan(c, version=None, json=False, dry=False):
    """Show which runbook steps are necessary for a version, and why.

    Every step is `run`, `skip` or `maybe`, with the evidence behind it: image
    labels vs the repos' commits, the registry digest, image files on the hosts,
    AMPEL_SRC, dryrun.env values, secrets, host copies, the running version. A
    fact that only an earlier step can produce is `maybe`, never a confident skip.
    Inside `deploy` the plan is printed first and confirmed on a terminal.
    """
    from ..operations import deploy as owner

    return owner.plan(c, version=version, json=json, dry=dry)


@task(  # its pre-tasks (the plan, then every step) come from steps.STEPS
    iterable=["force"],
    help={
        "verbose": VERBOSE_HELP,
        "version": VERSION_HELP,
        "yes": "do not ask for confirmation of the plan",
        "force": "run this step even if the plan skips it (repeatable): " + ", ".join(ORDER),
        "new_db": "start a new live database for this version",
        "new_archive": NEW_ARCHIVE_HELP,
        "skip_tests": SKIP_TESTS_HELP,
        "message": "commit message for outstanding changes in the host copies (tag step)",
        "dry": DRY_HELP,
        **LOCK_HELP,
    },
)
@run_options("yes", "force", "new_db", "new_archive", "message", "skip_tests", "lock_wait", "break_lock", "verbose")
def deploy(c, version=None, dry=False):
    """Deploy a version: the whole runbook, skipping what is up to date.

    Prints the plan, asks on a terminal unless --yes, then runs image, test, push,
    pull (transit, burst), src (transit, burst), db, tag, secrets (transit, burst),
    schema (the archive's migrations on transit, after a backup) and up with its health gate (transit's archive first, only when something it
    runs from changed; then burst), each step only where necessary. The deploy lock on burst is held from the
    first change until the health gate has passed; the result is kept as a
    manifest, `current` and a history line.
    """
    from ..operations import deploy as owner

    return owner.deploy(c, version=version, dry=dry)


@task(help={"json": "print the status as JSON"})
def status(c, json=False):
    """Show what runs now on burst, compared with the last deployment's manifest,
    and the archive on transit: whether it answers, its schema version, its size
    and the free space under ARCHIVE_PATH."""
    from ..operations import status as owner

    return owner.status(c, json=json)


@task(help={"json": "print the history as JSON"})
def history(c, json=False):
    """List deployments recorded on burst, newest first."""
    from ..operations import status as owner

    return owner.history(c, json=json)


@task(help={
    "verbose": VERBOSE_HELP,
    "to": "version to go back to (default: the last successful one before the running version)",
    "yes": "do not ask for confirmation (needed off a terminal to roll back across a new database)",
    "list": "list the deployments one can roll back to, with their results and databases, and stop",
    "dry": DRY_HELP,
    **LOCK_HELP,
})
@run_options("lock_wait", "break_lock", "verbose")
def rollback(c, to=None, yes=False, list=False, dry=False):
    """Redeploy an earlier version's image file, sources and dryrun.env values.

    Without --to, goes back to the last successful deployment before the
    running one and says which. The newer version's database directory,
    sources, image file, manifest and logs are all kept. Going back across a
    deployment that started a new live database says what that means and asks
    (or needs --yes).
    """
    from ..operations import rollback as owner

    return owner.rollback(c, to=to, yes=yes, list=list, dry=dry)


@task(help={
    "keep": "keep what the running deployment and the last N successful deployments use (default 3)",
    "apply": "remove what the listing marks `remove` (without it, prune only lists)",
    "json": "print the listing as JSON (and change nothing)",
    "dry": DRY_HELP,
})
def prune(c, keep=3, apply=False, json=False, dry=False):
    """List image files, source trees, local images and registry tags that no kept
    deployment uses, with sizes; remove them with --apply.

    Kept: the running deployment's and the last N successful deployments' files,
    trees and images, `latest`, and every tree holding uncommitted or unpushed work.
    Database directories are only listed with their sizes, never removed.
    """
    from ..operations import prune as owner

    return owner.prune(c, keep=keep, apply=apply, json=json, dry=dry)


@task
def doctor(c):
    """Check that a deploy could start: ticket, hosts, sudo, runtime, space, keys, engine.

    One line per check with its fix: the Kerberos ticket and its lifetime (where
    the site uses one), ssh reach and host keys of each host, `sudo -n` to the
    service user, the runtime on each host against the profile's command forms,
    free space where singularity pulls, the archive on transit (answers, schema,
    size, free space), the local Docker engine, the registry's port and each
    deploy key reaching its repo. Changes nothing; exit 1 when a
    check fails.
    """
    from ..operations import doctor as owner

    return owner.doctor(c)


@task(help={"dry": DRY_HELP, "verbose": VERBOSE_HELP})
@run_options("verbose")
def archive_backup(c, dry=False):
    """Back up the archive on transit: schema and data, pg_dump's directory format.

    Into ampel.archive.backup_dir on transit (ampel.archive.backup_jobs parallel
    jobs), after checking it fits in the free space there; a record beside it holds
    the schema's checksum and versions, for archive-restore's check.
    """
    from ..steps import archivebackup as owner

    return owner.archive_backup(c, dry=dry)


@task(auto_shortflags=False,  # (-f would read as invoke's own -f, the profile)
      help={"from_": "the dump to restore: a directory under ampel.archive.backup_dir on transit",
            "into": "the new database to restore into (default: <database>_restored_<time>); never an existing one",
            "dry": DRY_HELP, "verbose": VERBOSE_HELP})
@run_options("verbose")
def archive_restore(c, from_, into=None, dry=False):
    """Restore a backup of the archive into a new database on transit, and check it.

    The live database is not touched: the dump is restored into a new database
    (pg_restore, parallel jobs), whose schema is then compared with the one the
    backup recorded. Switching the writers to it is the operator's decision.
    """
    from ..steps import archivebackup as owner

    return owner.archive_restore(c, from_=from_, into=into, dry=dry)
