"""Task doctor: is this machine, its ticket, its keys and the hosts ready to deploy?

One line per check, each failure with its fix; exit 1 when something would stop
a deploy. Needs no version: it reads, never changes anything.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import List, Optional


from ..facts import build, stackinputs, state
from ..config import console
from ..remote import dockerengine, localports, registry, ssh
from ..flow import run as runs
from ..config.errors import DeployError
from ..facts.site import Site
from ..remote.registrypush import mib
from ..steps import pull


@dataclass
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"
        return text + (f"; fix: {self.fix}" if self.fix and not self.ok else "")


def runtime_matches(configured: str, reported: str) -> bool:
    """Whether `singularity --version` fits ampel.runtime (pure): "singularity 2.x"
    wants 2.*, "singularity 3.x" wants 3.*, "apptainer ..." an apptainer."""
    reported = reported.strip().lower()
    if configured.lower().startswith("apptainer"):
        return reported.startswith("apptainer")
    m = re.match(r"singularity (\d+)", configured.lower())
    v = re.search(r"(\d+)\.\d+", reported)
    return bool(m and v and not reported.startswith("apptainer") and m.group(1) == v.group(1))


def host_script(s) -> str:
    """One command as the service user: the runtime's versions."""
    return (f"echo \"@@singularity $(singularity --version 2>&1 | head -1)\"; "
            f"echo \"@@stack $(singularity-stack --version 2>&1 | head -1)\"")


def host_checks(r, name: str) -> List[Check]:
    s = r.settings
    host = r.host(name)
    try:
        host.connection()
    except DeployError as exc:
        return [Check(f"{name}: ssh", False, exc.text, "see the line above; `ssh " + host.spec.hostname + "` must work")]
    out = [Check(f"{name}: ssh", True, f"reached {host.spec.hostname}, host key known")]
    sudo = host.read(f"sudo -n -u {shlex.quote(s.service_user)} true", warn=True)
    if not sudo.ok:
        last = (sudo.stderr.strip().splitlines() or ["refused"])[-1]
        return out + [Check(f"{name}: sudo", False, f"sudo -n -u {s.service_user}: {last}",
                            f"a sudoers rule letting {s.operator} act as {s.service_user} without a password")]
    out.append(Check(f"{name}: sudo", True, f"sudo -n -u {s.service_user} works"))
    res = host.read(host_script(s), user=s.service_user, warn=True)
    facts = dict(line[2:].split(" ", 1) for line in res.stdout.splitlines() if line.startswith("@@") and " " in line)
    sing, stack = facts.get("singularity", "").strip(), facts.get("stack", "").strip()
    out.append(Check(f"{name}: runtime", runtime_matches(s.runtime, sing), f"{sing or 'no singularity'}, "
                     f"{stack or 'no singularity-stack'} (profile: {s.runtime})",
                     "pick the profile's command forms for this runtime (config/examples/runtime-*.yaml)"))
    if name in {h.name for h in s.hosts_with("pull")}:
        out.append(space_check(r, host))
    return out


def space_check(r, host) -> Check:
    """Whether the running deployment's image would fit a pull again: the plan's own
    estimate (steps/pull.py), per filesystem the pull writes to."""
    if not state.adopt_running(r):
        return Check(f"{host.name}: space", True, "no deployment recorded: no image to estimate a pull from")
    needs = pull.space_needs(r, Site(r), host)
    if not needs:
        return Check(f"{host.name}: space", True, "a pull cannot be estimated (no registry manifest or image file)")
    bad = [e for e in needs.values() if e["need"] > e["free"]]
    detail = "; ".join(f"{mib(e['free'])} MiB free in {', '.join(sorted(e['paths']))}, {mib(e['need'])} MiB wanted "
                       f"for a pull ({', '.join(e['parts'])})" for e in (bad or needs.values()))
    return Check(f"{host.name}: space", not bad, detail, "free space there (`invoke prune`)")


def archive_check(r) -> Optional[Check]:
    """The archive on transit answers its read user; its schema, size and free space
    (as the running deployment's sources have it)."""
    if r.settings.archive_host is None:
        return None
    name = r.settings.archive_host.name
    if not state.adopt_running(r):
        return Check(f"{name}: archive", True, "no deployment recorded yet: nothing to ask")
    a = stackinputs.archive_status(r)
    if not a["answers"]:
        return Check(f"{name}: archive", False, a["problem"], "read `invoke logs archive`; `invoke up --same` starts transit's stack again")
    return Check(f"{name}: archive", True, f"answers, schema {a['version']}, {a['bytes'] >> 20} MiB, "
                                          f"{a['free'] >> 20} MiB free under {a['path']}")


def ticket_check(r) -> Optional[Check]:
    s = r.settings
    if not any(ssh.uses_kerberos(s, h) for h in s.hosts.values()):
        return None
    if not ssh.kerberos_ticket():
        return Check("kerberos", False, "no valid ticket", "run `kinit`")
    p = subprocess.run(["klist"], capture_output=True, text=True)
    m = re.search(r"^\S+\s+\S+\s+(\S+\s+\S+)\s+krbtgt/", p.stdout, re.M)
    return Check("kerberos", True, f"ticket valid until {m.group(1)}" if m else "ticket valid")


def registry_check(r) -> Check:
    """The registry's port: free, or held by the registry container itself, listening
    on loopback by itself (a Docker port mapping is reachable from the network on
    engines before the fix of moby/moby#45610)."""
    import docker


    s = r.settings
    reg = s.registry
    where = f"{reg['address']}:{reg['port']}"
    holder = "" if localports.port_free(reg["address"], reg["port"]) else localports.port_holder(reg["port"])
    try:
        c = dockerengine.client().containers.get(reg["name"])
    except (DeployError, docker.errors.NotFound):  # no engine (its own check says so), or no registry yet
        c = None
    problem = registry.check_container(c.attrs, s) if c is not None else None
    if problem:
        return Check("registry port", False, problem, "")
    if c is not None and (c.attrs.get("HostConfig") or {}).get("PortBindings"):
        return Check("registry port", False, f"{where} is published through Docker's port mapping",
                     registry.exposed_warning(s))
    ours = c is not None and holder.startswith(f"pid {(c.attrs.get('State') or {}).get('Pid')} ")
    return Check("registry port", not holder or ours,
                 f"{where} " + ((f"is held by {holder}" + (f" (container {reg['name']})" if ours else ""))
                                if holder else "is free"),
                 "stop what holds it, or set ampel.registry.port")


def local_checks(r) -> List[Check]:
    s = r.settings
    out = []
    try:
        dockerengine.client()
        out.append(Check("docker", True, "the local engine answers"))
    except DeployError as exc:
        out.append(Check("docker", False, exc.text, "start dockerd, or set DOCKER_HOST"))
    out.append(registry_check(r))
    try:
        found = build.repos(s.image_dir, s)
    except (DeployError, OSError) as exc:
        return out + [Check("deploy keys", False, str(getattr(exc, "text", exc)), "see `invoke keys --help`")]
    for repo in found:
        try:
            build.remote_commits([repo], s.image_dir, s)
            out.append(Check(f"deploy key {repo.key.name}", True, f"reads {repo.url}"))
        except DeployError as exc:
            out.append(Check(f"deploy key {repo.key.name}", False, exc.text,
                             f"add {repo.key.name}.pub as a deploy key of {repo.url.split(':', 1)[-1]}"))
    return out


def doctor(c):
    """`invoke doctor` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c)
    checks = [x for x in [ticket_check(r)] if x]
    for name in r.settings.hosts:
        checks += host_checks(r, name)
    if all(x.ok for x in checks):  # (the archive is asked through the hosts just checked)
        checks += [x for x in [archive_check(r)] if x]
    checks += local_checks(r)
    for check in checks:
        console.out(check.line())
    failed = [x for x in checks if not x.ok]
    if failed:
        raise DeployError(f"{len(failed)} of {len(checks)} checks failed: " + ", ".join(x.what for x in failed))
