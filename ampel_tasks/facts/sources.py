"""The host copies under AMPEL_SRC follow upstream: each repo is brought to the
commit wanted for the version (its tag V where the repo has one, else the head of
its branch), without ever discarding anyone's work.

Why: a code-only release reuses the running image, so its code reaches the
stack only through the sources mounted at /Ampel (Ampel-core's history: AMPEL_TAG
stayed v0.3.0 from v0.3.0 to v0.3.8). Git runs on the service host as the
operator, who owns the tree and pushes from it (steps/tag.py).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..config.errors import DeployError

# what `volume init` leaves as origin: the build's clone URL, git@github-<alias>:<org>/<repo>.git
ORIGIN = re.compile(r"^(?:ssh://)?[^@/]+@[^:/]+[:/](?P<org>[^/]+)/(?P<repo>[^/]+?)(?:\.git)?/?$")


def push_url(settings, name: str, origin: str) -> str:
    """Where a host copy fetches and pushes: its origin's <org>/<repo> (the build's
    alias host exists only inside the build) on ampel.source.git_host."""
    m = ORIGIN.match(origin or "")
    org, repo = (m.group("org"), m.group("repo")) if m else (settings.source["org"], name)
    return settings.source["push_url"].format(git_host=settings.source["git_host"], org=org, repo=repo)


def release_tag(settings, version: str) -> str:
    """Upstream's tag of the release `version` (ampel.source.release_tag)."""
    return settings.source["release_tag"].format(version=version)


STATUS = (
    'for d in */; do d=${d%/}; [ -d "$d/.git" ] || continue; '
    'echo "@@repo $d $(git -C "$d" rev-parse HEAD) $(git -C "$d" rev-parse --abbrev-ref HEAD) '
    '$(git -C "$d" remote get-url origin 2>/dev/null || echo -)"; '
    # a remote-tracking branch holding HEAD: upstream had it when the copy last fetched
    'echo "@@in $(git -C "$d" for-each-ref --count=1 --contains HEAD --format="%(refname)" refs/remotes 2>/dev/null)"; '
    # (--no-optional-locks: a read, not a refresh of the index that git would write)
    'git --no-optional-locks -C "$d" status --porcelain --untracked-files=no; done'
)


@dataclass
class Copy:
    """One host copy: where it is, and what upstream wants of it."""
    name: str
    head: str
    branch: str
    origin: str
    dirty: List[str] = field(default_factory=list)
    wanted: str = ""
    wanted_ref: str = ""
    known: bool = False
    # a remote-tracking branch of the copy that holds HEAD ("" for none)
    fetched_in: str = ""
    # upstream's refs ({ref: commit}, as `git ls-remote` lists them)
    refs: Dict[str, str] = field(default_factory=dict)


def parse_status(text: str) -> Dict[str, Copy]:
    copies: Dict[str, Copy] = {}
    current: Optional[Copy] = None
    for line in text.splitlines():
        if line.startswith("@@repo "):
            _, name, head, branch, origin = line.split(" ", 4)
            current = copies[name] = Copy(name, head, branch, origin)
        elif line.startswith("@@in"):
            if current is not None:
                current.fetched_in = line[4:].strip()
        elif current is not None and line.strip():
            current.dirty.append(line[3:].strip())
    return copies


def parse_ls_remote(text: str) -> Dict[str, str]:
    """{ref: commit}; an annotated tag's peeled commit (`^{}`) wins over the tag object."""
    refs: Dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sha, ref = parts
            if ref.endswith("^{}"):
                refs[ref[:-3]] = sha
            else:
                refs.setdefault(ref, sha)
    return refs


def want(copy: Copy, refs: Dict[str, str], tag: str) -> None:
    """The commit wanted for the version: tag `tag` if upstream has it, else the branch head."""
    branch = copy.branch if copy.branch != "HEAD" else "master"
    if f"refs/tags/{tag}" in refs:
        copy.wanted, copy.wanted_ref = refs[f"refs/tags/{tag}"], f"tag {tag}"
    else:
        copy.wanted, copy.wanted_ref = refs.get(f"refs/heads/{branch}", ""), f"{branch} head"


def plan(copies: Dict[str, Copy], running: str) -> tuple:
    """(moves, refusals) (pure): which copies move to their wanted commit, and which
    may not, because they hold work that moving could lose: uncommitted changes, or
    a HEAD that upstream never had (unpushed commits)."""
    moves, refusals = [], []
    for c in copies.values():
        if not c.wanted:
            refusals.append(f"{c.name}: upstream has neither the tag nor the branch {c.branch}")
        elif c.wanted == c.head:
            continue
        elif c.dirty:
            refusals.append(
                f"{c.name} has uncommitted changes in {', '.join(c.dirty[:5])}; commit and push them first with "
                f"`invoke tag --version {running or '<running version>'} --message '...'`")
        elif not c.known:
            refusals.append(f"{c.name} has commits that upstream lacks (HEAD {c.head[:10]}); push or reconcile "
                            "them first")
        else:
            moves.append(c)
    return moves, refusals


def read_status(host, site) -> Dict[str, Copy]:
    """The copies under AMPEL_SRC on `host` as they are (one command; {} when none)."""
    res = host.fact(f"cd {shlex.quote(site.ampel_src)} && {STATUS}", user=site.src_user)
    return parse_status(res.stdout) if res is not None and res.ok else {}


def upstream_command(urls: Dict[str, str]) -> str:
    """Upstream's refs of each copy, all asked at once (each `git ls-remote` waits for
    the git server's answer), printed one after the other under `@@ls NAME`."""
    names = list(urls)
    asks = [f"(git ls-remote {shlex.quote(urls[n])} > \"$d/{i}\" || echo @@failed > \"$d/{i}\") &"
            for i, n in enumerate(names)]
    shows = [f"echo @@ls {shlex.quote(n)}; cat \"$d/{i}\"" for i, n in enumerate(names)]
    return " ".join(["d=$(mktemp -d) || exit 1;", *asks, "wait;", "; ".join(shows) + ";", 'rm -rf "$d"'])


def repo_key(url: str) -> Optional[str]:
    """'<org>/<repo>' of a git URL in the build's or a host copy's form, lower case
    (pure; None for another form): the same repo whichever alias reaches it."""
    m = ORIGIN.match(url or "")
    return f"{m.group('org')}/{m.group('repo')}".lower() if m else None


def gather(host, site, settings, version: str, known: Optional[Dict[str, Dict[str, str]]] = None) -> Dict[str, Copy]:
    """The copies' state and what upstream wants for `version`, read on the host
    (two commands, or one). Upstream's refs of a repo in `known` ({repo_key: refs}, as the
    operator's machine just read them from the same git host) are not asked again;
    the host asks for the rest (one command, none when `known` has them all)."""
    tag = release_tag(settings, version)
    copies = read_status(host, site)
    if not copies:
        return {}
    urls = {c.name: push_url(settings, c.name, c.origin) for c in copies.values()}
    refs = {n: known[repo_key(u)] for n, u in urls.items() if known and repo_key(u) in known}
    asked = {n: u for n, u in urls.items() if n not in refs}
    if asked:
        read = _host_refs(host, site, settings, copies, asked)
        if read is None:
            return {}
        refs.update(read)
    for name, copy in copies.items():
        with_refs(copy, refs.get(name, {}), tag)
    return copies


def _host_refs(host, site, settings, copies: Dict[str, Copy], urls: Dict[str, str]) -> Optional[Dict[str, Dict[str, str]]]:
    """{copy: upstream's refs} as `git ls-remote` on the host lists them (one command;
    None when --dry cannot read)."""
    res = host.fact(upstream_command(urls), user=site.src_user)
    if res is None:
        return None
    out = {}
    for part in res.stdout.split("@@ls ")[1:]:
        name, _, text = part.partition("\n")
        copy = copies[name.strip()]
        if "@@failed" in text:
            raise DeployError(f"on {host.name}: cannot read upstream of {copy.name} "
                              f"({push_url(settings, copy.name, copy.origin)}): {res.stderr.strip().splitlines()[-1:]}")
        out[copy.name] = parse_ls_remote(text)
    return out


def with_refs(copy: Copy, refs: Dict[str, str], tag: str) -> None:
    """The copy given upstream's refs (pure): what it wants of them and whether upstream knows its HEAD."""
    copy.refs = refs
    want(copy, refs, tag)
    know(copy, refs)


def regather(host, site, settings, version: str, before: Dict[str, Copy]) -> Dict[str, Copy]:
    """`gather` again after the copies moved on the host, upstream's refs as read
    `before` (one command: nothing this run does between moves upstream); all of it
    read again when a copy is new."""
    copies = read_status(host, site)
    if not copies or set(copies) - set(before):
        return gather(host, site, settings, version)
    for c in copies.values():
        with_refs(c, before[c.name].refs, release_tag(settings, version))
    return copies


def know(copy: Copy, refs: Dict[str, str]) -> None:
    """Whether upstream has the copy's HEAD (pure): a ref's commit now, or in a
    remote-tracking branch the copy fetched (upstream has since moved past it). A
    commit made in the copy and never pushed is neither: work that moving would lose."""
    copy.known = copy.head in refs.values() or bool(copy.fetched_in)


def tag_regex(pattern: str, version: str) -> "re.Pattern":
    """The deployment tags of `version` under `pattern`, {n} captured."""
    literal = re.escape(pattern).replace(re.escape("{version}"), re.escape(version))
    return re.compile("^refs/tags/" + literal.replace(re.escape("{n}"), r"(\d+)") + "$")


def deployment_tags(copies: Dict[str, Copy], pattern: str, version: str) -> Dict[str, Dict[int, str]]:
    """{repo: {n: commit}} of the deployment tags of `version` upstream (pure)."""
    rx = tag_regex(pattern, version)
    out: Dict[str, Dict[int, str]] = {}
    for c in copies.values():
        found = (rx.match(ref) for ref in c.refs)
        out[c.name] = {int(m.group(1)): c.refs[m.group(0)] for m in found if m}
    return out


def want_recorded(copies: Dict[str, Copy], recorded: Dict[str, str], version: str, pattern: str = "") -> None:
    """For the running version or a rollback (pure): each copy's wanted commit is the
    one `version` ran from, as its manifest records it; with the deployment tag
    `pattern`, a copy whose HEAD `tag` has since committed and tagged for `version`
    (the operator's fix, pushed) stays where it is."""
    tagged = deployment_tags(copies, pattern, version) if pattern else {}
    for c in copies.values():
        if c.head in tagged.get(c.name, {}).values():
            c.wanted, c.wanted_ref = c.head, f"tagged for {version}"
        elif recorded.get(c.name):
            c.wanted, c.wanted_ref = recorded[c.name], f"as {version} ran"
        else:
            c.wanted, c.wanted_ref = c.head, "not recorded: left as it is"


def added_repos(copies: Dict[str, Copy], image_repos) -> List[str]:
    """The repos of the image that AMPEL_SRC lacks (pure): a rebuilt image added them."""
    return sorted(set(image_repos) - set(copies))


def owner_problem(owner: str, wanted: str, src: str) -> str:
    """Why AMPEL_SRC's owner is wrong, or "" (pure)."""
    if not owner or owner == wanted:
        return ""
    return (f"{src} is owned by {owner}, not {wanted} (ampel.paths.ampel_src_owner): git there would run as "
            f"the wrong user; give it to {wanted} or set ampel.paths.ampel_src_owner: {owner}")


def move_commands(site, settings, copy: Copy) -> List[str]:
    """Fetch the wanted commit and move the copy's branch to it (work is kept:
    `reset --keep` refuses to touch a changed file)."""
    repo = shlex.quote(f"{site.ampel_src}/{copy.name}")
    url = shlex.quote(push_url(settings, copy.name, copy.origin))
    return [
        f"git -C {repo} fetch -q {url} '+refs/heads/*:refs/remotes/upstream/*' '+refs/tags/*:refs/tags/*'",
        # (the reads refresh no index: stale stat data would make reset --keep take an
        # unchanged file for a changed one)
        f"git -C {repo} update-index -q --refresh; git -C {repo} reset -q --keep {shlex.quote(copy.wanted)}",
    ]
