"""Tasks pull, src, db, secrets, up, logs: the runbook's steps on transit and burst."""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shlex
import time
from typing import Optional

from invoke import task

from . import console, envfile, preflight, registry, run as runs, sources, state
from .errors import DeployError
from .helptext import DRY_HELP, VERBOSE_HELP, VERSION_HELP
from .publish import push


def _site(r):
    from .site import Site

    return Site(r)


def registry_digest(r, site):
    """The digest the registry serves for this version (None when --dry cannot know it)."""
    from . import registry

    if r.done.get("push"):
        return r.done["push"]
    if r.cache.get("reused_digest"):  # the running image: its file is already on the hosts
        return r.cache["reused_digest"]
    from .publish import registry_up

    reg = r.settings.registry
    if not registry_up(reg):
        return None
    return registry.served_digest(reg["address"], reg["port"], r.settings.image["name"], site.image_tag)


@task(pre=[push], help={"verbose": VERBOSE_HELP, "version": VERSION_HELP, "dry": DRY_HELP})
def pull(c, version=None, dry=False, verbose=False):
    """Pull the image onto transit and burst through an ssh -R tunnel.

    For each host with the `pull` role: opens the runbook's reverse tunnel
    (OpenSSH `ssh -R 5000:localhost:5000`, ExitOnForwardFailure, started only once
    it is up), becomes the service user and, in the singularity directory, runs
    `SINGULARITY_NOHTTPS=1 singularity pull` into a temporary name, renamed when
    complete, with the registry digest recorded beside it. A host whose image
    file already has that digest is skipped.
    """
    r = runs.start(c, version=version, dry=dry)
    do_pull(r)


def _pull_evidence(r, site):
    digest = registry_digest(r, site)
    hosts, left = {}, {}
    for host in site.pull_hosts:
        image = site.image_path_on(host)
        have = host.fact(f"cd {shlex.quote(site.singularity_dir(host))} 2>/dev/null && for f in {PARTS}; do "
                         f"test -e \"$f\" && echo \"left $f\"; done; test -f {shlex.quote(image)} && "
                         f"cat {shlex.quote(image + '.digest')} 2>/dev/null; true", user=r.settings.service_user)
        lines = [] if have is None else have.stdout.split()
        hosts[host.name] = None if have is None else next((w for w in lines if w.startswith("sha256:")), "")
        left[host.name] = [w for w in lines if w.startswith(".")]
    return {"digest": digest, "hosts": hosts, "left": left}


# what an interrupted pull leaves (_pull_one's temporary names), removed under the lock
PARTS = ".*.simg.part-*"


def _image_bytes(r, site) -> tuple:
    """(layers, unpacked bytes) of the image to pull: the registry's manifest of it,
    else of the running image (the estimate while it is still to be built), else,
    with the registry stopped, the running image file's size on the service host."""
    from . import dockerengine, space
    from .image import running_image
    from .publish import registry_up

    s, reg = r.settings, r.settings.registry
    running = running_image(r)
    tags = [site.image_tag] + ([running["tag"]] if running else [])
    layers = []
    if registry_up(reg):
        for tag in tags:
            layers = space.layer_sizes(registry.manifest(reg["address"], reg["port"], s.image["name"], tag))
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
    from . import space

    layers, unpacked = _image_bytes(r, site)
    if not layers:
        return []
    out = []
    for host in hosts:
        directory = site.singularity_dir(host)
        res = host.fact(space.fact_command(directory), user=r.settings.service_user)
        if res is None or not res.ok:
            continue
        df, cached = space.parse_fact(res.stdout)
        out += space.problems(host.name, space.needs(layers, cached, unpacked, directory, space.TMP_DIR, df))
    return out


def _require_space(r, site, names) -> None:
    names = sorted(names)
    found = r.evidence(f"pull space {' '.join(names)}", lambda: space_problems(r, site, [r.host(n) for n in names]),
                       after=("push",))
    if found:
        raise DeployError("; ".join(found))


def decide_pull(r):
    """Decision for `pull`: does each host have the image file with the registry's digest?"""
    from .plan import Decision

    site = _site(r)
    ev = r.evidence("pull evidence", lambda: _pull_evidence(r, site), after=("push",))
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


def do_pull(r):
    """Pull the image file on every host that lacks it, all at once."""
    site = _site(r)
    ev = r.evidence("pull evidence", lambda: _pull_evidence(r, site), after=("push",)) or {"digest": None, "hosts": {}}
    digest = ev["digest"]
    if digest is None and not r.dry:
        raise DeployError(f"the registry does not serve {site.pushed_ref}; run `invoke push --version {site.version}`")
    todo = []
    for host in site.pull_hosts:
        have = ev["hosts"].get(host.name)
        if digest and have == digest and "pull" not in r.force:
            left = ev.get("left", {}).get(host.name)
            also = f"; removed what an interrupted pull left: {', '.join(left)}" if left else ""
            if left:
                _remove_leftovers(r, site, host, left)
            console.skip(f"pull {host.name}", f"{site.image_path_on(host)} exists with digest {digest[:19]}{also}")
            r.row("pull", host.name, "skipped", 0.0)
        else:
            todo.append(host)
    if not todo:
        return
    if not r.dry:
        from . import dockerengine

        # a reused image skips push: the registry it is pulled from may be stopped
        registry.ensure(dockerengine.engine(r), r.settings, False)
        _require_space(r, site, [h.name for h in todo])
    state.lock(r)
    for host in todo:
        console.step(f"pull {host.name}", f"{site.pushed_ref} -> {site.image_path_on(host)}")
    if r.dry:
        for host in todo:
            _pull_one(r, site, host, digest)
        return
    # each host has its own connection and tunnel: pull on all of them at once
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
    if errors:  # every host's, not the first one's alone
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
    host.run(f"pkill -u {shlex.quote(user)} -f {pattern}; sleep 0.5", user=user, warn=True, show=f"end the pull {part}")
    host.run(f"rm -f {shlex.quote(posixpath.join(site.singularity_dir(host), part))}*",  # (and singularity's own)
             user=user, warn=True, show=f"remove {part}")


def _remove_leftovers(r, site, host, files: list) -> None:
    """Partial image files an interrupted pull left beside a current image file."""
    state.lock(r)
    host.run(f"cd {shlex.quote(site.singularity_dir(host))} && rm -f -- {' '.join(map(shlex.quote, files))}",
             user=r.settings.service_user)


def _pull_one(r, site, host, digest):
    """One host's pull: tunnel up, pull to a temporary name, rename, record the digest."""
    from .hosts import Tunnel

    s = r.settings
    user = s.service_user
    directory = site.singularity_dir(host)
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
        with Tunnel(host, s.registry["port"], s.registry["address"], s.registry["port"]):
            host.run(cmd, user=user)
        r.changed.add("pull")
        return
    t0 = time.time()
    with Tunnel(host, s.registry["port"], s.registry["address"], s.registry["port"]):
        res = host.run(cmd, user=user, stream=True, warn=True, prefix=f"pull {host.name}: ")
    seconds = time.time() - t0
    if not res.ok:
        host.run(f"rm -f {shlex.quote(posixpath.join(directory, part))}", user=user, warn=True)
        r.row("pull", host.name, "failed", seconds)
        raise DeployError(f"on {host.name}: singularity pull of {site.pushed_ref} failed (exit {res.exited}: "
                          f"{pull_failure(res.stderr or res.stdout)}); no image file was left")
    size = _pulled_bytes(res.stdout)
    if size is not None:
        console.note(f"{host.name}: {site.image_file} {registry.mib(size)} MiB in {seconds:.0f} s "
                     f"({registry.rate(size, seconds)})")
    r.row("pull", host.name, "changed", seconds)
    r.changed.add("pull")


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


@task(pre=[pull], help={"verbose": VERBOSE_HELP, "version": VERSION_HELP, "dry": DRY_HELP})
def src(c, version=None, dry=False, verbose=False):
    """Copy the writable Ampel sources out of the image into AMPEL_SRC on burst.

    Runs `singularity-stack volume init <image file> /Ampel $AMPEL_SRC` as the
    operator (the runbook: "as your normal user", not ampel), only when AMPEL_SRC
    does not exist yet. An existing source tree is never overwritten.
    """
    r = runs.start(c, version=version, dry=dry)
    do_src(r)


def _src_evidence(r, site):
    host = site.service_host
    res = host.fact(f"stat -c %U {shlex.quote(site.ampel_src)}", user=site.src_user)
    if res is None:
        return None
    exists = res.ok
    copies = sources.gather(host, site, r.settings, site.version) if exists else {}
    running = state.running_manifest(r)
    if running.get("version") == site.version and running.get("ampel_src") == site.ampel_src:
        # the running version is what runs: its recorded commits, wherever upstream has moved since
        sources.want_recorded(copies, running.get("sources") or {}, site.version, r.settings.source["tag_pattern"])
    return {"exists": exists, "owner": res.stdout.strip() if exists else "", "copies": copies,
            "added": sources.added_repos(copies, _image_repos(r, site)) if exists else []}


def src_evidence(r):
    """The host copies and what upstream wants of them, read once per run (plan, src, test)."""
    return r.evidence("src evidence", lambda: _src_evidence(r, _site(r)))


def _image_repos(r, site) -> list:
    """The repos under /Ampel of the image this deployment runs: its labels (built
    or reused), else, for an image still to be built, the recipe's clone lines."""
    labels = state.image_labels(r, site)
    repos = list(json.loads(labels.get(f"{r.settings.image['label_prefix']}.repos", "{}") or "{}"))
    built = r.cache.get("image evidence") or {}
    return repos or [repo.name for repo in built.get("found", [])]


def decide_src(r):
    """Decision for `src`: AMPEL_SRC exists (made from the image once, owned by the
    configured user), holds every repo of the image, and every host copy is at the
    commit wanted for the version; work in a copy is never lost."""
    from .plan import Decision

    site = _site(r)
    host = site.service_host
    ev = src_evidence(r)
    if ev is None:
        return None
    if not ev["exists"]:
        return Decision("src", "run", f"{site.ampel_src} does not exist on {host.name}: copy it out of the image as "
                                      f"{site.src_owner}, then bring each repo to the commits wanted for {site.version}")
    problem = sources.owner_problem(ev["owner"], site.src_owner, site.ampel_src)
    moves, refusals = sources.plan(ev["copies"], state.running_version(r))
    if problem or refusals:
        raise DeployError(f"on {host.name}, " + "; ".join(([problem] if problem else []) +
                                                          [f"{site.ampel_src}: {x}" for x in refusals]))
    why = [f"{c.name} {c.head[:10]} -> {c.wanted[:10]} ({c.wanted_ref})" for c in moves]
    why += [f"{name} added by the image: copy it out of the image" for name in ev["added"]]
    if why:
        return Decision("src", "run", "; ".join(why), {"moves": moves, "added": ev["added"]})
    return Decision("src", "skip", f"{len(ev['copies'])} host copies in {site.ampel_src} at the commits wanted "
                                   f"for {site.version}")


def do_src(r):
    """AMPEL_SRC out of the image (once) and repos the image added, as the owner of
    AMPEL_SRC; then every repo moved to the commit wanted for the version."""
    from .plan import proceed

    site = _site(r)
    host = site.service_host
    d = decide_src(r)
    if not proceed(r, "src", d, d.reason if d is not None else f"{site.ampel_src} on {host.name}"):
        return
    data = d.data if d is not None else {}
    moves, added = data.get("moves", []), data.get("added", [])
    ev = r.cache.get("src evidence")
    fresh = not (ev or {}).get("exists")  # missing, or unknown under --dry
    if fresh:
        host.run(site.command("volume_init", image_file=site.image_path, ampel_src=site.ampel_src),
                 user=site.src_user, stream=True)
    for name in added:
        host.run(site.command("volume_add", image_file=site.image_path, repo=name, ampel_src=site.ampel_src),
                 user=site.src_user)
    if (fresh or added) and r.dry:
        console.note(f"then: each repo brought to the commits wanted for {site.version}")
    elif fresh or added:
        moves = _moves_after_copy(r, site, set(added) if not fresh else None)
    _move(r, site, moves)
    r.changed.add("src")


def _moves(r, site, copies) -> list:
    """The copies that move to their wanted commit; an error naming every one that may not."""
    moves, refusals = sources.plan(copies, state.running_version(r))
    if refusals:
        raise DeployError(f"on {site.service_host.name}, {site.ampel_src}: " + "; ".join(refusals))
    return moves


def _move(r, site, moves) -> None:
    for c in moves:
        for cmd in sources.move_commands(site, r.settings, c):
            site.service_host.run(cmd, user=site.src_user)
        console.note(f"{c.name}: {c.head[:10]} -> {c.wanted[:10]} ({c.wanted_ref})")


def restore_sources(r, site, target: dict) -> None:
    """A rollback's sources: each host copy back at the commit the target ran from
    (recorded in its manifest), never discarding work."""
    copies = sources.gather(site.service_host, site, r.settings, target["version"])
    sources.want_recorded(copies, target.get("sources") or {}, target["version"])
    _move(r, site, _moves(r, site, copies))


def _moves_after_copy(r, site, only=None):
    """The moves of copies just copied out of the image (all, or `only` these):
    fresh, so they hold nothing to lose."""
    copies = sources.gather(site.service_host, site, r.settings, site.version)
    for c in copies.values():
        c.known = c.known or only is None or c.name in only
    return _moves(r, site, copies)


@task(pre=[src], help={
    "verbose": VERBOSE_HELP,
    "version": VERSION_HELP,
    "new_db": "start a new live database for this version even if no schema change asks for one",
    "dry": DRY_HELP,
})
def db(c, version=None, new_db=False, dry=False, verbose=False):
    """Point dryrun.env at this version; start a new live database when necessary.

    Always sets AMPEL_TAG and AMPEL_SRC. A new live database is necessary with
    --new-db, when the schema marker (ampel.source.schema_marker) differs from the
    running sources', or when MONGO_PATH names no existing directory; then, as
    ampel, creates <mongo live dir>/<version> and sets MONGO_PATH and GROUP_NAME
    (ampel-<version>). The edit keeps every other line byte for byte, writes a
    temporary file, keeps dryrun.env.bak-<timestamp> and renames. A database
    directory is never deleted.
    """
    r = runs.start(c, version=version, dry=dry)
    do_db(r, new_db=new_db)


def _db_evidence(r, site):
    text = site.service_host.read_file(site.env_file, user=site.src_user)
    if text is None:
        return None
    _refuse_env(f"{site.env_file} on {site.service_host.name}, ", envfile.problems(text))
    values = envfile.read(text)
    new_db = bool(r.options.get("new_db"))
    running = state.running_manifest(r).get("env") or {}
    # the live database continues: the running deployment's, whatever this tree's copy says
    live = {k: running[k] for k in ("MONGO_PATH", "GROUP_NAME") if running.get(k)} or values
    necessary, reason = new_db_needed(r, site, site.service_host, live, new_db)
    changes = {"AMPEL_TAG": site.image_tag, "AMPEL_SRC": site.ampel_src}
    resumed = _used_before(r, site) if necessary and not new_db else None
    if resumed:  # back to a database an earlier deployment wrote: its group resumes from its offsets
        changes.update({k: resumed["env"][k] for k in ("MONGO_PATH", "GROUP_NAME")})
    elif necessary:
        changes.update({"MONGO_PATH": site.mongo_path, "GROUP_NAME": site.group_name})
    else:
        changes.update({k: live[k] for k in ("MONGO_PATH", "GROUP_NAME") if live.get(k)})
    _require_defined(r, site, {**values, **changes})
    return {"text": text, "values": values, "new_db": necessary and not resumed, "reason": reason,
            "resumed": resumed, "new_text": envfile.update(text, changes), "changes": changes}


def _require_defined(r, site, values: dict) -> None:
    """Every $VAR of the stack file defined by the env file as db will leave it: found
    by the plan, before tag commits the file (the preflight checks it again)."""
    doc = stack_doc(r, site)
    missing = preflight.needs(doc, preflight.stack_env(r, site, values))[0] if doc else []
    _refuse_env("", [f"{m} is not defined by {site.env_file} on {site.service_host.name}" for m in missing])


def _refuse_env(where: str, problems: list) -> None:
    """One line for what is wrong with the env file, found by the plan."""
    if problems:
        raise DeployError(f"{where}{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + "; fix the file: a deploy would stop the stack and fail to start it")


def _used_before(r, site):
    """The newest deployment that wrote the live database this version's would be
    (an existing directory), or None."""
    if not site.service_host.exists(site.mongo_path, user=r.settings.service_user):
        return None
    return next((m for m in state.State(r).manifests()
                 if (m.get("env") or {}).get("MONGO_PATH") == site.mongo_path and (m.get("env") or {}).get("GROUP_NAME")),
                None)


def decide_db(r):
    """Decision for `db`: dryrun.env values and whether a new live database is necessary."""
    from .plan import Decision

    site = _site(r)
    ev = r.evidence("db evidence", lambda: _db_evidence(r, site), after=("src",))
    if ev is None:
        return None
    if ev["resumed"]:
        used = ev["resumed"]
        back = (f"back to the live database {used['env']['MONGO_PATH']} that {used['version']} wrote (consumer group "
                f"{used['env']['GROUP_NAME']} resumes from its offsets): {ev['reason']}")
        return Decision("db", "run" if ev["new_text"] != ev["text"] else "skip",
                        back if ev["new_text"] != ev["text"] else f"dryrun.env already uses it; {back}")
    if ev["new_db"]:
        return Decision("db", "run", f"new live database {site.mongo_path}: {ev['reason']}")
    if ev["new_text"] != ev["text"]:
        changed = [k for k, v in ev["changes"].items() if ev["values"].get(k) != v]
        return Decision("db", "run", f"{ev['reason']}; set {', '.join(changed)} in dryrun.env")
    return Decision("db", "skip", f"{ev['reason']}; dryrun.env already has AMPEL_TAG={site.image_tag}")


def do_db(r, new_db=False):
    """Set dryrun.env's values for this version; a new live database when necessary."""
    from .plan import proceed

    site = _site(r)
    s = r.settings
    host = site.service_host
    if new_db:
        r.options["new_db"] = True
        r.cache.pop("db evidence", None)
    d = decide_db(r)
    ev = r.evidence("db evidence", lambda: _db_evidence(r, site), after=("src",))
    if d is None or ev is None:
        if not r.dry:
            raise DeployError(f"on {host.name}: {site.env_file} does not exist; run `invoke src --version {site.version}`")
        console.step("db", f"set AMPEL_TAG={site.image_tag}, AMPEL_SRC={site.ampel_src} in {site.env_file}; "
                     f"if a new live database is necessary: mkdir {site.mongo_path}, MONGO_PATH, GROUP_NAME={site.group_name}")
        host.run(f"mkdir -p {shlex.quote(site.mongo_path)}", user=s.service_user)
        host.run(f"update {site.env_file}: AMPEL_TAG, AMPEL_SRC[, MONGO_PATH, GROUP_NAME] (backup kept)")
        r.changed.add("db")
        return
    if not proceed(r, "db", d):
        return
    if ev["new_db"]:
        r.cache["new_db"] = True
        listing = host.fact(f"ls -A {shlex.quote(site.mongo_path)} 2>/dev/null | head -1", user=s.service_user)
        if listing is not None and listing.stdout.strip() and ev["values"].get("MONGO_PATH") != site.mongo_path:
            raise DeployError(
                f"on {host.name}: {site.mongo_path} exists and is not empty; it may hold another deployment's "
                "data. Move it aside yourself or point ampel.env.mongo_path elsewhere"
            )
        host.run(f"mkdir -p {shlex.quote(site.mongo_path)}", user=s.service_user)
    text, new = ev["text"], ev["new_text"]
    if new == text:
        return
    if r.dry:
        console.diff(envfile.diff(text, new, site.env_file))
    host.write_file(site.env_file, new, user=site.src_user, backup=True, mode="0644", show=f"update {site.env_file} (backup kept)")
    r.changed.add("db")
    if not r.dry:
        console.note(f"updated {site.env_file}: " + ", ".join(
            f"{k}={v}" for k, v in ev["changes"].items() if ev["values"].get(k) != v))


def new_db_needed(r, site, host, values, new_db):
    """(necessary?, reason) for a new live database, from dryrun.env and the host."""
    if new_db:
        return True, "--new-db"
    current = values.get("MONGO_PATH", "")
    if current == site.mongo_path and host.exists(current, user=r.settings.service_user):
        return False, f"MONGO_PATH is already {current}"
    if not current or not host.exists(current, user=r.settings.service_user):
        return True, f"MONGO_PATH {current or '(unset)'} does not exist on {host.name}"
    changed = schema_changed(r, site, host)
    if changed:
        return True, changed
    return False, f"keeping the live database {current} (no schema change; pass --new-db for a fresh one)"


def schema_changed(r, site, host):
    """The runbook's "changed the structure of the database": the schema marker file
    (ampel.source.schema_marker) differs from the running deployment's (its manifest
    records the file's digest; older manifests: the file in their own tree)."""
    running = state.running_version(r)
    if not running or running == site.version:
        return None
    manifest = state.running_manifest(r)
    old = manifest.get("schema_marker")
    old_src = manifest.get("ampel_src")
    if not old and (not old_src or old_src == site.ampel_src):
        return None
    new = marker_digest(site, site.ampel_src)
    if old is None:
        old = marker_digest(site, old_src)
    if old and new and old != new:
        return f"{r.settings.source['schema_marker']} changed since the running {running}"
    return None


def marker_digest(site, src: str):
    """sha256 of the schema marker under `src` on the service host, or None."""
    path = posixpath.join(src, "ampel-core", site.s.source["schema_marker"])
    res = site.service_host.fact(f"sha256sum {shlex.quote(path)}", user=site.src_user)
    return res.stdout.split()[0] if res is not None and res.ok and res.stdout.strip() else None


def stack_doc(r, site):
    """The stack file (burst.yml) from AMPEL_SRC on the service host, parsed; None if absent."""
    import yaml

    text = site.service_host.read_file(site.stack_file, user=site.src_user)
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise DeployError(f"{site.stack_file} on {site.service_host.name} is not valid YAML"
                          f"{where} ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})") from None


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


def _secrets_evidence(r, site):
    s = r.settings
    host = site.service_host
    doc = stack_doc(r, site)
    if doc is None:
        return None
    wanted = {name: spec["file"] for name, spec in (doc.get("secrets") or {}).items()}
    local_dir = s.local_secrets_dir
    local = {}
    for name, rel in wanted.items():
        path = local_dir / posixpath.basename(rel)
        if path.is_file():
            data = path.read_bytes()
            console.register_secret(data.decode(errors="replace"))
            local[name] = data
    quoted = " ".join(shlex.quote(rel) for rel in wanted.values())
    res = host.fact(
        f"cd {shlex.quote(site.dryrun_dir)} 2>/dev/null && for f in {quoted}; do test -f \"$f\" && "
        f"echo \"$(sha256sum < \"$f\" | cut -d' ' -f1) $(stat -c '%U %a' \"$f\") $f\"; done; "
        "stat -c 'DIR %U %a' secrets 2>/dev/null; true",
        user=s.service_user)
    if res is None:
        return None
    remote, wrong = {}, {}
    for line in res.stdout.splitlines():
        if line.startswith("DIR "):
            _, owner, mode = line.split()
            if owner != s.service_user or mode != "700":
                wrong["secrets/"] = f"directory owner {owner}, mode {mode}"
            continue
        digest, owner, mode, rel = line.split(" ", 3)
        remote[rel] = digest
        if owner != s.service_user or mode != "600":
            wrong[rel] = f"owner {owner}, mode {mode}"
    todo = []
    for name, rel in wanted.items():
        if name not in local:
            if rel in remote:
                continue
            raise DeployError(
                f"secret {name} ({rel}) is neither in {local_dir} nor on {host.name}; put it in "
                f"{local_dir / posixpath.basename(rel)}"
            )
        if remote.get(rel) != hashlib.sha256(local[name]).hexdigest() or rel in wrong:
            todo.append((name, rel))
    if "secrets/" in wrong and not todo:
        todo.append(("the secrets directory", "secrets/"))
    return {"wanted": wanted, "local": local, "todo": todo, "quoted": quoted, "wrong": wrong}


def decide_secrets(r):
    """Decision for `secrets`: those named in the stack file, missing or different on burst."""
    from .plan import Decision

    site = _site(r)
    ev = r.evidence("secrets evidence", lambda: _secrets_evidence(r, site), after=("src",))
    if ev is None:
        return None
    if ev["todo"]:
        why = [f"{n} ({ev['wrong'][rel]})" if rel in ev["wrong"] else n for n, rel in ev["todo"]]
        return Decision("secrets", "run", f"missing, different or readable by others on {site.service_host.name}: {', '.join(why)}")
    return Decision("secrets", "skip", f"all {len(ev['wanted'])} secrets present and unchanged in {site.dryrun_dir}")


def do_secrets(r):
    """Copy missing or changed secrets and check owner and modes afterwards."""
    from .plan import proceed

    site = _site(r)
    s = r.settings
    host = site.service_host
    user = s.service_user
    dryrun = site.dryrun_dir
    d = decide_secrets(r)
    ev = r.evidence("secrets evidence", lambda: _secrets_evidence(r, site), after=("src",))
    if d is None or ev is None:
        console.step("secrets", f"copy the secrets that {site.stack_file} names, where missing or changed, into {dryrun}/secrets (0600, owner {user})")
        return
    todo = ev["todo"]
    if "secrets" in r.force:  # copy every secret we hold, changed or not
        todo = [(n, rel) for n, rel in ev["wanted"].items() if n in ev["local"]]
    if proceed(r, "secrets", d, f"copying {', '.join(n for n, _ in todo)} to {host.name}:{dryrun}"):
        host.run(f"mkdir -p {shlex.quote(dryrun)} && install -d -m 0700 {shlex.quote(posixpath.join(dryrun, 'secrets'))}", user=user)
        for name, rel in todo:
            if rel == "secrets/":
                continue  # the directory: made 0700 just above
            target = posixpath.join(dryrun, rel)
            host.run(f"install -d -m 0700 {shlex.quote(posixpath.dirname(target))}", user=user)
            host.write_file(target, ev["local"][name], user=user, mode="0600",
                            show=f"write {target} (mode 0600, content not shown)")
        r.changed.add("secrets")
    if r.dry:
        return
    check = host.run(f"cd {shlex.quote(dryrun)} && stat -c '%U %a %n' secrets {ev['quoted']}", user=user, warn=True)
    for line in check.stdout.splitlines():
        owner, mode, path = line.split(" ", 2)
        want = "700" if path == "secrets" else "600"
        if owner != user or mode != want:
            raise DeployError(f"on {host.name}: {dryrun}/{path} is owned by {owner} with mode {mode}; expected {user} and {want}")


@task(pre=[src, db, secrets], help={
    "verbose": VERBOSE_HELP,
    "version": VERSION_HELP,
    "same": "start the version the service host records as running again (e.g. after a reboot), without --version",
    "dry": DRY_HELP,
})
def up(c, version=None, same=False, dry=False, verbose=False):
    """Redeploy the stack with deploy/up, then wait until it is healthy.

    In the directory holding `secrets`, as ampel: `$AMPEL_SRC/ampel-core/deploy/up
    dryrun burst`, output streamed live. Then the health gate: every service of
    the stack file listed, alertprocessor replicas = NUM_STREAMS, ports
    answering, no ERROR or Traceback lines (ampel.health.error_patterns) and no
    restarts during a stable window. Unhealthy: exit 1 with the offending lines;
    nothing is stopped, so the evidence stays for inspection.
    """
    r = runs.start(c, version=version, dry=dry)
    do_up(r)


def decide_up(r):
    """Decision for `up`: skip only when this version already runs, healthy, and nothing changed."""
    from . import health
    from .plan import Decision

    site = _site(r)
    current = state.running_version(r)
    if current != site.version:
        return Decision("up", "run", f"running version is {current or 'unknown'}, wanted {site.version}")
    problems = r.evidence("stack health", lambda: health.quick(r, site))
    if problems is None:
        return None
    if problems:
        return Decision("up", "run", f"{site.version} runs but is not healthy: {problems[0]}")
    return Decision("up", "skip", f"{site.version} already runs with every service and replica")


def do_up(r):
    """Run deploy/up as ampel in the dryrun directory, then the health gate."""
    from . import health
    from .plan import proceed

    site = _site(r)
    s = r.settings
    host = site.service_host
    # anything changed before (or --force up): redeploy without asking the running stack
    d = decide_up(r) if not (r.changed or "up" in r.force) else None
    if not proceed(r, "up", d, f"{site.up_script} {s.stack['config']} in {site.dryrun_dir} on {host.name}"):
        return
    preflight.require(r, site)
    if s.commands["stop_nannies"]:
        host.run(site.command("stop_nannies", user=s.service_user, stack=s.stack["name"]), user=s.service_user)
    limit = s.timeouts["up"]
    # timeout(1) signals the whole process group: deploy/up and singularity-stack, not
    # the nannies of the services started (their own sessions), which keep running
    cmd = f"cd {shlex.quote(site.dryrun_dir)} && timeout -k 10 {limit} " + site.command(
        "up", up_script=site.up_script, config=s.stack["config"]
    )
    r.changed.add("up")
    last = []
    res = host.run(cmd, user=s.service_user, stream=True, warn=True, on_line=lambda line: _keep_last(last, line),
                   shield=f"{site.up_script} replaces the stack on {host.name}")
    if not res.ok:
        from .health import after_failure

        said = f"; it last said: {last[-1].strip()}" if last else ""
        what = (f"did not end within {limit} s (ampel.timeouts.up) and was ended" if res.exited in (124, 137)
                else f"failed (exit {res.exited})")
        raise DeployError(f"{site.up_script} on {host.name} {what}{said}; {after_failure(r, site)}")
    if r.dry:
        console.note("then: the health gate (services, replicas, ports, logs)")
        return
    health.gate(r, site)


def _keep_last(last: list, line: str) -> None:
    console.detail(line)
    if line.strip():
        last[:] = [line]


@task(
    positional=["service"],
    help={
        "service": "service of the stack, e.g. alertprocessor; several as alertprocessor,mongo",
        "replica": "only this replica number",
        "grep": "only lines matching this regular expression",
        "no_follow": "print what is there and stop instead of following",
    },
)
def logs(c, service=None, replica=None, grep=None, no_follow=False):
    """Follow the logs of every replica of one or several services.

    `invoke logs alertprocessor` merges all replicas, each line carrying
    `(service:replica stdout|stderr)` as singularity-stack prints it; `invoke logs
    alertprocessor,mongo` follows both. Follows until Ctrl-C (singularity-stack
    starts 1 kB before the end of each file); --no-follow prints each replica's
    whole output since its last deploy, except the first line (as singularity-stack
    does). An unknown service is an error listing the configured ones.
    """
    from . import logstream

    r = runs.start(c)
    names = [x for x in (service or "").split(",") if x]
    logstream.follow(r, _site(r), names, replica=replica, grep=grep, follow=not no_follow)
