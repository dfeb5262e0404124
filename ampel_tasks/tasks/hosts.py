"""The runbook's steps on the hosts (pull, src, db, tag, secrets, schema, up) and
`logs`: signatures, help and docstrings only; each calls the step's own module."""
from invoke import task

from .runoptions import run_options
from ..config.helptext import NEW_ARCHIVE_HELP, STEP_HELP


@task(help=STEP_HELP)
@run_options("verbose")
def pull(c, version=None, dry=False):
    """Pull the image onto transit and burst through an ssh -R tunnel.

    For each host with the `pull` role: opens the runbook's reverse tunnel
    (OpenSSH `ssh -R 5000:localhost:5000`, ExitOnForwardFailure, started only once
    it is up), becomes the service user and, in the singularity directory, runs
    `SINGULARITY_NOHTTPS=1 singularity pull` into a temporary name, renamed when
    complete, with the registry digest recorded beside it. A host whose image
    file already has that digest is skipped.
    """
    from ..steps import runner

    return runner.task(c, "pull", version=version, dry=dry)


@task(help=STEP_HELP)
@run_options("verbose")
def src(c, version=None, dry=False):
    """Copy the writable Ampel sources out of the image into AMPEL_SRC on burst and transit.

    Runs `singularity-stack volume init <image file> /Ampel $AMPEL_SRC` as the
    owner of AMPEL_SRC, only where AMPEL_SRC does not exist yet; then brings each
    repo to the commit wanted for the version. An existing source tree is never
    overwritten, and work in a copy is never moved away.
    """
    from ..steps import runner

    return runner.task(c, "src", version=version, dry=dry)


@task(help={
    **STEP_HELP,
    "new_db": "start a new live database for this version even if no schema change asks for one",
})
@run_options("new_db", "verbose")
def db(c, version=None, dry=False):
    """Point dryrun.env at this version; start a new live database when necessary.

    Always sets AMPEL_TAG and AMPEL_SRC. A new live database is necessary with
    --new-db, when the schema marker (ampel.source.schema_marker) differs from the
    running sources', or when MONGO_PATH names no existing directory; then, as
    ampel, creates <mongo live dir>/<version> and sets MONGO_PATH and GROUP_NAME
    (ampel-<version>). The edit keeps every other line byte for byte, writes a
    temporary file, keeps dryrun.env.bak-<timestamp> and renames. A database
    directory is never deleted.
    """
    from ..steps import runner

    return runner.task(c, "db", version=version, dry=dry)


@task(help={
    **STEP_HELP,
    "message": "commit message for the operator's own changes in the host copies (required when there are any)",
})
@run_options("message", "verbose")
def tag(c, version=None, dry=False):
    """Commit, tag and push the host copies of the Ampel repos under AMPEL_SRC.

    Every repo gets this deployment's tag (ampel.source.tag_pattern); the tool's
    own dryrun.env edit is committed with a message of its own, anything else
    needs --message. The branch is pushed only as a fast-forward; pushes go to
    ampel.source.push_url. Copies that are clean and tagged are skipped.
    """
    from ..steps import runner

    return runner.task(c, "tag", version=version, dry=dry)


@task(help=STEP_HELP)
@run_options("verbose")
def secrets(c, version=None, dry=False):
    """Copy the secrets each stack file names into <dryrun dir>/secrets on its host.

    burst gets what burst.yml names, transit what transit.yml names. Only secrets
    that are missing or differ (compared by hash) are copied, from the operator's
    ampel.secrets.local_dir; files are created 0600 and owned by ampel, the
    directory 0700, both checked afterwards. A secret both hosts use must hold the
    same value on both (the archive's passwords). Values are never printed nor put
    on a command line.
    """
    from ..steps import runner

    return runner.task(c, "secrets", version=version, dry=dry)


@task(help={**STEP_HELP, "yes": "apply a migration that rewrites a table without asking (the plan shows its cost)"})
@run_options("yes", "verbose")
def schema(c, version=None, dry=False):
    """Apply the archive's pending schema migrations on transit.

    Reads the numbered SQL files of the archive's initdb directory at the version's
    commit in transit's tree, the archive's recorded versions and the tool's ledger of
    applied migrations (inside the running archive's instance). Each pending one is
    applied after a backup, in one transaction with psql inside the instance, with
    grants on the tables it creates; a failure leaves the archive as it was. Then the
    writers on burst start again to see the new schema (a burst `up` in a deploy).
    A migration that rewrites a table asks first (or --yes); a downgrade is refused.
    """
    from ..steps import runner

    return runner.task(c, "schema", version=version, dry=dry)


@task(help={
    **STEP_HELP,
    "same": "start the version the service host records as running again (e.g. after a reboot), without --version",
    "new_archive": NEW_ARCHIVE_HELP,
})
@run_options("same", "new_archive", "verbose")
def up(c, version=None, dry=False):
    """Redeploy the stacks with deploy/up, then wait until each is healthy.

    On transit first, only when something its stack runs from changed (its stack
    file, the env values it uses, its image files, its secrets), since that
    restarts postgres and graphite; then on burst. On each, in the directory
    holding `secrets`, as ampel: `$AMPEL_SRC/ampel-core/deploy/up dryrun`, output
    streamed live. Then the health gate: every service of the stack file listed,
    replicas as configured, ports answering, no ERROR or Traceback lines
    (ampel.health.error_patterns), no restarts during a stable window; on transit
    also a query as the archive's read user. Unhealthy: exit 1 with the offending
    lines; nothing is stopped, so the evidence stays for inspection. --force up
    redeploys burst; transit's stack restarts only for a change of its own.
    """
    from ..steps import runner

    return runner.task(c, "up", version=version, dry=dry)


@task(
    positional=["service"],
    help={
        "service": "service of burst's stack, e.g. alertprocessor, or of transit's (archive, graphite); "
                   "several as alertprocessor,mongo",
        "replica": "only this replica number",
        "grep": "only lines matching this regular expression",
        "no_follow": "print what is there and stop instead of following",
    },
)
def logs(c, service=None, replica=None, grep=None, no_follow=False):
    """Follow the logs of every replica of one or several services.

    `invoke logs alertprocessor` merges all replicas, each line carrying
    `(service:replica stdout|stderr)` as singularity-stack prints it; `invoke logs
    alertprocessor,mongo` follows both. Follows until Ctrl-C (singularity-stack
    starts 1 kB before the end of each file); --no-follow prints each replica's
    whole output since its last deploy, except the first line (as singularity-stack
    does). transit's services (the archive, graphite) are followed on transit. An
    unknown service is an error listing the configured ones.
    """
    from ..steps import logs as owner

    return owner.logs(c, service=service, replica=replica, grep=grep, no_follow=no_follow)
