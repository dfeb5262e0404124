"""Task secrets: the secrets each stack file names, copied to its host (burst,
transit) when missing or changed, private, never printed; a secret both hosts use
(the archive's read and write passwords) holds the same value on both."""
from __future__ import annotations

import hashlib
import posixpath
import shlex


from ..config import console
from ..flow import run as runs
from ..config.errors import DeployError, Refusal
from ..flow.plan import Decision, Part, host_label, per_host
from ..facts.site import stack_sites
from . import inputs


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


def held_command(dryrun_dir: str, files) -> str:
    """What a host holds of the secrets' files (under the dryrun directory): each one's
    sha256, owner and mode, and the directory's owner and mode (`parse_remote` reads it)."""
    quoted = " ".join(shlex.quote(rel) for rel in files)
    return (f"cd {shlex.quote(dryrun_dir)} 2>/dev/null && for f in {quoted}; do test -f \"$f\" && "
            f"echo \"$(sha256sum < \"$f\" | cut -d' ' -f1) $(stat -c '%U %a' \"$f\") $f\"; done; "
            "stat -c 'DIR %U %a' secrets 2>/dev/null; true")


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
    s, host = r.settings, site.stack_host
    doc = site.stack_doc()
    if doc is None:
        return None
    wanted = {name: spec["file"] for name, spec in (doc.get("secrets") or {}).items()}
    local_dir = s.local_secrets_dir
    local = _local_secrets(local_dir, wanted)
    res = host.fact(held_command(site.dryrun_dir, wanted.values()), user=s.service_user)
    if res is None:
        return None
    remote, wrong = parse_remote(res.stdout, s.service_user)

    def missing(name, rel):
        return Refusal(f"secret {name} ({rel}) is neither in {local_dir} nor on {host.name}; put it in "
                           f"{local_dir / posixpath.basename(rel)}")

    todo = to_copy(wanted, local, remote, wrong, missing)
    quoted = " ".join(shlex.quote(rel) for rel in wanted.values())
    return {"wanted": wanted, "local": local, "todo": todo, "quoted": quoted, "wrong": wrong, "remote": remote}


def secrets_evidence(r, site):
    key = "secrets evidence" + (f" {site.stack_host.name}" if site.archive else "")
    return r.evidence(key, lambda: _secrets_evidence(r, site), after=inputs("secrets"))


def held(ev: dict) -> dict:
    """{secret: sha256} a host will hold after the copy (pure): the operator's copy
    where there is one, else the host's own."""
    out = {}
    for name, rel in ev["wanted"].items():
        if name in ev["local"]:
            out[name] = hashlib.sha256(ev["local"][name]).hexdigest()
        elif rel in ev["remote"]:
            out[name] = ev["remote"][rel]
    return out


def differing(evs: dict) -> list:
    """Secrets two hosts both use that would hold different values (pure)."""
    values = {host: held(ev) for host, ev in evs.items()}
    names = sorted({n for v in values.values() for n in v})
    return [n for n in names if len({v[n] for v in values.values() if n in v}) > 1]


def decide_secrets(r):
    """Decision for `secrets`, per stack host: those its stack file names, missing or
    different there; refused when a secret both hosts use would differ."""
    sites = stack_sites(r)
    evs = {site.stack_host.name: secrets_evidence(r, site) for site in sites}
    known = {h: ev for h, ev in evs.items() if ev is not None}
    bad = differing(known) if len(known) > 1 else []
    if bad:
        raise DeployError(f"secret {bad[0]} differs between {' and '.join(known)} and the operator holds no copy of it "
                          f"in {r.settings.local_secrets_dir}: the archive's users and their clients must use one "
                          "value; put the value the archive's users were created with there")
    return per_host("secrets", {site.stack_host.name: _decide_on(site, evs[site.stack_host.name]) for site in sites})


def _decide_on(site, ev):
    if ev is None:
        return None
    if ev["todo"]:
        why = [f"{n} ({ev['wrong'][rel]})" if rel in ev["wrong"] else n for n, rel in ev["todo"]]
        return Decision("secrets", "run", f"missing, different or readable by others on {site.stack_host.name}: {', '.join(why)}")
    return Decision("secrets", "skip", f"all {len(ev['wanted'])} secrets present and unchanged in {site.dryrun_dir}")


def parts(r):
    """A part per stack host (refused first when a secret both hosts use would differ);
    --force secrets copies every secret the operator holds, changed or not."""
    decide_secrets(r)
    for site in stack_sites(r):
        ev = secrets_evidence(r, site)
        label = host_label("secrets", site.stack_host.name, r.settings)
        yield Part(_decide_on(site, ev), label, site.stack_host.name, doing=_doing(r, site, ev), site=site, evidence=ev)


def _todo(r, ev) -> list:
    if "secrets" in r.force:
        return [(n, rel) for n, rel in ev["wanted"].items() if n in ev["local"]]
    return ev["todo"]


def _doing(r, site, ev) -> str:
    if ev is None:
        return (f"copy the secrets that {site.stack_file} names, where missing or changed, into "
                f"{site.dryrun_dir}/secrets (0600, owner {r.settings.service_user})")
    return f"copying {', '.join(n for n, _ in _todo(r, ev))} to {site.stack_host.name}:{site.dryrun_dir}"


def act(r, part: Part) -> None:
    """Copy the part's secrets (0600 in a 0700 directory), then check owner and modes."""
    site, ev, user = part.site, part.evidence, r.settings.service_user
    host, dryrun = site.stack_host, site.dryrun_dir
    if ev is None:  # (--dry: what it would copy cannot be read yet)
        return
    host.change(f"mkdir -p {shlex.quote(dryrun)} && install -d -m 0700 {shlex.quote(posixpath.join(dryrun, 'secrets'))}", user=user)
    for name, rel in _todo(r, ev):
        if rel == "secrets/":
            continue  # the directory: made 0700 just above
        target = posixpath.join(dryrun, rel)
        host.change(f"install -d -m 0700 {shlex.quote(posixpath.dirname(target))}", user=user)
        host.write_file(target, ev["local"][name], user=user, mode="0600",
                        show=f"write {target} (mode 0600, content not shown)")
    runs.mark_changed(r, "secrets", host.name)
    _check_modes(r, part)


def _check_modes(r, part: Part) -> None:
    """Owner and modes of what the host holds after the copy (a skip read them already:
    its decision holds only when each is private to the service user)."""
    site, ev, user = part.site, part.evidence, r.settings.service_user
    if r.dry or ev is None:
        return
    host, dryrun = site.stack_host, site.dryrun_dir
    check = host.read(f"cd {shlex.quote(dryrun)} && stat -c '%U %a %n' secrets {ev['quoted']}", user=user, warn=True)
    for line in check.stdout.splitlines():
        owner, mode, path = line.split(" ", 2)
        want = "700" if path == "secrets" else "600"
        if owner != user or mode != want:
            raise DeployError(f"on {host.name}: {dryrun}/{path} is owned by {owner} with mode {mode}; expected {user} and {want}")
