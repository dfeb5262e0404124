"""The runbook's steps on the hosts, one module each: pull, src, db, secrets, up
(and the logs task beside them)."""


def site_of(r):
    """The run's site (its hosts, paths and commands for the version)."""
    from ..site import Site

    return Site(r)
