"""Task up: deploy/up under a timeout on each stack host that needs it (transit's
archive first, then burst), each followed by its health gate."""
from __future__ import annotations

import shlex


from ..config import console
from ..facts import health, preflight, stackinputs, state
from ..flow import run as runs, runrecord
from ..config.errors import DeployError
from ..flow.plan import Decision, Part, host_label, per_host
from ..facts.site import stack_sites
from . import inputs
from .schema import record_initialised


def decide_up(r):
    """Decision for `up`, per stack host (transit's archive, burst)."""
    return per_host("up", {site.stack_host.name: _decide_on(r, site) for site in stack_sites(r)})


def _decide_on(r, site):
    return _decide_archive(r, site) if site.archive else _decide_service(r, site)


def _decide_service(r, site):
    """burst: skip only when this version already runs, healthy."""
    current = state.running_version(r)
    if current != site.version:
        return Decision("up", "run", f"running version is {current or 'unknown'}, wanted {site.version}")
    problems = service_health(r, site)
    if problems is None:
        return None
    if problems:
        return Decision("up", "run", f"{site.version} runs but is not healthy: {problems[0]}")
    return Decision("up", "skip", f"{site.version} already runs with every service and replica")


def service_health(r, site):
    """burst's stack as it runs: what is wrong with it ([] when nothing), read once per run."""
    return r.evidence("stack health", lambda: health.quick(r, site))


def _decide_archive(r, site):
    """transit: run when its stack is not running healthy or what it runs from changed
    since it was started; an archive directory that is new or empty is refused
    unless --new-archive."""
    ev = archive_evidence(r, site)
    if ev is None:
        return None
    stackinputs.refuse_new_archive(ev, site.stack_host.name, r.options.new_archive)
    if ev.problems:
        return Decision("up", "run", f"its stack is not running healthy: {ev.problems[0]}", {"inputs": ev})
    if ev.recorded is None:
        return Decision("up", "run", "no record of what its running stack was started from", {"inputs": ev})
    changed = stackinputs.changes(ev.recorded, ev.now)
    if changed:
        return Decision("up", "run", f"changed since its stack started: {', '.join(changed)} (restarts "
                                     + ", ".join(ev.services) + ")", {"inputs": ev})
    return Decision("up", "skip", f"its stack runs from the same stack file, env values, image files and secrets "
                                  f"({', '.join(ev.services)} keep running)", {"inputs": ev})


def archive_evidence(r, site):
    """transit's inputs, record, stack and ARCHIVE_PATH: read once per run, again after
    an earlier step changed what they are about."""
    return r.evidence(f"up evidence {site.stack_host.name}", lambda: stackinputs.gather(r, site), after=inputs("up"))


def parts(r):
    """A part per stack host, transit first, each decided when it is reached (burst's
    after transit's start: a migration applied then redeploys burst); --force up does
    not reach transit, whose stack restarts only for a change of its own."""
    s = r.settings
    for site in stack_sites(r):
        host = site.stack_host
        d = None if _redeploy_forced(r, site) else _decide_on(r, site)
        yield Part(d, host_label("up", host.name, s), host.name, forceable=not site.archive,
                   doing=f"{site.up_script} {s.stack['config']} in {site.dryrun_dir} on {host.name}", site=site)


def finish(r) -> None:
    """The archive's schema and size for the manifest, where transit was not restarted."""
    if "up" in r.changed and not r.dry and r.outcome.archive is None:
        for site in stack_sites(r)[:-1]:  # (transit's, not restarted: what the decision read)
            ev = archive_evidence(r, site)
            if ev is None:
                continue
            try:
                stackinputs.remember(r, ev, stackinputs.probe(r, site, ev, wait=0))
            except DeployError:
                pass  # (the manifest then has no archive figures; status says why)


def _redeploy_forced(r, site) -> bool:
    """burst: a change the stack runs from made in this run (or --force up) redeploys
    without asking the running stack (an image built and pushed again changes nothing
    there while the hosts' files keep their digest)."""
    return not site.archive and bool(runs.changed_on(r, site.stack_host.name, inputs("up")) or "up" in r.force
                                     or "schema" in r.changed)  # (its clients read the archive's schema at start)


def act(r, part: Part) -> None:
    """deploy/up and the health gate on the part's host; on transit, what its stack
    started from recorded, a new archive's ledger, the migrations deferred to now."""
    site, d = part.site, part.decision
    if site.archive:
        stackinputs.prepare(r, site, (d.data if d is not None else {}).get("inputs"))
    preflight.require(r, site)
    _deploy_up(r, site)
    if r.dry:
        console.note("then: the health gate (services, replicas, ports, logs"
                     + (", a query as the archive's read user)" if site.archive else ")"))
        return
    if not site.archive:
        runrecord.read_beside(r, site)
    health.gate(r, site)
    if site.archive:
        ev = archive_evidence(r, site)
        stackinputs.after_start(r, site, ev)
        if ev is not None and ev.path.state != "cluster":
            record_initialised(r, site, ev.archive)
        if r.outcome.schema_deferred:
            part.then = "schema"


def _deploy_up(r, site) -> None:
    s, host = r.settings, site.stack_host
    if s.commands["stop_nannies"]:
        host.change(site.command("stop_nannies", user=s.service_user, stack=site.stack_name), user=s.service_user)
    limit = s.timeouts["up"]
    # timeout(1) signals the whole process group: deploy/up and singularity-stack, not
    # the nannies of the services started (their own sessions), which keep running
    cmd = f"cd {shlex.quote(site.dryrun_dir)} && timeout -k 10 {limit} " + site.command(
        "up", up_script=site.up_script, config=s.stack["config"]
    )
    runs.mark_changed(r, "up", host.name)
    last = []
    res = host.change(ending_with(cmd), user=s.service_user, stream=True, warn=True, show=cmd,
                      on_line=lambda line: _keep_last(last, line),
                      shield=f"{site.up_script} replaces the stack on {host.name}")
    if not res.ok:
        said = f"; it last said: {last[-1].strip()}" if last else ""
        what = (f"did not end within {limit} s (ampel.timeouts.up) and was ended" if res.exited in (124, 137)
                else f"failed (exit {res.exited})")
        raise DeployError(f"{site.up_script} on {host.name} {what}{said}; {health.after_failure(r, site)}")


def ending_with(cmd: str) -> str:
    """`cmd` run so that its session ends when it does (pure). Singularity 2.x's
    instance.stop leaves `{ sleep KILL_WAIT; kill -9 PID; } &` behind, holding the
    output it inherited, so a plain session stays open 10 s past deploy/up's `rm`.
    Here cmd's output (stderr with it) goes to a private file that `tail --pid`
    relays as it grows until cmd has ended; its exit status is the session's. What
    cmd started runs on (a second Ctrl-C ends the session, not deploy/up)."""
    # (mktemp's reason, if it fails, on stdout: the error line says what deploy/up last said)
    return ('out=$(mktemp 2>&1) || { echo "$out"; exit 1; }; '
            f'{{ {cmd}\n}} >"$out" 2>&1 </dev/null & pid=$!; '
            'tail -s 0.1 -n +1 -f --pid=$pid "$out"; wait $pid; code=$?; rm -f "$out"; exit $code')


def _keep_last(last: list, line: str) -> None:
    console.detail(line)
    if line.strip():
        last[:] = [line]
