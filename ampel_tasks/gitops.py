"""Task tag: the runbook's "Commit, tag, and push local changes" for the host copies.

The sources under AMPEL_SRC on burst are git clones copied out of the image; an
operator may have edited them there. `tag` commits what is outstanding, tags
every repo with the version and pushes both, so another operator can take over.
Git runs on burst as the operator (the owner of AMPEL_SRC).
"""
from __future__ import annotations

import shlex
import sys

from invoke import task

from . import console, run as runs
from .errors import DeployError
from .image import DRY_HELP, VERSION_HELP
from .remote import src
from .sources import push_url

STATUS_SCRIPT = (
    'for d in */; do d=${d%/}; [ -d "$d/.git" ] || continue; '
    'echo "@@repo $d"; git -C "$d" status --porcelain --untracked-files=no; '
    'echo "@@tags"; git -C "$d" tag --points-at HEAD; '
    'echo "@@branch"; git -C "$d" rev-parse --abbrev-ref HEAD; '
    'echo "@@origin"; git -C "$d" remote get-url origin 2>/dev/null; done'
)



def parse_status(text: str) -> dict:
    """{repo: {"dirty": [...], "tags": [...], "branch": str}} from STATUS_SCRIPT's output."""
    repos, cur, part = {}, None, None
    for line in text.splitlines():
        if line.startswith("@@repo "):
            cur = line[7:].strip()
            repos[cur] = {"dirty": [], "tags": [], "branch": "", "origin": ""}
            part = "dirty"
        elif line == "@@tags":
            part = "tags"
        elif line in ("@@branch", "@@origin"):
            part = line[2:]
        elif cur and line.strip():
            if part in ("branch", "origin"):
                repos[cur][part] = line.strip()
            else:
                repos[cur][part].append(line.strip())
    return repos


def _tag_name(r) -> str:
    return r.settings.source["tag_pattern"].format(version=r.require_version())


def _status(r, site):
    res = site.service_host.fact(f"cd {shlex.quote(site.ampel_src)} && {STATUS_SCRIPT}")
    if res is None or not res.ok:
        return None
    return parse_status(res.stdout)


def decide_tag(r):
    """Decision for `tag`: host copies with outstanding changes or without the version tag."""
    from .plan import Decision
    from .site import Site

    site = Site(r)
    repos = r.evidence("tag evidence", lambda: _status(r, site), after=("src", "db"))
    if repos is None:
        return None
    tag = _tag_name(r)
    todo = [name for name, st in repos.items() if st["dirty"] or tag not in st["tags"]]
    if not todo:
        return Decision("tag", "skip", f"{len(repos)} host copies clean and tagged {tag}")
    dirty = [n for n in todo if repos[n]["dirty"]]
    why = f"{', '.join(dirty)} have outstanding changes" if dirty else f"{', '.join(todo)} not tagged {tag}"
    return Decision("tag", "run", why, {"todo": todo, "repos": repos})


@task(pre=[src], help={
    "version": VERSION_HELP,
    "message": "commit message for outstanding changes in the host copies (asked on a terminal if missing)",
    "dry": DRY_HELP,
})
def tag(c, version=None, message=None, dry=False):
    """Commit, tag and push the host copies of the Ampel repos under AMPEL_SRC.

    Repos that are clean and already tagged are skipped; a repo that has
    diverged from its remote is an error naming it. The tag name follows
    ampel.source.tag_pattern; pushes go to ampel.source.push_url.
    """
    r = runs.start(c, version=version, dry=dry)
    do_tag(r, message=message or r.options.get("message"))


def do_tag(r, message=None):
    """Commit, tag and push the host copies that need it."""
    from .plan import proceed
    from .site import Site

    site = Site(r)
    s = r.settings
    d = decide_tag(r)
    if d is None:
        console.step("tag", f"commit outstanding changes in {site.ampel_src}/*, tag {_tag_name(r)}, push")
        return
    if not proceed(r, "tag", d):
        return
    host = site.service_host
    tag_name = _tag_name(r)
    ident = f"-c user.name={shlex.quote(s.operator)} -c user.email={shlex.quote(s.operator + '@' + s.service_host.hostname)}"
    for name in d.data["todo"]:
        st = d.data["repos"][name]
        repo_dir = shlex.quote(f"{site.ampel_src}/{name}")
        url = shlex.quote(push_url(s, name, st["origin"]))
        branch = st["branch"] or "HEAD"
        # fetching writes FETCH_HEAD: in --dry it is shown, not run
        fetch = host.run(f"git -C {repo_dir} fetch -q {url} {shlex.quote(branch)}", warn=True)
        if fetch.ok and not r.dry:
            ok = host.run(f"git -C {repo_dir} merge-base --is-ancestor FETCH_HEAD HEAD", warn=True, mutating=False)
            if not ok.ok:
                raise DeployError(
                    f"{name} on {host.name} has diverged from {url.strip(chr(39))} ({branch} there has commits the "
                    "host copy lacks); reconcile it by hand, then re-run tag"
                )
        if st["dirty"]:
            ours = {r.settings.source["env_file"]}
            if not message and all(line.split(None, 1)[-1] in ours for line in st["dirty"]):
                message = f"{tag_name}: {', '.join(sorted(ours))} for this deployment (ampel-tasks)"
            if not message:
                if sys.stdin.isatty() and not r.dry:
                    message = input(f"commit message for outstanding changes in {name}: ").strip()
                if not message:
                    raise DeployError(f"{name} has outstanding changes; pass --message to commit them")
            host.run(f"git -C {repo_dir} {ident} commit -q -a -m {shlex.quote(message)}")
        if tag_name not in st["tags"]:
            theirs = host.run(f"git -C {repo_dir} ls-remote {url} refs/tags/{shlex.quote(tag_name)}^{{}} "
                              f"refs/tags/{shlex.quote(tag_name)}", warn=True, mutating=False).stdout.split()
            head = host.run(f"git -C {repo_dir} rev-parse HEAD", mutating=False).stdout.strip()
            if theirs and head not in theirs[::2] and not r.dry:
                raise DeployError(
                    f"{name}: tag {tag_name} already exists on {url.strip(chr(39))} for another commit; "
                    "pick another version or move that tag by hand"
                )
            if theirs:
                host.run(f"git -C {repo_dir} fetch -q {url} refs/tags/{shlex.quote(tag_name)}:refs/tags/{shlex.quote(tag_name)}")
            else:
                host.run(f"git -C {repo_dir} {ident} tag -a {shlex.quote(tag_name)} -m {shlex.quote('Ampel ' + tag_name)}")
        host.run(f"git -C {repo_dir} push -q {url} HEAD:refs/heads/{shlex.quote(branch)} refs/tags/{shlex.quote(tag_name)}")
        console.note(f"{name}: tagged {tag_name} and pushed")
    r.changed.add("tag")
