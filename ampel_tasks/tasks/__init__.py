"""The package's face: every task's name, options, help and docstring, in modules that
import nothing but invoke and the help texts, so `invoke --list`, `--help` and tab
completion load no more than that. A task's body imports the module that owns its work
when it runs and passes on what that module reads; the options a chain shares (--force,
--new-db, --message, --lock-wait, --verbose, ...) are declared where invoke shows them
and typed once by the executor into the run's `Options`."""
from invoke import Collection, Task

from ..config.defaults import DEFAULTS
from ..steps import wire
from . import build, hosts, site

ns = Collection()
for face in (build, hosts, site):  # (every task a face module defines; the steps' are the table's names)
    for t in vars(face).values():
        if isinstance(t, Task):
            ns.add_task(t)
wire(ns.tasks, site.deploy, site.plan)
ns.configure(DEFAULTS)
