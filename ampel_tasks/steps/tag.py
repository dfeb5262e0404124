"""Task tag: the runbook's "Commit, tag, and push local changes" for the host copies.

Each deployment gets its own tag in every repo under AMPEL_SRC (ampel.source.
tag_pattern, `deployed/<version>-<n>` by default: never one of upstream's release
tags, and deploying a version again makes a new tag instead of moving one). The
tool's dryrun.env edit, and the operator's changes given `--message`, are
committed first. Where the commit goes: onto the branch the copy is on (master,
the site's habit), pushed only as a fast-forward, when the copy sits at that
branch's upstream head; otherwise (a release tag behind the branch's head) the
commit is kept under the deployment tag alone. Nothing is ever forced.

Git runs on the service host as the operator, the owner of AMPEL_SRC, and pushes
to ampel.source.push_url (the origin that `volume init` leaves names the build's
key alias, which exists only inside the build).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Dict, List, Tuple


from ..config import console
from ..flow import run as runs
from ..facts import sources, state
from ..config.errors import DeployError
from ..flow.plan import Decision, Part
from ..remote import sidebyside
from ..facts.site import Site
from . import evidence, inputs
from .src import follow_tag, src_evidence


@dataclass
class TagAction:
    """What `tag` does to one host copy."""
    repo: str
    tag: str
    message: str  # commit the outstanding changes with it; "" = nothing to commit
    branch: str  # also fast-forward this upstream branch; "" = the tag alone
    url: str = ""


def plan_tags(copies: Dict[str, sources.Copy], pattern: str, version: str, ours: set,
              message: str = "", redeploy: bool = True) -> Tuple[List[TagAction], List[str]]:
    """(actions, refusals) (pure). When `version` runs already (`redeploy`), a copy
    that is clean and whose HEAD carries a deployment tag of it upstream is done;
    a new deployment of a version (e.g. again after a rollback) tags every copy anew.
    Each copy tagged gets one new name (the next {n}, the same in every repo); its
    uncommitted changes are committed first, with a message of the tool's when they
    are only its own edits (`ours`), else with `message`, which is then required."""
    tags = sources.deployment_tags(copies, pattern, version)
    n = 1 + max((k for found in tags.values() for k in found), default=0)
    name = pattern.format(version=version, n=n)
    actions, refusals = [], []
    for c in copies.values():
        if redeploy and not c.dirty and c.head in tags[c.name].values():
            continue
        text = ""
        if c.dirty:
            theirs = [f for f in c.dirty if f not in ours]
            text = message or ("" if theirs else f"{name}: {', '.join(sorted(ours))} for this deployment (ampel-tasks)")
            if not text:
                refusals.append(f"{c.name} has uncommitted changes in {', '.join(theirs[:5])}; pass "
                                "--message '...' to commit them with this deployment")
                continue
        at_head = c.head == c.refs.get(f"refs/heads/{c.branch}")
        actions.append(TagAction(c.name, name, text, c.branch if text and at_head else ""))
    return actions, refusals


def describe(actions: List[TagAction]) -> str:
    parts = []
    for a in actions:
        if not a.message:
            parts.append(f"{a.repo}: tag {a.tag}")
            continue
        where = f"push to {a.branch}" if a.branch else "its branch has moved on: kept under the tag alone"
        parts.append(f"{a.repo}: commit and tag {a.tag}, {where}")
    return "; ".join(parts)


def commands(a: TagAction, repo_dir: str, ident: str) -> List[Tuple[str, str]]:
    """The git commands of one action (data), each with its name: commit, annotated
    tag, one atomic push."""
    repo, tag = shlex.quote(repo_dir), shlex.quote(a.tag)
    out = [("commit", f"git -C {repo} {ident} commit -q -a -m {shlex.quote(a.message)}")] if a.message else []
    # {n} is the next one upstream: a local tag of this name was never pushed (a run
    # interrupted between tag and push) and is made again, never an upstream one moved
    out.append(("tag", f"{{ git -C {repo} tag -d {tag} >/dev/null 2>&1 || true; }} && "
                       f"git -C {repo} {ident} tag -a {tag} -m {shlex.quote('Ampel deployment ' + a.tag)}"))
    refs = ([f"HEAD:refs/heads/{shlex.quote(a.branch)}"] if a.branch else []) + [f"refs/tags/{tag}"]
    out.append(("push", f"git -C {repo} push -q --atomic {shlex.quote(a.url)} {' '.join(refs)}"))
    return out


def _facts(r, site):
    ev = src_evidence(r, site)
    if not r.changed & set(inputs("tag")):  # nothing moved since src read the same copies
        return ev["copies"] if ev and ev["exists"] else None
    host = site.service_host
    exists = host.exists(site.ampel_src, user=site.src_user)
    if not exists:
        return None
    # (src moved the copies, not upstream: its reading of upstream's refs still holds)
    return sources.regather(host, site, r.settings, site.version, ev["copies"] if ev else {})


def decide_tag(r):
    """Decision for `tag`: the host copies that need a commit or this deployment's tag."""
    site = Site(r)
    copies = evidence(r, "tag", lambda: _facts(r, site))
    if copies is None:
        return None
    s = r.settings
    actions, refusals = plan_tags(copies, s.source["tag_pattern"], site.version, {s.source["env_file"]},
                                  r.options.message, redeploy=state.running_version(r) == site.version)
    if refusals:
        raise DeployError(f"on {site.service_host.name}, {site.ampel_src}: " + "; ".join(refusals))
    for a in actions:
        a.url = sources.push_url(s, a.repo, copies[a.repo].origin)
    if not actions:
        return Decision("tag", "skip", f"{len(copies)} host copies clean and tagged for {site.version}")
    return Decision("tag", "run", describe(actions), {"actions": actions})


def parts(r):
    """The whole step, on the service host (with --dry before src made AMPEL_SRC: what it would do)."""
    site = Site(r)
    d = decide_tag(r)
    if d is None and not r.dry:
        raise DeployError(f"on {site.service_host.name}: {site.ampel_src} does not exist; "
                          f"run `invoke src --version {site.version}`")
    doing = "" if d is not None else (f"commit outstanding changes in {site.ampel_src}/*, tag "
                                      f"{r.settings.source['tag_pattern'].format(version=site.version, n='<n>')}, push")
    return [Part(d, "tag", doing=doing, site=site)]


def act(r, part: Part) -> None:
    """Carry out the tag decision: its actions and nothing else, each repo's commit,
    tag and push as one command, the repos' side by side."""
    site, s, d = part.site, r.settings, part.decision
    if d is None:
        return
    host = site.service_host
    ident = (f"-c user.name={shlex.quote(s.operator)} "
             f"-c user.email={shlex.quote(s.operator + '@' + s.service_host.hostname)}")
    actions = d.data.get("actions", [])
    jobs = [commands(a, f"{site.ampel_src}/{a.repo}", ident) for a in actions]
    results = sidebyside.change(host, jobs, user=site.src_user, show=f"commit, tag and push {len(jobs)} repos at once")
    for a, res in zip(actions, results):
        if not res.ok:
            what, last = sidebyside.failed_step(res)
            hint = " (upstream may have moved since the plan; re-run to plan again)" if what == "push" else ""
            raise DeployError(f"{a.repo} on {host.name}: git {what or 'tag'} failed: {last}{hint}")
        console.note(f"{a.repo}: tagged {a.tag}" + (f", {a.branch} pushed" if a.branch else ""))
    r.changed.add("tag")
    follow_tag(r)
