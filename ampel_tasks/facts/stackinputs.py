"""What transit's stack runs from, and whether it changed since the stack started.

deploy/up on transit restarts postgres and graphite, so it runs only when one of
its inputs changed: the stack file, the values of the dryrun.env variables the
stack file uses, the image files it names (size and time), its secrets (by hash).
They are recorded on transit (ampel.paths.state_dir/stack-inputs.json, private to
ampel) after each start that passed the gate, and compared at the next plan.
ARCHIVE_PATH is read too: an archive directory that is new or empty is refused
unless the operator says --new-archive.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import archive, envfile, health, migrations, preflight, schemasql
from ..config import console
from ..config.errors import DeployError
from .site import Site

RECORD = "stack-inputs.json"


@dataclass(frozen=True)
class Inputs:
    now: dict  # what the stack would run from now
    recorded: Optional[dict]  # what it was last started from (None: no record)
    problems: List[str]  # the running stack's, now (health.quick)
    services: List[str]
    archive: archive.Archive
    path: archive.PathState
    secret_files: Dict[str, str]  # {name: file relative to the dryrun directory}


def fingerprint(stack_name: str, stack_text: str, env: Dict[str, str], secrets: Dict[str, str],
                images: Dict[str, str]) -> dict:
    """The inputs as recorded (pure): the stack file's hash, the values of the env
    variables it uses, the secrets' hashes, the image files' size and time."""
    used = sorted({m.group(1).strip("{}") for m in envfile.VAR.finditer(stack_text)})
    return {"stack file": {"name": stack_name, "sha256": hashlib.sha256(stack_text.encode()).hexdigest()},
            "env": {k: env[k] for k in used if k in env}, "secrets": dict(sorted(secrets.items())),
            "images": dict(sorted(images.items()))}


def changes(recorded: dict, now: dict) -> List[str]:
    """What differs between the record and now, named for the plan (pure)."""
    out = []
    if (recorded.get("stack file") or {}).get("sha256") != now["stack file"]["sha256"]:
        out.append(now["stack file"]["name"])
    for kind, label in (("env", ""), ("secrets", "secret "), ("images", "image file ")):
        old, new = recorded.get(kind) or {}, now[kind]
        out += [f"{label}{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return out


def read_command(dryrun_dir: str, secret_files: Dict[str, str], images: List[str], record: str, path: str) -> str:
    """One read on transit: the secrets' hashes, the image files' size and time, the
    record, and what ARCHIVE_PATH holds."""
    parts = [f"cd {shlex.quote(dryrun_dir)} 2>/dev/null || cd /", "echo @@SECRETS"]
    parts += [f"echo {shlex.quote(n)} $(sha256sum < {shlex.quote(f)} 2>/dev/null | cut -d' ' -f1)"
              for n, f in sorted(secret_files.items())]
    parts += ["echo @@IMAGES"] + [f"stat -c '%n %s %Y' {shlex.quote(i)} 2>/dev/null" for i in images]
    parts += ["echo @@RECORD", f"cat {shlex.quote(record)} 2>/dev/null; echo", "echo @@PATH", archive.path_command(path)]
    return "; ".join(parts) + "; true"


def parse_read(text: str) -> tuple:
    """({secret: sha256 or ""}, {image file name: "size mtime"}, record or None, PathState) (pure)."""
    sections = {}
    for block in text.split("@@")[1:]:
        head, _, body = block.partition("\n")
        sections[head.strip()] = body
    secrets = dict((l.split(" ", 1) + [""])[:2] for l in sections.get("SECRETS", "").splitlines() if l.strip())
    images = {posixpath.basename(l.split(" ", 1)[0]): l.split(" ", 1)[1]
              for l in sections.get("IMAGES", "").splitlines() if " " in l}
    try:
        record = json.loads(sections.get("RECORD", "").strip() or "null")
    except ValueError:
        record = None
    return ({k: v.strip() for k, v in secrets.items()}, images, record if isinstance(record, dict) else None,
            archive.parse_path(sections.get("PATH", "")))


def gather(r, site) -> Optional[Inputs]:
    """transit's inputs now, the record, the running stack's problems, ARCHIVE_PATH."""
    host, s = site.stack_host, r.settings
    text = host.read_file(site.stack_file, user=site.src_user)
    env_text = host.read_file(site.env_file, user=site.src_user)
    on_host = text is not None and env_text is not None
    if not on_host:  # no tree on transit yet (src makes it): the operator's checkout says
        text, env_text = _local(s)
        if text is None:
            return None
    doc, values = site.stack_doc(text) or {}, envfile.read(env_text)
    env = preflight.stack_env(r, site, values)
    a = archive.describe(doc, env, site.stack_name, s.archive["service"], f"{site.stack_file} on {host.name}")
    _, files, secret_files = preflight.needs(doc, env)
    images = [p for what, p in files if what == "image file"]
    res = host.read(read_command(site.dryrun_dir, secret_files, images, record_path(r), a.path),
                    user=s.service_user, warn=True)
    secrets, stats, record, path = parse_read(res.stdout)
    now = fingerprint(posixpath.basename(site.stack_file), text, values, secrets, stats)
    problems = health.quick(r, site, doc, env_text) if on_host else []  # (no tree there: nothing of it runs)
    return Inputs(now, record, problems, sorted(doc.get("services") or {}), a, path, secret_files)


def _local(s) -> tuple:
    """transit's stack file and dryrun.env as the operator's checkout has them, or (None, None)."""
    stack, env = s.source_dir / s.archive["stack_file"], s.source_dir / s.source["env_file"]
    if not (stack.is_file() and env.is_file()):
        return None, None
    return stack.read_text(), env.read_text()


def record_path(r) -> str:
    return posixpath.join(r.settings.paths["state_dir"], RECORD)


def refuse_new_archive(ev: Inputs, host: str, allowed: bool) -> None:
    """An ARCHIVE_PATH that is missing or empty would start an empty archive: refused
    unless --new-archive; one with files but no cluster is refused always."""
    path = ev.path
    if path.state == "other":
        raise DeployError(f"ARCHIVE_PATH {ev.archive.path} on {host} holds files but no PostgreSQL cluster "
                          "(no PG_VERSION): not starting the archive on it; look at what it holds")
    if path.state in ("missing", "empty") and not allowed:
        what = "does not exist" if path.state == "missing" else "is empty"
        raise DeployError(f"ARCHIVE_PATH {ev.archive.path} on {host} {what}: the archive would start empty there, "
                          "without any of the alerts archived so far (a changed ARCHIVE_PATH in dryrun.env? a disk "
                          "not mounted?); on a new site, deploy with --new-archive")


def prepare(r, site, ev: Optional[Inputs]) -> None:
    """A new archive's directory (--new-archive): made private to ampel, as postgres wants it."""
    if ev is not None and ev.path.state == "missing":
        site.stack_host.change(f"install -d -m 0700 {shlex.quote(ev.archive.path)}", user=r.settings.service_user)


def after_start(r, site, ev: Optional[Inputs]) -> None:
    """After the gate: the archive answers its read user; then the inputs the start was
    decided on are recorded (read now if they could not be then)."""
    ev = ev or gather(r, site)
    if ev is None:
        raise DeployError(f"{site.stack_file} or {site.env_file} on {site.stack_host.name} went away")
    answer = probe(r, site, ev)
    remember(r, ev, answer)
    console.note(f"archive {ev.archive.database} on {site.stack_host.name}:{ev.archive.port} answers "
                 f"{ev.archive.read_user}: schema {answer.version}, {answer.size / 2**20:.0f} MiB")
    s, host = r.settings, site.stack_host
    host.change(f"install -d -m 0700 {shlex.quote(s.paths['state_dir'])}", user=s.service_user)
    host.write_file(record_path(r), (json.dumps(ev.now, indent=1) + "\n").encode(), user=s.service_user,
                    mode="0600", show=f"record what {site.stack_name}'s stack started from in {record_path(r)}")


def remember(r, ev: Inputs, answer: archive.Answer) -> None:
    """The archive as this run leaves it, for the deployment's manifest."""
    r.outcome.archive = {"version": answer.version, "bytes": answer.size, "path": ev.archive.path}


def probe(r, site, ev: Inputs, wait: Optional[float] = None) -> archive.Answer:
    """A query as the read user, inside the archive's instance; retried while postgres
    may still be starting (within ampel.health.timeout); a refusal is one line."""
    a, host = ev.archive, site.stack_host
    secret = ev.secret_files.get(a.read_secret, f"secrets/{a.read_secret}.txt")
    inner = in_archive(site, a, archive.probe_psql(a))
    cmd = f"cd {shlex.quote(site.dryrun_dir)} && " + archive.with_password(secret, inner)
    deadline = time.time() + (r.settings.health["timeout"] if wait is None else wait)
    while True:
        res = host.read(cmd, user=r.settings.service_user, warn=True)
        answer = archive.parse_probe(res.ok, res.stdout)
        problem = archive.login_problem(a, answer, host.name)
        if problem is None:
            return answer
        if "refuses" in problem or time.time() >= deadline:
            raise DeployError(f"{problem}; {health.after_failure(r, site)}" if wait is None else problem)
        time.sleep(1)


def in_archive(site, a: archive.Archive, command: str) -> str:
    """`command` inside the archive's running instance (ampel.commands.exec_instance)."""
    return site.command("exec_instance", instance=f"instance://{a.instance}", command=command)


def read_schema(r, site, a: archive.Archive) -> migrations.ArchiveSchema:
    """The archive's versions, server, size, tables and the tool's ledger: psql inside its instance."""
    cmd = in_archive(site, a, schemasql.psql(a, "-At "))
    res = site.stack_host.read(cmd + " 2>&1", user=r.settings.service_user, data=migrations.STATE_SCRIPT.encode(),
                               warn=True)
    return migrations.parse_state(res.stdout)


def archive_status(r) -> Optional[dict]:
    """The archive now, for status and doctor (the running deployment's version must be
    set): where it is, whether it answers its read user, its schema and size, the free
    space under ARCHIVE_PATH. None on a site without an archive host."""
    if r.settings.archive_host is None:
        return None
    site = Site(r, archive=True)
    out = {"host": site.stack_host.name, "path": None, "answers": False, "version": None, "bytes": None,
           "free": None, "problem": ""}
    try:
        ev = gather(r, site)
        if ev is None:
            return {**out, "problem": f"{site.stack_file} is not on {site.stack_host.name}"}
        out.update(path=ev.archive.path, bytes=ev.path.bytes, free=ev.path.free)
        answer = probe(r, site, ev, wait=0)
        out.update(answers=True, version=answer.version)
    except DeployError as exc:
        out["problem"] = exc.text.split("; ")[0]
    return out


def archive_size(r) -> list:
    """[(host, ARCHIVE_PATH, bytes)] of the archive as transit's stack was last started
    (its recorded inputs), for prune's listing; [] when nothing is recorded."""
    h = r.settings.archive_host
    if h is None:
        return []
    host = r.host(h.name)
    text = host.read_file(record_path(r), user=r.settings.service_user)
    try:
        path = (json.loads(text or "{}").get("env") or {}).get("ARCHIVE_PATH")
    except ValueError:
        path = None
    if not path:
        return []
    res = host.read(archive.path_command(path), user=r.settings.service_user, warn=True)
    return [(h.name, path, archive.parse_path(res.stdout).bytes)]
