"""Task prune: what deployments leave behind, listed with sizes and removed only
when asked.

Kept, always: everything the running deployment and the last N successful ones
reference (their image files on every host, their AMPEL_SRC trees, their local
images and registry tags), `latest`, and every database directory (only their
sizes are shown). A source tree that holds uncommitted work, or commits that
upstream lacks, is kept and named. Without --apply nothing is changed; with it the
deploy lock is held while files, trees, images and registry tags go, and the
registry's garbage collection runs last.
"""
from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict, List, Optional


from ..config import console
from ..remote import dockerengine, registryapi
from ..flow import run as runs
from ..facts import sizes, stackinputs, state
from ..config.errors import DeployError
from ..facts.site import Site
from ..facts.sources import gather
from ..facts.state import State


@dataclass
class Item:
    kind: str    # image file | source tree | local image | registry tag
    where: str   # a host, "local" or "registry"
    name: str
    size: Optional[int]
    remove: bool
    reason: str
    digest: str = ""


# -- decisions (pure) --------------------------------------------------------
def kept_manifests(manifests: List[dict], current: Optional[str], n: int) -> List[dict]:
    """The running deployment and the last n successful ones (manifests newest first)."""
    ok = [m for m in manifests if m.get("result") == "ok"]
    keep = ok[:n]
    running = next((m for m in ok if m.get("version") == current), None)
    if running is not None and running not in keep:
        keep.append(running)
    return keep


def _why(m: dict, current: Optional[str]) -> str:
    return f"{'running' if m.get('version') == current else 'kept'} {m.get('version')}"


def image_files(host: str, files: Dict[str, int], keep: List[dict], current) -> List[Item]:
    by_name = {}
    for m in keep:
        by_name.setdefault(posixpath.basename(m.get("image_file") or ""), _why(m, current))
    return [Item("image file", host, name, size, name not in by_name, by_name.get(name, "no kept deployment uses it"))
            for name, size in sorted(files.items())]


def source_trees(trees: Dict[str, int], keep: List[dict], current, work: Dict[str, str]) -> List[Item]:
    """`work`: {tree: what in it is not upstream} for trees that hold work."""
    by_path = {}
    for m in keep:
        by_path.setdefault(m.get("ampel_src") or "", _why(m, current))
    out = []
    for path, size in sorted(trees.items()):
        if path in by_path:
            out.append(Item("source tree", "", path, size, False, by_path[path]))
        elif path in work:
            out.append(Item("source tree", "", path, size, False, f"holds work: {work[path]}"))
        else:
            out.append(Item("source tree", "", path, size, True, "no kept deployment uses it; clean and pushed"))
    return out


def image_tags(kind: str, where: str, tags: Dict[str, str], keep: List[dict], current) -> List[Item]:
    """Local images or registry tags ({tag: digest or id}): a tag goes when no kept
    deployment runs it and no kept tag shares its digest (deleting a registry
    manifest deletes every tag of it)."""
    wanted = {}
    for m in keep:
        tag = (m.get("env") or {}).get("AMPEL_TAG") or m.get("image_tag")
        if tag:
            wanted.setdefault(tag, _why(m, current))
    wanted.setdefault("latest", "the previous image of the next build")
    kept_digests = {tags[t] for t in tags if t in wanted}
    out = []
    for tag, digest in sorted(tags.items()):
        if tag in wanted:
            out.append(Item(kind, where, tag, None, False, wanted[tag], digest))
        elif digest in kept_digests:
            out.append(Item(kind, where, tag, None, False, "same image as a kept tag", digest))
        else:
            out.append(Item(kind, where, tag, None, True, "no kept deployment runs it", digest))
    return out


def tree_glob(template: str) -> Optional[str]:
    """AMPEL_SRC's template as a glob, when only its last part varies (pure); None
    when the trees cannot be told apart from other directories safely."""
    parent, last = posixpath.split(template.rstrip("/"))
    if "{" in parent or not parent.startswith("/") or parent.count("/") < 2:
        return None
    pattern = last
    for key in ("{version}", "{minor}"):
        pattern = pattern.replace(key, "*")
    if "{" in pattern or pattern == "*" or "*" not in pattern:
        return None
    return posixpath.join(parent, pattern)


def size_text(n: Optional[int]) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


# -- facts (read-only, also under --dry) --------------------------------------
def _sizes(host, cmd: str, user) -> Dict[str, int]:
    res = host.fact(cmd, user=user)
    return sizes.parse(res.stdout) if res is not None and res.ok else {}


def _work_in(r, host, tree: str, user) -> str:
    """What in a tree is not upstream: uncommitted files, unpushed commits; "" if none."""
    try:
        copies = gather(host, SimpleNamespace(ampel_src=tree, src_user=user), r.settings, "prune")
    except DeployError as exc:
        return f"upstream unreadable ({exc.text[:120]})"
    problems = [f"{c.name}: uncommitted {', '.join(c.dirty[:3])}" for c in copies.values() if c.dirty]
    problems += [f"{c.name}: commits upstream lacks (HEAD {c.head[:10]})" for c in copies.values()
                 if not c.known and not c.dirty]
    return "; ".join(problems)


def _local_tags(r) -> Dict[str, str]:
    name = r.settings.image["name"]
    out = {}
    for img in dockerengine.engine(r).images.list(name=name):
        for ref in img.tags:
            if ref.rsplit(":", 1)[0] == name:
                out[ref.rsplit(":", 1)[1]] = img.id
    return out


def _registry_tags(r) -> Dict[str, str]:
    reg, name = r.settings.registry, r.settings.image["name"]
    if not registryapi.reachable(reg):
        return {}
    return {t: registryapi.served_digest(reg["address"], reg["port"], name, t) or ""
            for t in registryapi.tags(reg["address"], reg["port"], name)}


def inventory(r, keep_n: int) -> dict:
    s = r.settings
    st = state.State(r)
    current = st.current_version()
    keep = kept_manifests(st.manifests(), current, keep_n)
    items: List[Item] = []
    image_glob = s.image_file.replace("{version}", "*")
    for h in s.hosts_with("pull"):
        host = r.host(h.name)
        d = s.paths["singularity_dir"]
        files = _sizes(host, sizes.files_command(d, image_glob), s.service_user)
        items += image_files(h.name, files, keep, current)
    host = r.host(s.service_host.name)
    pattern = tree_glob(s.paths["ampel_src"])
    src_user = Site(r).src_user
    if pattern:
        trees = _sizes(host, sizes.directories_command(pattern), src_user)
        kept_paths = {m.get("ampel_src") for m in keep}
        work = {t: w for t in trees if t not in kept_paths for w in [_work_in(r, host, t, src_user)] if w}
        items += [Item(i.kind, host.name, i.name, i.size, i.remove, i.reason)
                  for i in source_trees(trees, keep, current, work)]
    items += image_tags("local image", "local", _local_tags(r), keep, current)
    items += image_tags("registry tag", "registry", _registry_tags(r), keep, current)
    live = s.paths["mongo_live_dir"]
    databases = _sizes(host, sizes.directories_command(f"{shlex.quote(live)}/*"), s.service_user)
    databases.update({f"{h}:{p}": n for h, p, n in stackinputs.archive_size(r)})
    return {"current": current, "keep": list(dict.fromkeys(m.get("version") for m in keep)), "items": items,
            "databases": databases, "tree_pattern": pattern}


# -- acting ------------------------------------------------------------------
def _remove(r, item: Item) -> None:
    s = r.settings
    if item.kind == "image file":
        path = posixpath.join(s.paths["singularity_dir"], item.name)
        r.host(item.where).change(f"rm -f -- {shlex.quote(path)} {shlex.quote(path + '.digest')}", user=s.service_user)
    elif item.kind == "source tree":
        r.host(item.where).change(f"rm -rf -- {shlex.quote(item.name)}", user=Site(r).src_user)
    elif item.kind == "local image":
        dockerengine.engine(r).images.remove(f"{s.image['name']}:{item.name}")
    elif item.kind == "registry tag":
        registryapi.delete_manifest(s.registry["address"], s.registry["port"], s.image["name"], item.digest)


def _collect_garbage(r) -> None:
    name = r.settings.registry["name"]
    c = dockerengine.engine(r).containers.get(name)
    code, out = c.exec_run(["/bin/registry", "garbage-collect", "/etc/docker/registry/config.yml"])
    for line in out.decode(errors="replace").splitlines():
        console.detail(f"registry: {line}")
    if code != 0:
        raise DeployError(f"registry garbage collection failed (exit {code}); see the run log")


def show(inv: dict, apply: bool) -> None:
    items = inv["items"]
    console.out(f"running: {inv['current'] or 'nothing recorded'}; kept deployments: {', '.join(inv['keep']) or 'none'}")
    rows = [(i.kind, i.where, i.name, size_text(i.size), ("remove" if i.remove else "keep"), i.reason) for i in items]
    if rows:
        console.table(("what", "where", "name", "size", "action", "why"), rows)
    if not inv["tree_pattern"]:
        console.out("source trees: not listed (ampel.paths.ampel_src varies in more than its last part)")
    for path, size in sorted(inv["databases"].items()):
        console.out(f"database {path}: {size_text(size)} (databases are never pruned)")
    freed = sum(i.size or 0 for i in items if i.remove)
    gone = sum(1 for i in items if i.remove)
    if not apply:
        console.out(f"would remove {gone} item(s), {size_text(freed)} on the hosts; nothing was changed "
                    "(run with --apply to remove them)")


def prune(c, keep=3, apply=False, json=False, dry=False):
    """`invoke prune` (its options and help: ampel_tasks/tasks/)."""
    r = runs.start(c, dry=dry)
    if keep < 1:
        raise DeployError("--keep must be at least 1: the running deployment's rollback target is kept")
    inv = inventory(r, keep)
    if json:
        import dataclasses
        import json as jsonlib

        print(jsonlib.dumps({**inv, "items": [dataclasses.asdict(i) for i in inv["items"]]}, indent=2))
        return
    show(inv, apply and not r.dry)
    todo = [i for i in inv["items"] if i.remove]
    if not apply or not todo:
        return

    st = State(r)
    if not r.dry:
        st.acquire()
    for item in todo:
        if r.dry:
            console.command(item.where, f"remove {item.kind} {item.name}")
            continue
        _remove(r, item)
        console.note(f"removed {item.kind} {item.name} ({item.where}, {size_text(item.size)})")
    if any(i.kind == "registry tag" for i in todo) and not r.dry:
        _collect_garbage(r)
        console.note("registry: garbage collected")
    if not r.dry:
        st.audit(f"prune: removed {len(todo)} item(s)")
