"""Task rollback: an earlier deployment's image file, sources and dryrun.env values
again, saying what going back across a new live database means."""
from __future__ import annotations

import sys
from dataclasses import replace


from ..config import console
from ..facts import envfile, state
from ..flow import run as runs, runrecord
from ..config.errors import DeployError
from ..facts.site import Site
from ..steps.src import restore_sources
from ..steps import runner
from ..config.version import validate_version


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


def target_of(manifests: list, to, current) -> dict:
    """The manifest to go back to (pure): version `to`, else the last successful one
    before the running version."""
    if to:
        target = next((m for m in manifests if m.get("version") == to), None)
        if target is None:
            known = ", ".join(m.get("version", "?") for m in manifests) or "none"
            raise DeployError(f"no deployment of {to} is recorded; recorded: {known}")
    else:
        target = next((m for m in manifests if m.get("result") == "ok" and m.get("version") != current), None)
        if target is None:
            raise DeployError(f"no earlier successful deployment to go back to (running: {current or 'nothing recorded'})")
    if not target.get("env"):
        raise DeployError(f"manifest of {target['version']} has no dryrun.env values; cannot roll back to it")
    return target


def _list_targets(manifests: list, current) -> None:
    if not manifests:
        console.out("no deployment recorded on this service host yet")
    for m in manifests:
        env = m.get("env") or {}
        mark = "running" if m.get("version") == current and m.get("result") == "ok" else ""
        console.out(f"{m.get('version', '?'):10} {m.get('started', '?'):22} {m.get('result', '?')[:40]:40} "
                    f"{'new database ' if m.get('new_db') else ''}{env.get('MONGO_PATH') or ''} "
                    f"AMPEL_TAG={env.get('AMPEL_TAG') or '?'} {mark}".rstrip())


def _confirm(r, current, target: dict, crossing: list, yes: bool) -> None:
    for line in crossing:
        console.warn(line)
    if sys.stdin.isatty() and not yes and not r.dry:
        if input(f"roll back from {current} to {target['version']}? [y/N] ").strip().lower() not in ("y", "yes"):
            raise DeployError("rollback cancelled; nothing was changed")
    elif crossing and not yes and not r.dry:
        raise DeployError(f"rolling back to {target['version']} crosses a new live database (see above); "
                          "confirm on a terminal or pass --yes")


def rollback(c, to=None, yes=False, list=False, dry=False):
    """`invoke rollback` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, dry=dry)
    st, current = state.State(r), state.running_version(r)
    manifests = st.manifests()
    if list:
        _list_targets(manifests, current)
        return
    if to:
        validate_version(to, r.settings.version_pattern)
    target = target_of(manifests, to, current)
    console.step("rollback", f"from {current or 'unknown'} to {target['version']}")
    _confirm(r, current, target, across_data(manifests, target), yes)
    _redeploy(r, target)
    if not r.dry:
        st.audit(f"rollback from {current} to {target['version']}")
        console.out(f"rolled back to {target['version']}; {current}'s database, sources and logs are kept")


def _redeploy(r, target: dict) -> None:
    """The target's image file (still on the hosts), sources and dryrun.env values, then up."""
    r.target = state.target_of(target)
    r.outcome.image_id, r.outcome.tests = target.get("image_id"), target.get("tests")
    r.set_version(target["version"])
    site = Site(r)
    host = site.service_host
    if not host.exists(target["image_file"], user=r.settings.service_user):
        raise DeployError(f"image file {target['image_file']} of {target['version']} is gone from {host.name}; "
                          f"deploy {target['version']} again instead")
    runrecord.lock(r)
    restore_sources(r, site, target)
    text = host.read_file(site.env_file, user=site.src_user)
    if text is not None:
        new = envfile.update(text, {k: v for k, v in target["env"].items() if v is not None})
        if new != text:
            if r.dry:
                console.diff(envfile.diff(text, new, site.env_file))
            host.write_file(site.env_file, new, user=site.src_user, backup=True,
                            show=f"restore {site.env_file} values of {target['version']}")
    r.options = replace(r.options, force=r.options.force | {"up"})  # (the target's stack, started again)
    runner.run(r, "up")
