"""Task secrets: the secrets the stack file names, copied to burst when missing or
changed, private, never printed."""
from __future__ import annotations

import hashlib
import posixpath
import shlex

from invoke import task

from .. import console, run as runs
from ..errors import DeployError
from ..helptext import DRY_HELP, VERBOSE_HELP, VERSION_HELP
from ..plan import Decision, proceed
from ..site import Site
from . import evidence


@task(help={"verbose": VERBOSE_HELP, "version": VERSION_HELP, "dry": DRY_HELP})
def secrets(c, version=None, dry=False, verbose=False):
    """Copy the secrets the stack file names into <dryrun dir>/secrets on burst.

    Only secrets that are missing or differ (compared by hash) are copied, from
    the operator's ampel.secrets.local_dir; files are created 0600 and owned by
    ampel, the directory 0700, both checked afterwards. Values are never printed
    nor put on a command line.
    """
    r = runs.start(c, version=version, dry=dry)
    do_secrets(r)


def _local_secrets(local_dir, wanted: dict) -> dict:
    """{name: bytes} of the wanted secrets the operator holds, each registered so
    that nothing prints it."""
    local = {}
    for name, rel in wanted.items():
        path = local_dir / posixpath.basename(rel)
        if path.is_file():
            local[name] = path.read_bytes()
            console.register_secret(local[name].decode(errors="replace"))
    return local


def parse_remote(stdout: str, user: str) -> tuple:
    """({file: sha256}, {file: what is wrong}) from the listing on burst (pure): each
    secret private to `user` (600), the directory 700."""
    remote, wrong = {}, {}
    for line in stdout.splitlines():
        if line.startswith("DIR "):
            _, owner, mode = line.split()
            if owner != user or mode != "700":
                wrong["secrets/"] = f"directory owner {owner}, mode {mode}"
            continue
        digest, owner, mode, rel = line.split(" ", 3)
        remote[rel] = digest
        if owner != user or mode != "600":
            wrong[rel] = f"owner {owner}, mode {mode}"
    return remote, wrong


def to_copy(wanted: dict, local: dict, remote: dict, wrong: dict, missing) -> list:
    """[(name, file)] to copy (pure): what differs from the operator's copy or is not
    private; `missing(name, file)` is raised for a secret held nowhere."""
    todo = []
    for name, rel in wanted.items():
        if name not in local:
            if rel not in remote:
                raise missing(name, rel)
            continue
        if remote.get(rel) != hashlib.sha256(local[name]).hexdigest() or rel in wrong:
            todo.append((name, rel))
    if "secrets/" in wrong and not todo:
        todo.append(("the secrets directory", "secrets/"))
    return todo


def _secrets_evidence(r, site):
    s, host = r.settings, site.service_host
    doc = site.stack_doc()
    if doc is None:
        return None
    wanted = {name: spec["file"] for name, spec in (doc.get("secrets") or {}).items()}
    local_dir = s.local_secrets_dir
    local = _local_secrets(local_dir, wanted)
    quoted = " ".join(shlex.quote(rel) for rel in wanted.values())
    res = host.fact(
        f"cd {shlex.quote(site.dryrun_dir)} 2>/dev/null && for f in {quoted}; do test -f \"$f\" && "
        f"echo \"$(sha256sum < \"$f\" | cut -d' ' -f1) $(stat -c '%U %a' \"$f\") $f\"; done; "
        "stat -c 'DIR %U %a' secrets 2>/dev/null; true",
        user=s.service_user)
    if res is None:
        return None
    remote, wrong = parse_remote(res.stdout, s.service_user)

    def missing(name, rel):
        return DeployError(f"secret {name} ({rel}) is neither in {local_dir} nor on {host.name}; put it in "
                           f"{local_dir / posixpath.basename(rel)}")

    todo = to_copy(wanted, local, remote, wrong, missing)
    return {"wanted": wanted, "local": local, "todo": todo, "quoted": quoted, "wrong": wrong}


def decide_secrets(r):
    """Decision for `secrets`: those named in the stack file, missing or different on burst."""
    site = Site(r)
    ev = evidence(r, "secrets", lambda: _secrets_evidence(r, site))
    if ev is None:
        return None
    if ev["todo"]:
        why = [f"{n} ({ev['wrong'][rel]})" if rel in ev["wrong"] else n for n, rel in ev["todo"]]
        return Decision("secrets", "run", f"missing, different or readable by others on {site.service_host.name}: {', '.join(why)}")
    return Decision("secrets", "skip", f"all {len(ev['wanted'])} secrets present and unchanged in {site.dryrun_dir}")


def do_secrets(r):
    """Copy missing or changed secrets and check owner and modes afterwards."""
    site = Site(r)
    s = r.settings
    host = site.service_host
    user = s.service_user
    dryrun = site.dryrun_dir
    d = decide_secrets(r)
    ev = evidence(r, "secrets", lambda: _secrets_evidence(r, site))
    if d is None or ev is None:
        console.step("secrets", f"copy the secrets that {site.stack_file} names, where missing or changed, into {dryrun}/secrets (0600, owner {user})")
        return
    todo = ev["todo"]
    if "secrets" in r.force:  # copy every secret we hold, changed or not
        todo = [(n, rel) for n, rel in ev["wanted"].items() if n in ev["local"]]
    if proceed(r, "secrets", d, f"copying {', '.join(n for n, _ in todo)} to {host.name}:{dryrun}"):
        host.change(f"mkdir -p {shlex.quote(dryrun)} && install -d -m 0700 {shlex.quote(posixpath.join(dryrun, 'secrets'))}", user=user)
        for name, rel in todo:
            if rel == "secrets/":
                continue  # the directory: made 0700 just above
            target = posixpath.join(dryrun, rel)
            host.change(f"install -d -m 0700 {shlex.quote(posixpath.dirname(target))}", user=user)
            host.write_file(target, ev["local"][name], user=user, mode="0600",
                            show=f"write {target} (mode 0600, content not shown)")
        r.changed.add("secrets")
    if r.dry:
        return
    check = host.read(f"cd {shlex.quote(dryrun)} && stat -c '%U %a %n' secrets {ev['quoted']}", user=user, warn=True)
    for line in check.stdout.splitlines():
        owner, mode, path = line.split(" ", 2)
        want = "700" if path == "secrets" else "600"
        if owner != user or mode != want:
            raise DeployError(f"on {host.name}: {dryrun}/{path} is owned by {owner} with mode {mode}; expected {user} and {want}")
