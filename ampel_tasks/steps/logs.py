"""Task logs: follow every replica of one or several services."""
from __future__ import annotations

from invoke import task

from .. import logstream, run as runs
from ..site import stack_sites


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
    r = runs.start(c)
    names = [x for x in (service or "").split(",") if x]
    logstream.follow(r, stack_sites(r), names, replica=replica, grep=grep, follow=not no_follow)
