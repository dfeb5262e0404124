"""Before `deploy/up`: everything that can be checked is checked.

`deploy/up` begins with `singularity-stack rm`, so a stack that then cannot start
leaves the site without a running stack (dokku/dokku#5435). singularity-stack
0.2.2 refuses, after `rm`, a variable the environment lacks, an image file it
would have to pull (no hub here), a bind source that does not exist, a secret
readable by group or others. Each is found here first, from the stack file and
the env file as deploy/up will pass them, and the running stack stays untouched.
"""
from __future__ import annotations

import posixpath
import re
import shlex
from typing import Dict, List

from ..config import console
from . import envfile, stacklist
from ..config.errors import DeployError
from .health import expected


def image_file(name: str) -> str:
    """The file singularity-stack 0.2.2 looks for: org/name:tag -> name-tag.simg."""
    base = name.split("/")[-1]
    if ":" in base:
        base, tag = base.split(":", 1)
        base += f"-{tag}"
    return base + ".simg"


def needs(doc: dict, env: Dict[str, str]) -> tuple:
    """(missing variables, files that must exist, secrets that must be private) (pure)."""
    missing: List[str] = []
    doc = envfile.expand(doc, env, "the stack file", missing)
    files, secrets = set(), {}
    declared = doc.get("secrets") or {}
    for name, svc in (doc.get("services") or {}).items():
        if svc.get("image"):
            files.add(("image file", posixpath.join(env.get("SINGULARITY_CACHEDIR", ""), image_file(svc["image"]))))
        for vol in svc.get("volumes") or []:
            if isinstance(vol, str) and ":" in vol and vol.split(":")[0].startswith("/"):
                files.add((f"bind source of {name}", vol.split(":")[0]))
            elif isinstance(vol, dict) and vol.get("type") == "bind":
                files.add((f"bind source of {name}", vol["source"]))
        for secret in svc.get("secrets") or []:
            if secret not in declared:
                missing.append(f"secret {secret} (used by {name}, not declared)")
            else:
                secrets[secret] = declared[secret]["file"]
    return missing, sorted(files), secrets


LISTENER = re.compile(r"^LISTEN\s+\d+\s+\d+\s+\S*:(\d+)\s+\S+\s*(.*)$")
HOLDER = re.compile(r'\("([^"]*)",pid=(\d+)')


def listeners(ss_text: str) -> Dict[int, list]:
    """{port: [(command, pid)]} from `ss -Hltnp`; an empty list when the process is
    not visible (another user's, as `ss` runs as the service user)."""
    out: Dict[int, list] = {}
    for line in ss_text.splitlines():
        m = LISTENER.match(line.strip())
        if m:
            out.setdefault(int(m.group(1)), []).extend(
                (cmd, int(pid)) for cmd, pid in HOLDER.findall(m.group(2)))
    return out


def descendants(ps_text: str, roots, host_ns: str = "") -> set:
    """The pids of the instances `roots` from `ps -e -o pid=,ppid=,pidns=`: their
    descendants, and every process in the PID namespaces these are in other than
    the host's `host_ns` (what `run instance://` starts joins the instance's
    namespaces as a child of the caller, a nanny)."""
    children: Dict[int, list] = {}
    pidns: Dict[int, str] = {}
    for line in ps_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
            if len(parts) == 3 and parts[2].isdigit():
                pidns[int(parts[0])] = parts[2]
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    namespaces = {pidns[p] for p in seen if p in pidns} - {host_ns}
    return seen | {p for p, ns in pidns.items() if ns in namespaces}


def foreign_ports(wanted: Dict[int, str], held: Dict[int, list], stack: set) -> List[str]:
    """Ports the new stack needs that a process outside the running stack holds
    (pure): `rm` would not free them, and the new service could not start."""
    problems = []
    for port, service in sorted(wanted.items()):
        if port not in held:
            continue
        holders = held[port]
        if not holders:
            problems.append(f"port {port} (of {service}) is held by another user's process")
        elif not any(pid in stack for _, pid in holders):
            cmd, pid = holders[0]
            problems.append(f"port {port} (of {service}) is held by {cmd} (pid {pid}), which is not part of the "
                            "running stack")
    return problems


def port_problems(r, site, doc: dict, env: Dict[str, str]) -> List[str]:
    wanted = {port: name for name, (_, ports) in expected(doc, env).items() for port in ports}
    if not wanted:
        return []
    s = r.settings
    res = site.stack_host.read(f"{s.commands['instances']} 2>/dev/null; echo @@ss; ss -Hltnp; echo @@ps; "
                                 "readlink /proc/$$/ns/pid; ps -e -o pid=,ppid=,pidns=", user=s.service_user, warn=True)
    head, _, rest = res.stdout.partition("@@ss\n")
    ss_text, _, ps_text = rest.partition("@@ps\n")
    own, _, ps_text = ps_text.partition("\n")
    roots = [i["pid"] for i in stacklist.parse_instances(head).values()]
    stack = descendants(ps_text, roots, host_ns=own.strip().strip("pid:[]"))
    return foreign_ports(wanted, listeners(ss_text), stack)


def stack_env(r, site, values: Dict[str, str]) -> Dict[str, str]:
    """The environment singularity-stack expands the stack file with: the env file's
    values and what the service user's shell has."""
    user = r.settings.service_user
    return {**values, "SINGULARITY_CACHEDIR": site.singularity_dir(), "HOME": f"/home/{user}", "USER": user}


def check(r, site) -> List[str]:
    """Problems that would stop the new stack after `rm`, read on the stack's host."""
    s = r.settings
    host = site.stack_host
    text = host.read_file(site.env_file, user=site.src_user) or ""
    env = stack_env(r, site, envfile.read(text))
    doc = site.stack_doc() or {}
    missing, files, secrets = needs(doc, env)
    problems = [f"{site.env_file} {p}" for p in envfile.problems(text)]
    problems += [f"{m} is not defined by {site.env_file}" for m in missing]
    if not missing:
        problems += port_problems(r, site, doc, env)
    paths = [p for _, p in files] + [posixpath.join(site.dryrun_dir, f) for f in secrets.values()]
    script = "; ".join(f"stat -c '%a %n' {shlex.quote(p)} 2>/dev/null || echo 'missing {p}'" for p in paths)
    res = host.read(script or "true", user=s.service_user, warn=True)
    return problems + file_problems(res.stdout, files, secrets, site.dryrun_dir)


def file_problems(stat_text: str, files, secrets: Dict[str, str], dryrun_dir: str) -> List[str]:
    """From `stat -c '%a %n'` lines: files that do not exist, secrets that do not
    exist or that group or others may read (pure)."""
    found = {}
    for line in stat_text.splitlines():
        if line.startswith("missing ") or " " not in line:
            continue
        mode, path = line.split(" ", 1)
        found[path] = int(mode, 8)
    problems = [f"{what} {path} does not exist" for what, path in files if path not in found]
    for name, rel in secrets.items():
        path = posixpath.join(dryrun_dir, rel)
        if path not in found:
            problems.append(f"secret {name} ({path}) does not exist")
        elif found[path] & 0o077:
            problems.append(f"secret {name} ({path}) has mode {found[path]:o}; singularity-stack refuses "
                            "a secret readable by group or others")
    return problems


def require(r, site) -> None:
    if r.dry:  # earlier steps would have changed what this reads
        console.note("then, before deploy/up: the preflight of the stack file, env file, image files, binds, secrets")
        return
    problems = check(r, site)
    if problems:
        raise DeployError("not starting deploy/up, which would first stop the running stack: "
                          + "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else ""))
