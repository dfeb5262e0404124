"""Tasks keys and image: the runbook's "Build ... a new Ampel image" (push: publish.py)."""
from __future__ import annotations

import difflib
import os
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from invoke import task

from . import console, run as runs, state
from .errors import DeployError
from .helptext import DRY_HELP, VERBOSE_HELP, VERSION_HELP
from .plan import Decision



@task(help={
    "repo": "the GitHub repository, ORG/NAME or NAME (ORG = ampel.source.org), e.g. AmpelProject/ampel-contrib-foo",
    "alias": "the deploy key's name: deploy-keys/id_rsa.ALIAS, cloned through github-ALIAS (default: NAME, lower case)",
    "dir": "its directory in the image, /Ampel/DIR (default: NAME, lower case)",
    "kind": "key type: rsa (4096 bits, the default) or ed25519",
    "dry": DRY_HELP,
})
def keys(c, repo, alias=None, dir=None, kind="rsa", dry=False):
    """Make a repo's deploy key and add the repo to the Dockerfile and environment.yml.

    Follows the recipe's convention: generates deploy-keys/id_rsa.<alias>
    (unencrypted, as the runbook says; the recipe's RUN makes the `Host
    github-<alias>` entry from the key's name), adds `git clone
    git@github-<alias>:<org>/<repo>.git /Ampel/<dir>` after the last clone line and
    the `- -e` / `- /Ampel/<dir>` pair to environment.yml's pip section, keeping
    every other byte. Prints the public key and the page to paste it into.
    Re-running changes nothing.
    """
    from . import dockerfile

    r = runs.start(c, dry=dry)
    s = r.settings
    org, _, name = repo.rpartition("/") if repo else ("", "", "")
    org = org or s.source["org"]
    alias = alias or name.lower()
    dir = dir or name.lower()
    for label, value in (("repo", name), ("org", org), ("alias", alias), ("dir", dir)):
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value) or value.startswith((".", "-")):
            raise DeployError(f"{label} {value!r} is not valid; expected something like ampel-contrib-foo")
    if "." in alias:
        raise DeployError(f"alias {alias!r} must not contain '.': the recipe reads it from id_rsa.<alias> with `cut -d. -f 3`")
    if kind not in ("rsa", "ed25519"):
        raise DeployError(f"--kind must be rsa or ed25519, got {kind!r}")
    image_dir = s.image_dir
    docker_path, env_path = dockerfile.files(image_dir)
    keys_dir = image_dir / "deploy-keys"
    key = keys_dir / s.source["key_pattern"].format(alias=alias)
    host = s.source["host_alias"].format(alias=alias)
    clone = f"git clone git@{host}:{org}/{name}.git /Ampel/{dir}"
    old_docker = docker_path.read_text()
    new_docker = dockerfile.add_clone_line(old_docker, clone, f"/Ampel/{dir}")
    old_env = env_path.read_text()
    new_env = dockerfile.add_pip_editable(old_env, f"/Ampel/{dir}")
    console.step("keys", f"deploy key {key.name} for {org}/{name} -> /Ampel/{dir}")
    _make_key(r, key, kind, alias)
    _ignore_keys(keys_dir, r.dry)
    changed = False
    for path, old, new in ((docker_path, old_docker, new_docker), (env_path, old_env, new_env)):
        if old == new:
            continue
        changed = True
        if r.dry:
            console.diff("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path), f"{path} (new)")))
        else:
            _atomic_write(path, new)
            console.note(f"edited {path}")
    if not changed:
        console.note("the Dockerfile and environment.yml already include it; nothing to change")
    pub = key.with_name(key.name + ".pub")
    if pub.exists():
        console.out(pub.read_text().strip())
    page = s.source["keys_page"].format(org=org, repo=name)
    console.note(f"paste the public key above into {page} (read access only)")


def _make_key(r, key: Path, kind: str, alias: str) -> None:
    if key.exists():
        console.note(f"{key} exists; keeping it")
    elif r.dry:
        console.command("local", f"ssh-keygen -t {kind}{' -b 4096' if kind == 'rsa' else ''} -N '' -f {key}")
    else:
        key.parent.mkdir(parents=True, exist_ok=True)
        argv = ["ssh-keygen", "-q", "-t", kind] + (["-b", "4096"] if kind == "rsa" else [])
        p = subprocess.run(argv + ["-N", "", "-C", f"deploy-key-{alias}", "-f", str(key)], capture_output=True, text=True)
        if p.returncode != 0:
            raise DeployError(f"ssh-keygen failed: {p.stderr.strip()}")
        os.chmod(key, 0o600)


def _ignore_keys(keys_dir: Path, dry: bool) -> None:
    ignore = keys_dir / ".gitignore"
    text = ignore.read_text() if ignore.exists() else ""
    if "id_*" not in text.split():
        if dry:
            console.command("local", f"add 'id_*' to {ignore}")
        else:
            _atomic_write(ignore, text + ("" if text.endswith("\n") or not text else "\n") + "id_*\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@task(help={
    "verbose": VERBOSE_HELP,
    "version": VERSION_HELP,
    "force": "build even when no runbook condition makes a new image necessary",
    "dry": DRY_HELP,
})
def image(c, version=None, force=False, dry=False, verbose=False):
    """Build and label the Ampel image, only when the runbook says it is necessary.

    Necessary if a repo was added to the Dockerfile, or dependencies or
    console_scripts entry points changed in any repo (setup.py, setup.cfg,
    pyproject.toml, environment.yml) since the commits recorded in the previous
    image's labels. Otherwise the previous image is reused under the new tag.
    The deploy keys live only in the Dockerfile's clone stage, which is never
    tagged or pushed.
    """
    r = runs.start(c, version=version, dry=dry)
    do_image(r, force=force or "image" in r.force)


def _image_evidence(r):
    from . import build, dockerengine, dockerfile
    from .site import Site

    site = Site(r)
    s = r.settings
    image_dir = s.image_dir
    dockerfile.files(image_dir)
    found = build.remote_commits(build.repos(image_dir, s), image_dir, s)
    recipe = dockerfile.recipe_hash(image_dir)
    client = dockerengine.engine(r)
    return {
        "site": site, "found": found, "recipe": recipe, "client": client,
        "target": dockerengine.image_or_none(client, f"{s.image['name']}:{site.version}"),
        "previous": dockerengine.image_or_none(client, f"{s.image['name']}:latest"),
        "running": state.running_image(r),
    }


def decide_image(r):
    """Decision for `image`: the runbook's "Necessary if", from labels and git."""
    from . import build

    ev = r.evidence("image evidence", lambda: _image_evidence(r))
    if ev is None:
        return None
    prefix = r.settings.image["label_prefix"]
    site, found, recipe = ev["site"], ev["found"], ev["recipe"]
    target, running = ev["target"], ev["running"]
    ref = f"{r.settings.image['name']}:{site.version}"

    def diff_for(repo, old):
        return build.changed_dependency_files(build.mirror(repo, r.settings.image_dir, r.settings), old, repo.commit)

    if running is not None:
        necessary, reason = build.decide(running["labels"], recipe, found, prefix, diff_for)
        # --force image builds this version's own image: the running one is never overwritten
        if not necessary and "image" not in r.force:
            r.cache["image_tag"], r.cache["reused_digest"] = running["tag"], running["digest"]
            return Decision("image", "skip", f"{reason}: the running image {r.settings.image['name']}:{running['tag']} "
                            f"is reused as it is (AMPEL_TAG stays {running['tag']})", {"reuse": None, "tag": False})
    if target is not None:
        labels = target.labels or {}
        want = build.labels_for(site.version, recipe, found, prefix, "")
        if labels.get(f"{prefix}.repos") == want[f"{prefix}.repos"] and labels.get(f"{prefix}.recipe-hash") == recipe:
            return Decision("image", "skip", f"{ref} exists, built from the same recipe and commits",
                            {"reuse": target, "tag": False})
    if running is not None:
        return Decision("image", "run", reason)
    previous = ev["previous"]
    already = target is not None and previous is not None and target.id == previous.id
    necessary, reason = build.decide(previous.labels if previous is not None else None, recipe, found, prefix, diff_for)
    if necessary:
        return Decision("image", "run", reason)
    if already:
        return Decision("image", "skip", f"{reason}: {site.image_ref} is already the previous image {previous.short_id}",
                        {"reuse": previous, "tag": False})
    return Decision("image", "skip", f"{reason}: reusing {previous.short_id} as {site.image_ref}",
                    {"reuse": previous, "tag": True})


def do_image(r, force=False):
    """Build the image when decide_image says so, else reuse the previous one."""
    from . import build
    from .site import Site

    site = Site(r)
    s = r.settings
    name = s.image["name"]
    d = decide_image(r)
    if d is not None and d.action == "skip" and not force:
        console.skip("image", d.reason)
        if d.data["reuse"] is None:  # the running image, as it is
            return None
        if d.data["tag"]:
            if r.dry:
                console.command("local", f"docker tag {name} {site.image_ref}")
            else:
                d.data["reuse"].tag(name, site.version)
                r.changed.add("image")
        r.done["image"] = d.data["reuse"].id
        return d.data["reuse"]
    reason = "--force" if force else (d.reason if d else "no evidence could be read")
    # a build is this version's image, never the running one's tag (nor its registry tag or file)
    r.cache.pop("image_tag", None)
    r.cache.pop("reused_digest", None)
    console.step("image", f"building {site.image_ref} ({reason})")
    ev = r.cache.get("image evidence")
    # in --dry, "changed" means "would change": later steps decide on it
    r.changed.add("image")
    if ev is None:
        console.command("local", f"docker build --network host -t {site.image_ref} {s.image_dir}  (labelled)")
        console.command("local", f"docker tag {site.image_ref} {name}")
        return None
    found = ev["found"]
    built = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = build.labels_for(site.version, ev["recipe"], found, s.image["label_prefix"], built)
    for repo in found:
        console.note(f"{repo.name} {repo.commit[:12]} ({repo.url})")
    if r.dry:
        console.command("local", f"docker build --network host --no-cache "
                        f"-t {site.image_ref} {s.image_dir}  (with {len(labels)} labels)")
        console.command("local", f"docker tag {site.image_ref} {name}")
        return None
    client = ev["client"]
    image_id = _build(client, s.image_dir, site.image_ref, labels)
    img = client.images.get(image_id)
    img.tag(name, site.version)
    img.tag(name, "latest")
    console.note(f"built {img.short_id} as {site.image_ref} and {name}")
    r.done["image"] = img.id
    r.changed.add("image")
    return img


def _build(client, image_dir, ref, labels):
    import docker

    t0 = time.time()
    tail = []
    step = ""
    image_id = None
    try:
        # the recipe's clone steps look the same whatever the commits: without
        # nocache the engine would reuse old clones
        stream = client.api.build(
            path=str(image_dir), tag=ref, labels=labels, network_mode="host", rm=True, forcerm=True,
            nocache=True, decode=True, pull=False,
        )
        for chunk in stream:
            if "error" in chunk or "errorDetail" in chunk:
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk.get("error")
                last = " | ".join(l for l in tail[-5:] if l.strip())
                raise DeployError(f"image build failed at {step or 'the first step'}: {detail.strip()} (last output: {last[-400:]})")
            text = chunk.get("stream", "")
            for line in text.splitlines():
                if line.startswith("Step "):
                    step = line.strip()
                    console.detail(f"image: {step}")
                elif line.strip():
                    tail.append(line.rstrip())
                    tail = tail[-20:]
                    console.detail(f"      {line.rstrip()}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    except docker.errors.APIError as exc:
        raise DeployError(f"image build failed: {exc.explanation or exc}") from None
    if image_id is None:
        raise DeployError(f"image build of {ref} ended without an image id; see the output above")
    console.note(f"build took {time.time() - t0:.0f} s")
    return image_id
