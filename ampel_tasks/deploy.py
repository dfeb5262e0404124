"""Tasks plan, deploy, status, history, rollback: the runbook as one decided run."""
from __future__ import annotations

import json as jsonlib
import sys
import time

from invoke import task

from . import console, plan as planning, run as runs
from .errors import DeployError
from .helptext import DRY_HELP, SKIP_TESTS_HELP, VERBOSE_HELP, VERSION_HELP
from .steps import ORDER, db, image, pull, push, secrets, src, tag, test, up

# each step's own decision, from its evidence (read-only)
DECIDERS = {
    "image": image.decide_image, "test": test.decide_test, "push": push.decide_push,
    "pull": pull.decide_pull, "src": src.decide_src, "db": db.decide_db, "tag": tag.decide_tag,
    "secrets": secrets.decide_secrets, "up": up.decide_up,
}

LOCK_HELP = {
    "lock_wait": "wait up to SECONDS for another deploy's lock instead of failing at once",
    "break_lock": "break a lock left by a dead run (its holder is shown first)",
}


@task(help={"version": VERSION_HELP, "json": "print the plan as JSON", "dry": DRY_HELP})
def plan(c, version=None, json=False, dry=False):
    """Show which runbook steps are necessary for a version, and why.

    Every step is `run`, `skip` or `maybe`, with the evidence behind it: image
    labels vs the repos' commits, the registry digest, image files on the hosts,
    AMPEL_SRC, dryrun.env values, secrets, host copies, the running version. A
    fact that only an earlier step can produce is `maybe`, never a confident skip.
    Inside `deploy` the plan is printed first and confirmed on a terminal.
    """
    r = runs.start(c, version=version, dry=dry)
    v = r.require_version()
    in_deploy = "deploy" in r.steps
    steps = [s for s in ORDER if s in r.steps] if in_deploy else ORDER
    decisions = planning.combine({s: DECIDERS[s](r) for s in steps}, forced=r.force)
    r.cache["plan"] = [d.as_json() for d in decisions]  # for the hooks (AMPEL_PLAN)
    site = planning.site_summary(r.settings)
    if json and not in_deploy:
        print(jsonlib.dumps({"version": v, "site": site, "steps": [d.as_json() for d in decisions]}, indent=2))
        return
    planning.show(decisions, v, site)
    if in_deploy and not r.dry and not r.yes and sys.stdin.isatty():
        if all(d.action == "skip" for d in decisions):
            return
        answer = input("proceed with this plan? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            raise DeployError("deploy cancelled at the plan; nothing was changed")


@task(  # its pre-tasks (the plan, then every step) come from steps.STEPS
    iterable=["force"],
    help={
        "verbose": VERBOSE_HELP,
        "version": VERSION_HELP,
        "yes": "do not ask for confirmation of the plan",
        "force": "run this step even if the plan skips it (repeatable): " + ", ".join(ORDER),
        "new_db": "start a new live database for this version",
        "skip_tests": SKIP_TESTS_HELP,
        "message": "commit message for outstanding changes in the host copies (tag step)",
        "dry": DRY_HELP,
        **LOCK_HELP,
    },
)
def deploy(c, version=None, yes=False, force=None, new_db=False, message=None, skip_tests=False, lock_wait=0,
           break_lock=False, dry=False, verbose=False):
    """Deploy a version: the whole runbook, skipping what is up to date.

    Prints the plan, asks on a terminal unless --yes, then runs image, test, push,
    pull (transit, burst), src, db, tag, secrets and up with its health gate,
    each step only where necessary. The deploy lock on burst is held from the
    first change until the health gate has passed; the result is kept as a
    manifest, `current` and a history line.
    """
    r = runs.start(c, version=version, dry=dry)
    elapsed = time.time() - r.cache.get("t0", time.time())
    changed = [s for s in ORDER if s in r.changed]
    if r.dry:
        console.out(f"dry run of {r.version}: nothing was changed")
    elif changed:
        console.out(f"deployed {r.version} in {elapsed:.0f} s; changed: {', '.join(changed)}")
    else:
        console.out(f"{r.version} is up to date; nothing to do ({elapsed:.1f} s)")


def _running(r):
    from . import state

    st = state.State(r)
    current = st.current_version()
    return st, current, (st.manifest(current) if current else None)


@task(help={"json": "print the status as JSON"})
def status(c, json=False):
    """Show what runs now on burst, compared with the last deployment's manifest."""
    from . import drift, health, stacklist
    from .site import Site

    r = runs.start(c)
    st, current, manifest = _running(r)
    s = r.settings
    listing = r.host(s.service_host.name).run(s.commands["list"], user=s.service_user, mutating=False, warn=True)
    services = stacklist.parse_list(listing.stdout).get(s.stack["name"], {})
    problems, changed = None, []
    if current:
        r.set_version(current)
        if manifest and manifest.get("ampel_src"):
            r.cache["ampel_src"] = manifest["ampel_src"]
        r.cache["image_tag"] = ((manifest or {}).get("env") or {}).get("AMPEL_TAG") or current
        site = Site(r)
        problems = health.quick(r, site)
        facts = drift.read(site)
        changed = drift.drift(manifest or {}, facts, site.env_file, site.image_path) if facts else []
    down = drift.stack_down(problems, services)
    data = {
        "version": current,
        "since": (manifest or {}).get("ended"),
        "operator": (manifest or {}).get("operator"),
        "image_digest": (manifest or {}).get("image_digest"),
        "env": (manifest or {}).get("env"),
        "ampel_src": (manifest or {}).get("ampel_src"),
        "sources": (manifest or {}).get("sources") or {},
        "services": {k: v["replicas"] for k, v in services.items()},
        "healthy": problems == [] if problems is not None else None,
        "problems": problems or [],
        "stack": "down" if down else ("up" if problems == [] else "degraded" if problems else None),
        "drift": changed,
        "lock": st.lock_info(),
    }
    if json:
        print(jsonlib.dumps(data, indent=2))
        return
    if not current:
        console.out("no deployment recorded on this service host yet")
    else:
        console.out(f"running {current} since {data['since']} (deployed by {data['operator']})")
        console.out(f"image digest {data['image_digest']}")
        for k, v in (data["env"] or {}).items():
            console.out(f"  {k}={v}")
        console.out("sources: " + (", ".join(f"{k} {v[:10]}" for k, v in sorted(data["sources"].items())) or "not recorded"))
    console.out("services configured: " + (", ".join(f"{k} x{v}" for k, v in sorted(data["services"].items())) or "none"))
    if down:
        console.out(f"the stack is down: no service of it runs (after a reboot, say); start {current} again with "
                    "`invoke up --same`")
    elif problems:
        console.out("health: " + "; ".join(problems))
    elif problems == []:
        console.out("health: every service and replica of the stack file is up")
    for line in changed:
        console.out(f"drift: {line}")
    if data["lock"]:
        console.out(f"deploy lock held by {data['lock'].get('operator')} since {data['lock'].get('since')}")


@task(help={"json": "print the history as JSON"})
def history(c, json=False):
    """List deployments recorded on burst, newest first."""
    from . import state

    r = runs.start(c)
    manifests = state.State(r).manifests()
    if json:
        print(jsonlib.dumps(manifests, indent=2))
        return
    if not manifests:
        console.out("no deployments recorded yet")
    for m in manifests:
        prev = f" (after {m['previous']})" if m.get("previous") else ""
        console.out(f"{m.get('version', '?'):12} {m.get('result', '?'):10.40} {m.get('operator', '?'):10} "
                    f"{m.get('started', '?')} -> {m.get('ended', '?')}{prev}")


def across_data(manifests: list, target: dict) -> list:
    """What rolling back to `target` means for the data (pure): every successful
    deployment since it that started a new live database."""
    since = [m for m in manifests if m.get("started", "") > target.get("started", "") and m.get("result") == "ok"]
    old = target.get("env") or {}
    return [
        f"{m['version']} started a new live database ({(m.get('env') or {}).get('MONGO_PATH')}, consumer group "
        f"{(m.get('env') or {}).get('GROUP_NAME')}): the alerts processed since then live only there; going back "
        f"to {target['version']} resumes group {old.get('GROUP_NAME')} from its old offsets into {old.get('MONGO_PATH')}"
        for m in since if m.get("new_db")
    ]


def _list_targets(manifests: list, current) -> None:
    if not manifests:
        console.out("no deployment recorded on this service host yet")
    for m in manifests:
        env = m.get("env") or {}
        mark = "running" if m.get("version") == current and m.get("result") == "ok" else ""
        console.out(f"{m.get('version', '?'):10} {m.get('started', '?'):22} {m.get('result', '?')[:40]:40} "
                    f"{'new database ' if m.get('new_db') else ''}{env.get('MONGO_PATH') or ''} "
                    f"AMPEL_TAG={env.get('AMPEL_TAG') or '?'} {mark}".rstrip())


@task(help={
    "verbose": VERBOSE_HELP,
    "to": "version to go back to (default: the last successful one before the running version)",
    "yes": "do not ask for confirmation (needed off a terminal to roll back across a new database)",
    "list": "list the deployments one can roll back to, with their results and databases, and stop",
    "dry": DRY_HELP,
    **LOCK_HELP,
})
def rollback(c, to=None, yes=False, list=False, lock_wait=0, break_lock=False, dry=False, verbose=False):
    """Redeploy an earlier version's image file, sources and dryrun.env values.

    Without --to, goes back to the last successful deployment before the
    running one and says which. The newer version's database directory,
    sources, image file, manifest and logs are all kept. Going back across a
    deployment that started a new live database says what that means and asks
    (or needs --yes).
    """
    from . import envfile, state
    from .steps.src import restore_sources
    from .steps.up import do_up
    from .site import Site

    r = runs.start(c, dry=dry)
    st, current, _ = _running(r)
    manifests = st.manifests()
    if list:
        _list_targets(manifests, current)
        return
    if to:
        from .version import validate_version

        validate_version(to, r.settings.version_pattern)
        target = next((m for m in manifests if m.get("version") == to), None)
        if target is None:
            known = ", ".join(m.get("version", "?") for m in manifests) or "none"
            raise DeployError(f"no deployment of {to} is recorded; recorded: {known}")
    else:
        target = next((m for m in manifests if m.get("result") == "ok" and m.get("version") != current), None)
        if target is None:
            raise DeployError(f"no earlier successful deployment to go back to (running: {current or 'nothing recorded'})")
    console.step("rollback", f"from {current or 'unknown'} to {target['version']}")
    if not target.get("env"):
        raise DeployError(f"manifest of {target['version']} has no dryrun.env values; cannot roll back to it")
    crossing = across_data(manifests, target)
    for line in crossing:
        console.warn(line)
    if sys.stdin.isatty() and not yes and not r.dry:
        if input(f"roll back from {current} to {target['version']}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise DeployError("rollback cancelled; nothing was changed")
    elif crossing and not yes and not r.dry:
        raise DeployError(f"rolling back to {target['version']} crosses a new live database (see above); "
                          "confirm on a terminal or pass --yes")
    r.cache["image_tag"] = target["env"].get("AMPEL_TAG") or target["version"]
    r.cache["ampel_src"] = target.get("ampel_src") or ""
    r.cache["image_id"], r.cache["tests"] = target.get("image_id"), target.get("tests")
    r.set_version(target["version"])
    site = Site(r)
    host = site.service_host
    if not host.exists(target["image_file"], user=r.settings.service_user):
        raise DeployError(f"image file {target['image_file']} of {target['version']} is gone from {host.name}; "
                          f"deploy {target['version']} again instead")
    state.lock(r)
    restore_sources(r, site, target)
    text = host.read_file(site.env_file, user=site.src_user)
    if text is not None:
        wanted = {k: v for k, v in target["env"].items() if v is not None}
        new = envfile.update(text, wanted)
        if new != text:
            if r.dry:
                console.diff(envfile.diff(text, new, site.env_file))
            host.write_file(site.env_file, new, user=site.src_user, backup=True, show=f"restore {site.env_file} values of {target['version']}")
    r.force.add("up")
    do_up(r)
    if not r.dry:
        st.audit(f"rollback from {current} to {target['version']}")
        console.out(f"rolled back to {target['version']}; {current}'s database, sources and logs are kept")
