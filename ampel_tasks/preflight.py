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

from . import envfile
from .errors import DeployError

VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def expand(value, env: Dict[str, str], where: str, missing: List[str]):
    """singularity-stack's expansion: $VAR and ${VAR}, again on the result; an
    unknown variable is noted (it would be a KeyError after `rm`)."""
    if isinstance(value, list):
        return [expand(v, env, where, missing) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, env, f"{where}.{k}", missing) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    for _ in range(20):
        names = [m.group(1).strip("{}") for m in VAR.finditer(value)]
        unknown = [n for n in names if n not in env]
        if unknown:
            missing.extend(f"${n} (in {where})" for n in unknown)
            return value
        new = VAR.sub(lambda m: env[m.group(1).strip("{}")], value)
        if new == value:
            break
        value = new
    return value


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
    doc = expand(doc, env, "the stack file", missing)
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


def check(r, site) -> List[str]:
    """Problems that would stop the new stack after `rm`, read on the service host."""
    from .remote import stack_doc

    s = r.settings
    host = site.service_host
    env = envfile.read(host.read_file(site.env_file, user=site.src_user) or "")
    env.update(SINGULARITY_CACHEDIR=site.singularity_dir(), HOME=f"/home/{s.service_user}", USER=s.service_user)
    missing, files, secrets = needs(stack_doc(r, site) or {}, env)
    problems = [f"{m} is not defined by {site.env_file}" for m in missing]
    paths = [p for _, p in files] + [posixpath.join(site.dryrun_dir, f) for f in secrets.values()]
    script = "; ".join(f"stat -c '%a %n' {shlex.quote(p)} 2>/dev/null || echo 'missing {p}'" for p in paths)
    res = host.run(script or "true", user=s.service_user, mutating=False, warn=True)
    found = {}
    for line in res.stdout.splitlines():
        if line.startswith("missing "):
            continue
        mode, path = line.split(" ", 1)
        found[path] = int(mode, 8)
    for what, path in files:
        if path not in found:
            problems.append(f"{what} {path} does not exist")
    for name, rel in secrets.items():
        path = posixpath.join(site.dryrun_dir, rel)
        if path not in found:
            problems.append(f"secret {name} ({path}) does not exist")
        elif found[path] & 0o077:
            problems.append(f"secret {name} ({path}) has mode {found[path]:o}; singularity-stack refuses "
                            "a secret readable by group or others")
    return problems


def require(r, site) -> None:
    if r.dry:  # earlier steps would have changed what this reads
        from . import console

        console.note("then, before deploy/up: the preflight of the stack file, env file, image files, binds, secrets")
        return
    problems = check(r, site)
    if problems:
        raise DeployError("not starting deploy/up, which would first stop the running stack: "
                          + "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else ""))
