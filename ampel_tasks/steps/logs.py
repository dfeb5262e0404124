"""Task logs: follow every replica of one or several services."""
from __future__ import annotations


from ..facts import logstream
from ..flow import run as runs
from ..facts.site import stack_sites


def logs(c, service=None, replica=None, grep=None, no_follow=False):
    """`invoke logs` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c)
    names = [x for x in (service or "").split(",") if x]
    logstream.follow(r, stack_sites(r), names, replica=replica, grep=grep, follow=not no_follow)
