"""`invoke logs`: every replica of one or several services, merged, prefixed."""
from __future__ import annotations

import re
import sys
import threading

from . import console, stacklist
from .errors import DeployError

COLORS = ["36", "32", "35", "33", "34", "31"]


def known_services(r, site) -> list:
    s = r.settings
    res = site.service_host.read(s.commands["list"], user=s.service_user, warn=True)
    return sorted(stacklist.parse_list(res.stdout).get(s.stack["name"], {}))


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


def follow(r, site, services, replica=None, grep=None, follow=True):
    s = r.settings
    _check_filters(grep, replica)
    known = known_services(r, site)
    if not services:
        raise DeployError(f"name at least one service; running services: {', '.join(known) or 'none'}")
    unknown = [x for x in services if x not in known]
    if unknown:
        raise DeployError(f"unknown service {unknown[0]}; running services: {', '.join(known) or 'none'}")
    host = site.service_host
    errors = []

    def one(i, svc):
        cmd = site.command("logs", stack=s.stack["name"], service=svc)
        if replica is not None:
            cmd += f" {int(replica)}"
        if follow:
            cmd += " -f"
        lines = _Lines(grep, replica, COLORS[i % len(COLORS)])
        try:
            host.read(cmd, user=s.service_user, warn=True, on_line=lines.emit)
        except Exception as exc:  # reported once below
            errors.append(f"{svc}: {exc}")

    threads = [threading.Thread(target=one, args=(i, svc), daemon=True) for i, svc in enumerate(services)]
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
