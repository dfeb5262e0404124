"""The archive on transit, as transit's stack file defines it: its database, users,
the secrets holding their passwords, its port and ARCHIVE_PATH; whether it answers
(a query as the read user, inside the archive's instance, over TCP as a client
would), its schema version and size; what ARCHIVE_PATH holds.

Each fact is a command built here and a pure parser beside it.
"""
from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Dict, Optional

from ..config.errors import DeployError
from .health import SECRETS_IN, service_environment
from .envfile import expand
from .preflight import image_file
from .stacklist import instance_name

DATA_DIR = "/var/lib/postgresql/data"  # where the postgres image keeps its cluster (PGDATA)
INITDB_DIR = "/docker-entrypoint-initdb.d"  # what the entrypoint runs on an empty data directory
SOCKET_DIRS = ("/run/postgresql", "/var/run/postgresql")  # the server's socket directory in the image


@dataclass(frozen=True)
class Archive:
    service: str
    instance: str
    database: str
    port: int
    path: str  # ARCHIVE_PATH: the cluster's directory on transit
    read_user: str
    read_secret: str  # the secret (by its stack file name) holding the read user's password
    write_user: str
    write_secret: str
    superuser: str = "postgres"  # POSTGRES_USER: owns the schema; local socket logins are trusted
    socket_dir: str = ""  # the host directory bound at the server's socket directory ("" for none)
    image_file: str = ""  # the image file the archive runs (its pg_dump, pg_restore)
    initdb: str = ""  # the host directory bound at the entrypoint's initdb directory (the migrations)


def _secret_of(env: Dict[str, str], key: str, where: str) -> str:
    value = env.get(f"{key}_FILE", "")
    if not value.startswith(SECRETS_IN):
        raise DeployError(f"{where}: {key}_FILE is not a secret under {SECRETS_IN} ({value or 'not set'})")
    return value[len(SECRETS_IN):]


def describe(doc: dict, env: Dict[str, str], stack: str, service: str, where: str) -> Archive:
    """The archive service of transit's stack file, variables from dryrun.env (pure)."""
    missing: list = []
    svc = expand((doc.get("services") or {}).get(service), env, where, missing)
    if not isinstance(svc, dict):
        raise DeployError(f"{where} has no service {service} (ampel.archive.service)")
    if missing:
        raise DeployError(f"{where}: {missing[0]} is not defined by dryrun.env")
    senv = service_environment(svc)
    path = _bound_at(svc, (DATA_DIR,))
    ports = [str(p).split(":")[-1] for p in svc.get("ports") or []]
    if not path or not ports or not ports[0].isdigit():
        raise DeployError(f"{where}: service {service} binds no data directory at {DATA_DIR} or publishes no port")
    return Archive(service, instance_name(stack, service, 0), senv.get("POSTGRES_DB", "postgres"), int(ports[0]), path,
                   senv.get("ARCHIVE_READ_USER", ""), _secret_of(senv, "ARCHIVE_READ_USER_PASSWORD", where),
                   senv.get("ARCHIVE_WRITE_USER", ""), _secret_of(senv, "ARCHIVE_WRITE_USER_PASSWORD", where),
                   senv.get("POSTGRES_USER", "postgres"), _bound_at(svc, SOCKET_DIRS),
                   posixpath.join(env.get("SINGULARITY_CACHEDIR", ""), image_file(svc.get("image") or "")),
                   _bound_at(svc, (INITDB_DIR,)))


def _bound_at(svc: dict, targets) -> str:
    """The host side of the service's volume bound at one of `targets` ("" for none)."""
    return next((v.split(":")[0] for v in svc.get("volumes") or []
                 if isinstance(v, str) and v.split(":")[1:2] and v.split(":")[1].rstrip("/") in targets), "")


PROBE_SQL = ("SELECT 'version=' || coalesce((SELECT alert_version FROM versions ORDER BY version_id DESC LIMIT 1), '-'); "
             "SELECT 'bytes=' || pg_database_size(current_database())")


def probe_psql(a: Archive) -> str:
    """The probe's psql, run inside the archive's instance (ampel.commands.exec_instance):
    a login as the read user over TCP, as a client would, reading the schema version
    and the database's size."""
    return (f"psql -h 127.0.0.1 -p {a.port} -U {shlex.quote(a.read_user)} -d {shlex.quote(a.database)} "
            f"-AtX -v ON_ERROR_STOP=1 -c {shlex.quote(PROBE_SQL)}")


def with_password(secret_file: str, command: str) -> str:
    """`command` with the password read from the secret's file into its environment
    (the value is never on a command line); run in the dryrun directory."""
    return f"PGPASSWORD=\"$(cat {shlex.quote(secret_file)})\" PGCONNECT_TIMEOUT=5 {command} 2>&1"


@dataclass(frozen=True)
class Answer:
    ok: bool
    version: str = ""
    size: int = 0
    error: str = ""


def parse_probe(ok: bool, text: str) -> Answer:
    """What the probe printed (pure): the version and size, or psql's own error."""
    values = dict(line.split("=", 1) for line in text.splitlines() if re.match(r"^(version|bytes)=", line))
    if ok and "bytes" in values:
        return Answer(True, values.get("version", "-"), int(values["bytes"]))
    said = [l.strip() for l in text.splitlines() if l.strip()]
    return Answer(False, error=(said[-1] if said else "no answer"))


def login_problem(a: Archive, answer: Answer, host: str) -> Optional[str]:
    """The one line a failed login becomes, naming the secret where the password is refused (pure)."""
    if answer.ok:
        return None
    if "password authentication failed" in answer.error:
        return (f"the archive on {host} refuses {a.read_user}'s password: secret {a.read_secret} is not the "
                f"password that user was created with ({answer.error})")
    return f"the archive on {host} does not answer a query as {a.read_user} on port {a.port}: {answer.error}"


def path_command(path: str) -> str:
    """Whether ARCHIVE_PATH holds a cluster, and its size and free space (one read)."""
    q = shlex.quote(path)
    return (f"if [ -f {q}/PG_VERSION ]; then echo state=cluster; elif [ -d {q} ] && [ -n \"$(ls -A {q})\" ]; "
            f"then echo state=other; elif [ -d {q} ]; then echo state=empty; else echo state=missing; fi; "
            f"echo bytes=$(du -sb {q} 2>/dev/null | cut -f1); "
            f"echo free=$(df -B1 --output=avail {shlex.quote(posixpath.dirname(path.rstrip('/')) or '/')} "
            "2>/dev/null | tail -1)")


@dataclass(frozen=True)
class PathState:
    state: str  # cluster | other | empty | missing
    bytes: int
    free: int


def parse_path(text: str) -> PathState:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def num(key):
        v = values.get(key, "").strip()
        return int(v) if v.isdigit() else 0
    return PathState(values.get("state", "missing").strip(), num("bytes"), num("free"))
