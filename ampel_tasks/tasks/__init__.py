"""The package's face: every task's name, options, help and docstring, in modules that
import nothing but invoke and the help texts, so `invoke --list`, `--help` and tab
completion load no more than that. A task's body imports the module that owns its work
when it runs and passes on what that module reads; the options a chain shares (--force,
--new-db, --message, --lock-wait, --verbose, ...) are declared where invoke shows them
and typed once by the executor into the run's `Options`."""
from invoke import Collection

from ..config.defaults import DEFAULTS
from ..steps import wire
from . import build, hosts, site

ns = Collection()
for t in (
    build.keys, build.image, build.test, build.push,
    hosts.pull, hosts.src, hosts.db, hosts.tag, hosts.secrets, hosts.schema, hosts.up, hosts.logs,
    site.plan, site.deploy, site.status, site.history, site.rollback, site.prune, site.doctor,
    site.archive_backup, site.archive_restore,
):
    ns.add_task(t)
wire(ns.tasks, site.deploy, site.plan)
ns.configure(DEFAULTS)
