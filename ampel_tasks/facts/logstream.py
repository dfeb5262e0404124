"""`invoke logs`: every replica of one or several services, merged, prefixed."""
from __future__ import annotations

import re
import sys
import threading

from ..config import console
from . import stacklist
from ..config.errors import DeployError

COLORS = ["36", "32", "35", "33", "34", "31"]


def known_services(r, site) -> list:
    """The services of the site's stack, as `singularity-stack list` on its host has them."""
    s = r.settings
    res = site.stack_host.read(s.commands["list"], user=s.service_user, warn=True)
    return sorted(stacklist.parse_list(res.stdout).get(site.stack_name, {}))


def where(r, sites, services) -> list:
    """[(site, service)] for the services named: burst's, else transit's (the archive,
    graphite); an unknown one is an error listing every stack's."""
    known = {site.stack_host.name: (site, known_services(r, site)) for site in reversed(sites)}
    listing = "; ".join(f"{h}: {', '.join(names) or 'none'}" for h, (_, names) in known.items())
    if not services:
        raise DeployError(f"name at least one service; running services: {listing}")
    out = []
    for svc in services:
        found = [site for site, names in known.values() if svc in names]
        if not found:
            raise DeployError(f"unknown service {svc}; running services: {listing}")
        out.append((found[0], svc))
    return out


class _Lines:
    """Prints each line of singularity-stack's logs, filtered and coloured."""

    def __init__(self, grep, replica, color):
        self.grep = re.compile(grep) if grep else None
        self.replica = replica
        self.color = color

    def emit(self, line):
        parsed = stacklist.parse_log_line(line)
        if self.replica is not None and parsed and parsed.replica != int(self.replica):
            return
        if self.grep and not self.grep.search(line):
            return
        if parsed and sys.stdout.isatty():
            tag = f"{parsed.service}:{parsed.replica}"
            line = line.replace(tag, f"\033[{self.color}m{tag}\033[0m", 1) if tag in line else line
        console.out(line)


def _check_filters(grep, replica) -> None:
    if grep:
        try:
            re.compile(grep)
        except re.error as exc:
            raise DeployError(f"--grep {grep!r} is not a valid regular expression: {exc}") from None
    if replica is not None and not str(replica).isdigit():
        raise DeployError(f"--replica must be a number, got {replica!r}")


def follow(r, sites, services, replica=None, grep=None, follow=True):
    s = r.settings
    _check_filters(grep, replica)
    targets = where(r, sites, services)
    errors = []

    def one(i, site, svc):
        cmd = site.command("logs", stack=site.stack_name, service=svc)
        if replica is not None:
            cmd += f" {int(replica)}"
        if follow:
            cmd += " -f"
        lines = _Lines(grep, replica, COLORS[i % len(COLORS)])
        try:
            site.stack_host.read(cmd, user=s.service_user, warn=True, on_line=lines.emit)
        except Exception as exc:  # reported once below
            errors.append(f"{svc}: {exc}")

    threads = [threading.Thread(target=one, args=(i, site, svc), daemon=True) for i, (site, svc) in enumerate(targets)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        console.out("")
        return
    if errors:
        raise DeployError("logs: " + "; ".join(errors))
