"""ampel-tasks: the AMPEL deployment runbook as invoke tasks.

`ns` is the collection `invoke` (through tasks.py) and `ampel-deploy` run.
Heavy libraries (docker, GitPython) are imported inside the tasks that
need them, so `invoke --list` stays fast.
"""
from invoke import Collection

from . import deploy, doctor, gitops, image, prune, publish, testrun
from .steps import db, logs, pull, secrets, src, up, wire
from .defaults import DEFAULTS
from .errors import install_excepthook

install_excepthook()

ns = Collection()
for t in (
    image.keys, image.image, testrun.test, publish.push,
    pull.pull, src.src, db.db, gitops.tag, secrets.secrets, up.up, logs.logs,
    deploy.plan, deploy.deploy, deploy.status, deploy.history, deploy.rollback, prune.prune, doctor.doctor,
):
    ns.add_task(t)
wire(ns.tasks, deploy.deploy, deploy.plan)
ns.configure(DEFAULTS)

