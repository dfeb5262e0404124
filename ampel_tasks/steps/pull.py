"""Task pull: the image file onto transit and burst, through a reverse tunnel on each
host's one connection, all hosts at once."""
from __future__ import annotations

import os
import posixpath
import re
import shlex
import time
from typing import Optional


from ..config import console
from ..remote import dockerengine, registry, registryapi, registrypush, tunnel
from ..flow import run as runs, runrecord
from ..facts import space, state
from ..config.errors import DeployError
from ..flow.plan import Decision, Part
from ..facts.site import Site
from . import evidence, inputs


def registry_digest(r, site):
    """The digest the registry serves for this version (None when --dry cannot know it)."""
    if r.outcome.pushed_digest:
        return r.outcome.pushed_digest
    if r.target.reused_digest:  # the running image: its file is already on the hosts
        return r.target.reused_digest
    reg = r.settings.registry
    if not registryapi.reachable(reg):
        return None
    return registryapi.served_digest(reg["address"], reg["port"], r.settings.image["name"], site.image_tag)


def _pull_evidence(r, site):
    digest = registry_digest(r, site)
    hosts, left = {}, {}
    for host in site.pull_hosts:
        have = host.fact(image_file_command(site.singularity_dir(), site.image_path), user=r.settings.service_user)
        hosts[host.name], left[host.name] = parse_image_file(have.stdout) if have is not None else (None, [])
    return {"digest": digest, "hosts": hosts, "left": left}


# what an interrupted pull leaves (_pull_one's temporary names), removed under the lock
PARTS = ".*.simg.part-*"


def image_file_command(directory: str, image: str) -> str:
    """A host's image file for this version: its recorded digest, and the parts an
    interrupted pull left."""
    return (f"cd {shlex.quote(directory)} 2>/dev/null && for f in {PARTS}; do test -e \"$f\" && echo \"left $f\"; "
            f"done; test -f {shlex.quote(image)} && cat {shlex.quote(image + '.digest')} 2>/dev/null; true")


def parse_image_file(out: str) -> tuple:
    """(the file's digest, "" when there is no file or no digest; the parts left) (pure)."""
    words = out.split()
    return next((w for w in words if w.startswith("sha256:")), ""), [w for w in words if w.startswith(".")]


def _image_bytes(r, site) -> tuple:
    """(layers, unpacked bytes) of the image to pull: the registry's manifest of it,
    else of the running image (the estimate while it is still to be built), else,
    with the registry stopped, the running image file's size on the service host."""
    s, reg = r.settings, r.settings.registry
    running = state.running_image(r)
    tags = [site.image_tag] + ([running["tag"]] if running else [])
    layers = []
    if registryapi.reachable(reg):
        for tag in tags:
            layers = space.layer_sizes(registryapi.manifest(reg["address"], reg["port"], s.image["name"], tag))
            if layers:
                break
    path = state.running_manifest(r).get("image_file")
    if not layers and path:
        res = site.service_host.fact(f"stat -c %s {shlex.quote(path)}", user=s.service_user)
        if res is not None and res.ok and res.stdout.strip().isdigit():
            layers = [("estimate", int(res.stdout.strip()))]
    unpacked = 0
    try:
        client = dockerengine.engine(r)
        for tag in tags:
            img = dockerengine.image_or_none(client, f"{s.image['name']}:{tag}")
            if img is not None:
                unpacked = int(img.attrs.get("Size") or 0)
                break
    except DeployError:
        pass
    return layers, unpacked or 2 * sum(size for _, size in layers)


def space_problems(r, site, hosts) -> list:
    """Each filesystem of each host that a pull of this image would overfill (read-only)."""
    return [x for host in hosts for x in space.problems(host.name, space_needs(r, site, host) or {})]


def space_needs(r, site, host):
    """{mount point: {need, free, parts, paths}} of a pull of this image on `host` (the
    one estimate the plan and `doctor` use); None when it cannot be estimated or read."""
    layers, unpacked = _image_bytes(r, site)
    if not layers:
        return None
    directory = site.singularity_dir()
    res = host.fact(space.fact_command(directory), user=r.settings.service_user)
    if res is None or not res.ok:
        return None
    df, cached = space.parse_fact(res.stdout)
    return space.needs(layers, cached, unpacked, directory, space.TMP_DIR, df)


def _require_space(r, site, names) -> None:
    names = sorted(names)
    found = r.evidence(f"pull space {' '.join(names)}", lambda: space_problems(r, site, [r.host(n) for n in names]),
                       after=inputs("pull"))
    if found:
        raise DeployError("; ".join(found))


def decide_pull(r):
    """Decision for `pull`: does each host have the image file with the registry's digest?"""
    site = Site(r)
    ev = evidence(r, "pull", lambda: _pull_evidence(r, site))
    if ev is not None and ev["digest"] is None:
        # an image still to be built: each host without its file will pull about what the running one took
        _require_space(r, site, [h for h, d in ev["hosts"].items() if d == ""])
    if ev is None or ev["digest"] is None or None in ev["hosts"].values():
        return None
    todo = [h for h, d in ev["hosts"].items() if d != ev["digest"]]
    left = [f"{h}:{f}" for h, files in ev["left"].items() if h not in todo for f in files]
    # (a pull's own leftovers go with it; others are removed without pulling)
    also = f"; removes what an interrupted pull left: {', '.join(left)}" if left else ""
    if not todo:
        return Decision("pull", "skip", f"{site.image_file} with digest {ev['digest'][:19]} on "
                                        f"{', '.join(ev['hosts'])}{also}")
    _require_space(r, site, todo)
    return Decision("pull", "run", f"{site.image_file} missing or outdated on {', '.join(todo)}{also}", {"hosts": todo})


def parts(r):
    """A part per host with the `pull` role: it pulls where the decision names it (or
    could not decide: --dry, a digest not known yet), else holds the file already."""
    site = Site(r)
    d = decide_pull(r)
    ev = evidence(r, "pull", lambda: _pull_evidence(r, site)) or {"digest": None, "hosts": {}}
    if ev["digest"] is None and not r.dry:
        raise DeployError(f"the registry does not serve {site.pushed_ref}; run `invoke push --version {site.version}`")
    todo = set((d.data or {}).get("hosts", [])) if d is not None and d.action == "run" else set()
    return [Part(_host_decision(site, ev, host.name, d is None or host.name in todo), f"pull {host.name}", host.name,
                 doing=f"{site.pushed_ref} -> {site.image_path}", site=site, evidence=ev) for host in site.pull_hosts]


def _host_decision(site, ev, host: str, pulls: bool) -> Decision:
    if pulls:
        return Decision("pull", "run", f"{site.image_file} missing or outdated on {host}")
    return Decision("pull", "skip", f"{site.image_path} exists with digest {ev['digest'][:19]}")


def skipped(r, part: Part) -> None:
    """A host holding the image file: what an interrupted pull left beside it goes."""
    left = part.evidence.get("left", {}).get(part.host)
    if left:
        _remove_leftovers(r, part.site, r.host(part.host), left)
        console.note(f"removed what an interrupted pull left: {', '.join(left)}")


def act_together(r, parts) -> None:
    """Pull on every host that runs, all at once."""
    site, digest = parts[0].site, parts[0].evidence["digest"]
    todo = [r.host(p.host) for p in parts]
    if r.dry:
        for host in todo:
            _pull_one(r, site, host, digest)
        return
    # a reused image skips push: the registry it is pulled from may be stopped
    registry.ensure(dockerengine.engine(r), r.settings, False)
    _require_space(r, site, [h.name for h in todo])
    _pull_all(r, site, todo, digest)


def _pull_all(r, site, todo, digest) -> None:
    """Each host has its own connection and tunnel: pull on all of them at once; every
    host's error is reported, not the first one's alone."""
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(len(todo))
    futures = [pool.submit(_pull_one, r, site, host, digest) for host in todo]
    try:
        wait(futures)
    except KeyboardInterrupt:  # (only this thread hears it) end the pulls where they run
        for host in todo:
            _abandon_pull(r, site, host)
        raise
    finally:
        pool.shutdown(wait=True)
    errors = [f.exception() for f in futures if f.exception() is not None]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DeployError("; ".join(str(e) for e in errors))


def _part(site) -> str:
    return f".{site.image_file}.part-{os.getpid()}"


def _abandon_pull(r, site, host) -> None:
    """End this run's pull on the host and remove its temporary file (closing the
    connection would not end it: nothing there sends it a hangup)."""
    part = _part(site)
    pattern = shlex.quote("[.]" + part[1:].replace(".", "[.]"))
    user = r.settings.service_user
    # two commands: the pattern would match the shell that also names the file to remove
    host.change(f"pkill -u {shlex.quote(user)} -f {pattern}; sleep 0.5", user=user, warn=True, show=f"end the pull {part}")
    host.change(f"rm -f {shlex.quote(posixpath.join(site.singularity_dir(), part))}*",  # (and singularity's own)
                user=user, warn=True, show=f"remove {part}")


def _remove_leftovers(r, site, host, files: list) -> None:
    """Partial image files an interrupted pull left beside a current image file."""
    runrecord.lock(r)
    host.change(f"cd {shlex.quote(site.singularity_dir())} && rm -f -- {' '.join(map(shlex.quote, files))}",
                user=r.settings.service_user)


def _pull_one(r, site, host, digest):
    """One host's pull: tunnel up, pull to a temporary name, rename, record the digest."""
    s = r.settings
    user = s.service_user
    directory = site.singularity_dir()
    part = _part(site)
    pull_cmd = site.command(
        "pull", file=part, dir=directory, registry_port=s.registry["port"], image=s.image["name"], version=site.image_tag
    )
    cmd = (
        f"cd {shlex.quote(directory)} && rm -f {PARTS} && {pull_cmd} && "
        f"mv -f {shlex.quote(part)} {shlex.quote(site.image_file)} && "
        f"printf '%s\\n' {shlex.quote(digest or '<digest>')} > {shlex.quote(site.image_file + '.digest')}"
    )
    if not r.dry:
        cmd += f" && stat -c 'pulled-bytes %s' {shlex.quote(site.image_file)}"
    if r.dry:
        with tunnel.Tunnel(host, s.registry["port"], s.registry["address"], s.registry["port"]):
            host.change(cmd, user=user)
        runs.mark_changed(r, "pull", host.name)
        return
    t0 = time.time()
    with tunnel.Tunnel(host, s.registry["port"], s.registry["address"], s.registry["port"]):
        res = host.change(cmd, user=user, stream=True, warn=True, prefix=f"pull {host.name}: ")
    seconds = time.time() - t0
    if not res.ok:
        host.change(f"rm -f {shlex.quote(posixpath.join(directory, part))}", user=user, warn=True)
        r.row("pull", host.name, "failed", seconds)
        raise DeployError(f"on {host.name}: singularity pull of {site.pushed_ref} failed (exit {res.exited}: "
                          f"{pull_failure(res.stderr or res.stdout)}); no image file was left")
    size = _pulled_bytes(res.stdout)
    if size is not None:
        console.note(f"{host.name}: {site.image_file} {registrypush.mib(size)} MiB in {seconds:.0f} s "
                     f"({registrypush.rate(size, seconds)})")
    r.row("pull", host.name, "changed", seconds)
    runs.mark_changed(r, "pull", host.name)


def pull_failure(output: str) -> str:
    """What singularity said went wrong (pure): its first ERROR line (2.x prints
    "ERROR text" from its python helpers, "ERROR: text" from its shell), else the
    last line it printed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = next((line for line in lines if re.match(r"ERROR:? ", line)), lines[-1] if lines else "no output")
    return console.redact(re.sub(r"^ERROR:? ", "", said))[:240]


def _pulled_bytes(stdout: str) -> Optional[int]:
    """The image file's size from the pull command's last line (pure)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("pulled-bytes "):
            value = line.split()[1]
            return int(value) if value.isdigit() else None
    return None
