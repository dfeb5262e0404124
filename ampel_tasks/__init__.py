"""ampel-tasks: the AMPEL deployment runbook as invoke tasks.

`ns` is the collection `invoke` (through tasks.py) and `ampel-deploy` run.
Heavy libraries (docker, GitPython) are imported inside the tasks that
need them, so `invoke --list` stays fast.
"""
from invoke import Collection

from . import archivebackup, deploy, doctor, keys, prune, rollback, status
from .defaults import DEFAULTS
from .errors import install_excepthook
from .steps import db, image, logs, pull, push, schema, secrets, src, tag, test, up, wire

install_excepthook()

ns = Collection()
for t in (
    keys.keys, image.image, test.test, push.push,
    pull.pull, src.src, db.db, tag.tag, secrets.secrets, schema.schema, up.up, logs.logs,
    deploy.plan, deploy.deploy, status.status, status.history, rollback.rollback, prune.prune, doctor.doctor,
    archivebackup.archive_backup, archivebackup.archive_restore,
):
    ns.add_task(t)
wire(ns.tasks, deploy.deploy, deploy.plan)
ns.configure(DEFAULTS)

