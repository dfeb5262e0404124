"""Task up: deploy/up under a timeout, then the health gate."""
from __future__ import annotations

import shlex

from invoke import task

from .. import console, health, preflight, run as runs, state
from ..errors import DeployError
from ..helptext import DRY_HELP, VERBOSE_HELP, VERSION_HELP
from ..plan import Decision, proceed
from ..site import Site
from . import inputs


@task(help={
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
    site = Site(r)
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
    site = Site(r)
    s = r.settings
    host = site.service_host
    # a change the stack runs from (or --force up): redeploy without asking the running stack;
    # an image built and pushed again changes nothing there while the hosts' files keep their digest
    d = decide_up(r) if not (r.changed & set(inputs("up")) or "up" in r.force) else None
    if not proceed(r, "up", d, f"{site.up_script} {s.stack['config']} in {site.dryrun_dir} on {host.name}"):
        return
    preflight.require(r, site)
    if s.commands["stop_nannies"]:
        host.change(site.command("stop_nannies", user=s.service_user, stack=s.stack["name"]), user=s.service_user)
    limit = s.timeouts["up"]
    # timeout(1) signals the whole process group: deploy/up and singularity-stack, not
    # the nannies of the services started (their own sessions), which keep running
    cmd = f"cd {shlex.quote(site.dryrun_dir)} && timeout -k 10 {limit} " + site.command(
        "up", up_script=site.up_script, config=s.stack["config"]
    )
    r.changed.add("up")
    last = []
    res = host.change(cmd, user=s.service_user, stream=True, warn=True, on_line=lambda line: _keep_last(last, line),
                      shield=f"{site.up_script} replaces the stack on {host.name}")
    if not res.ok:
        said = f"; it last said: {last[-1].strip()}" if last else ""
        what = (f"did not end within {limit} s (ampel.timeouts.up) and was ended" if res.exited in (124, 137)
                else f"failed (exit {res.exited})")
        raise DeployError(f"{site.up_script} on {host.name} {what}{said}; {health.after_failure(r, site)}")
    if r.dry:
        console.note("then: the health gate (services, replicas, ports, logs)")
        return
    health.gate(r, site)


def _keep_last(last: list, line: str) -> None:
    console.detail(line)
    if line.strip():
        last[:] = [line]
