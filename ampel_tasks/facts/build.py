"""The runbook's "Build and push a new Ampel image ... Necessary if": evidence and decision.

Evidence: the repos the Dockerfile clones and their commits now (git ls-remote with
each repo's deploy key), the labels of the previous image (recipe hash, repos,
commits), and which dependency files changed between those commits (read from
local mirrors fetched with the same keys).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from . import dockerfile
from ..config.errors import DeployError
from ..config.settings import cache_dir
from .sources import parse_ls_remote

# Files whose change means new dependencies or console_scripts entry points.
DEPENDENCY_FILES = ("setup.py", "setup.cfg", "pyproject.toml", "environment.yml", "requirements.txt")
CACHE = cache_dir()


@dataclass(frozen=True)
class Repo:
    name: str
    url: str
    key: Path
    commit: str = ""
    # upstream's refs ({ref: commit}, as `git ls-remote` lists them; HEAD is `commit`)
    refs: Dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def key_path(image_dir: Path, pattern: str, alias: str) -> Path:
    return image_dir / "deploy-keys" / pattern.format(alias=alias)


def ssh_config_text(image_dir: Path, settings) -> str:
    """What the recipe's RUN generates inside the build, one Host per deploy key,
    pointing at the operator's deploy-keys directory instead of /root/.ssh."""
    keys = image_dir / "deploy-keys"
    prefix, _, suffix = settings.source["key_pattern"].partition("{alias}")
    known = keys / "known_hosts"
    entries = []
    for key in sorted(keys.glob(prefix + "*" + suffix)) if keys.is_dir() else []:
        alias = key.name[len(prefix):len(key.name) - len(suffix)]
        if key.name.endswith(".pub") or not alias:
            continue
        entries.append(
            f"Host {settings.source['host_alias'].format(alias=alias)}\n  HostName {settings.source['git_host']}\n"
            f"  User git\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
            + (f"  UserKnownHostsFile {known}\n" if known.is_file() else "")
        )
    return "".join(entries)


def local_ssh_config(image_dir: Path, settings) -> str:
    fd, path = tempfile.mkstemp(prefix="ampel-deploy-keys-", suffix=".ssh_config")
    with os.fdopen(fd, "w") as f:
        f.write(ssh_config_text(image_dir, settings))
    return path


def repos(image_dir: Path, settings) -> List[Repo]:
    """The repos the Dockerfile clones, each with its deploy key, named by its
    directory under /Ampel (the name the host copies have)."""
    text = (image_dir / "Dockerfile").read_text()
    out = []
    for line in dockerfile.clone_lines(text):
        alias = dockerfile.key_alias(line.alias, settings.source["host_alias"])
        key = key_path(image_dir, settings.source["key_pattern"], alias)
        name = line.directory
        if not key.is_file():
            raise DeployError(
                f"the Dockerfile clones {line.org}/{line.repo} through {line.alias}, but its deploy key {key} is "
                f"missing; run `invoke keys --repo {line.org}/{line.repo} --alias {alias} --dir {name}`"
            )
        out.append(Repo(name, f"git@{line.alias}:{line.org}/{line.repo}.git", key))
    return out


def _git_env(ssh_config: str) -> dict:
    return dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {ssh_config} -o BatchMode=yes -o ConnectTimeout=15",
                GIT_TERMINAL_PROMPT="0")


def remote_commits(found: List[Repo], image_dir: Path, settings) -> List[Repo]:
    """Each repo with upstream's HEAD and refs, read with its deploy key (all repos at once)."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = local_ssh_config(image_dir, settings)
    try:
        with ThreadPoolExecutor(max(1, len(found))) as pool:
            return list(pool.map(lambda r: _head(r, cfg), found))
    finally:
        os.unlink(cfg)


def _head(r: Repo, cfg: str) -> Repo:
    # (every ref, not HEAD alone: the same answer tells the host copies what they want, sources.gather)
    p = subprocess.run(["git", "ls-remote", r.url], capture_output=True, text=True, env=_git_env(cfg), timeout=60)
    refs = parse_ls_remote(p.stdout) if p.returncode == 0 else {}
    if not refs.get("HEAD"):
        err = (p.stderr.strip().splitlines() or ["no HEAD"])[-1]
        raise DeployError(f"cannot read {r.url} with deploy key {r.key.name}: {err}")
    return Repo(r.name, r.url, r.key, refs["HEAD"], refs)


def mirror(repo: Repo, image_dir: Path, settings, everything: bool = False,
           upstream: Optional[Dict[str, str]] = None, needs: tuple = ()) -> Path:
    """A bare local mirror of `repo`, fetched with its deploy key (GitPython):
    its HEAD, or with `everything` all its branches and tags. Not fetched when it
    already holds what is asked: `upstream`'s refs as a host's `git ls-remote` just
    listed them (with `everything`), or the commits `needs` names."""
    import git

    # one mirror per URL: two sites (or the sandbox and production) never share one
    path = CACHE / "repos" / f"{repo.name}-{hashlib.sha256(repo.url.encode()).hexdigest()[:8]}.git"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        git.Repo.init(path, bare=True)
    elif mirror_holds(path, upstream if everything else None, settings.source["tag_pattern"], needs):
        return path
    cfg = local_ssh_config(image_dir, settings)
    try:
        g = git.Repo(path)
        with g.git.custom_environment(GIT_SSH_COMMAND=_git_env(cfg)["GIT_SSH_COMMAND"]):
            # --prune: a branch or tag upstream no longer has is no evidence of anything
            refspecs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"] if everything else []
            g.git.fetch("--quiet", *(["--prune"] if everything else []), repo.url, "+HEAD:refs/remotes/origin/HEAD",
                        *refspecs)
    except git.GitCommandError as exc:
        raise DeployError(f"cannot fetch {repo.url}: {exc.stderr.strip().splitlines()[-1] if exc.stderr else exc}") from None
    finally:
        os.unlink(cfg)
    return path


def mirror_refs(path: Path) -> Dict[str, str]:
    """{ref: commit} of a local mirror, tags peeled (as `git ls-remote` lists them)."""
    p = subprocess.run(["git", "--git-dir", str(path), "show-ref", "-d"], capture_output=True, text=True)
    return parse_ls_remote(p.stdout)


def same_refs(local: Dict[str, str], upstream: Dict[str, str]) -> bool:
    """Whether a mirror's branches and tags are upstream's, and its HEAD upstream's HEAD (pure)."""
    def kept(refs):
        return {k: v for k, v in refs.items() if k.startswith(("refs/heads/", "refs/tags/"))}
    return (bool(upstream) and kept(local) == kept(upstream)
            and local.get("refs/remotes/origin/HEAD") == upstream.get("HEAD"))


def mirror_holds(path: Path, upstream: Optional[Dict[str, str]], tag_pattern: str, needs: tuple = ()) -> bool:
    """Whether a mirror needs no fetch: it has `upstream`'s refs (a host's `git
    ls-remote`), the tool's own deployment tags (`tag_pattern`'s namespace) counted
    as had when the mirror has their commits; else the commits `needs` names."""
    if upstream is None:
        return bool(needs) and _has_commits(path, needs)
    fixed = tag_pattern.split("{")[0]  # (the pattern's text before its first field)
    own = "refs/tags/" + fixed if "/" in fixed else None
    if own is None:
        return same_refs(mirror_refs(path), upstream)
    local = {k: v for k, v in mirror_refs(path).items() if not k.startswith(own)}
    theirs = {k: v for k, v in upstream.items() if not k.startswith(own)}
    tagged = tuple(v for k, v in upstream.items() if k.startswith(own))
    return same_refs(local, theirs) and (not tagged or _has_commits(path, tagged))


def _has_commits(path: Path, commits) -> bool:
    p = subprocess.run(["git", "--git-dir", str(path), "cat-file", "--batch-check"], capture_output=True, text=True,
                       input="".join(f"{c}^{{commit}}\n" for c in commits))
    return p.returncode == 0 and "missing" not in p.stdout


def changed_dependency_files(path: Path, old: str, new: str) -> Optional[List[str]]:
    """Dependency files that differ between two commits; None if `old` is unknown."""
    import git

    g = git.Repo(path)
    try:
        g.commit(old)
    except (ValueError, git.BadName):
        return None
    names = g.git.diff("--name-only", old, new).splitlines()
    return [n for n in names if Path(n).name in DEPENDENCY_FILES]


def labels_for(version: str, recipe: str, found: List[Repo], prefix: str, built: str) -> Dict[str, str]:
    labels = {
        f"{prefix}.version": version,
        f"{prefix}.recipe-hash": recipe,
        f"{prefix}.built": built,
        f"{prefix}.repos": json.dumps({r.name: {"url": r.url, "commit": r.commit} for r in found}, sort_keys=True),
    }
    for r in found:
        labels[f"{prefix}.repo.{r.name}.url"] = r.url
        labels[f"{prefix}.repo.{r.name}.commit"] = r.commit
    return labels


def decide(previous: Optional[dict], recipe: str, found: List[Repo], prefix: str, diff_for) -> tuple:
    """(build?, reason). `diff_for(repo, old_commit)` lists changed dependency files or None."""
    if previous is None:
        return True, "no previous image to reuse"
    old_repos = json.loads(previous.get(f"{prefix}.repos", "{}") or "{}")
    added = [r.name for r in found if r.name not in old_repos]
    if added:
        return True, f"repo added to the Dockerfile: {', '.join(added)}"
    if previous.get(f"{prefix}.recipe-hash") != recipe:
        return True, "Dockerfile or environment.yml changed since the previous image"
    reasons = []
    for r in found:
        old = old_repos[r.name]["commit"]
        if old == r.commit:
            continue
        files = diff_for(r, old)
        if files is None:
            reasons.append(f"{r.name}: previous commit {old[:10]} is unknown")
        elif files:
            reasons.append(f"{r.name}: {', '.join(files)} changed ({old[:10]}..{r.commit[:10]})")
    if reasons:
        return True, "dependencies or console_scripts may have changed: " + "; ".join(reasons)
    same = all(old_repos[r.name]["commit"] == r.commit for r in found)
    if same:
        return False, "same recipe and same commits as the previous image"
    return False, "only code changed since the previous image (no dependency or entry-point file); sources are mounted from AMPEL_SRC"
