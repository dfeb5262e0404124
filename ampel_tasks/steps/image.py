"""Task image: the runbook's "Build ... a new Ampel image" (the push: steps/push.py)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Dict, Optional


from ..facts import build, dockerfile, sources, state
from ..config import console
from ..remote import dockerengine
from ..config.errors import DeployError
from ..facts.site import Target
from ..flow.plan import Decision, Part
from ..facts.site import Site


def _image_evidence(r):
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


EVIDENCE = "image evidence"  # (its key in the run: read by image_evidence, looked up by upstream_refs)


def image_evidence(r):
    """The recipe, the repos' commits upstream, this version's, the previous and the
    running image: read once per run."""
    return r.evidence(EVIDENCE, lambda: _image_evidence(r))


def upstream_refs(r) -> Optional[Dict[str, Dict[str, str]]]:
    """Upstream's refs of each repo the image clones ({sources.repo_key: refs}), as
    this run's image evidence read them with the deploy keys; None when it has not
    read them (a stack host then asks upstream itself)."""
    ev = r.gathered(EVIDENCE)
    if not ev:
        return None
    return {sources.repo_key(repo.url): repo.refs for repo in ev["found"] if repo.refs}


def decide_image(r):
    """Decision for `image`: the runbook's "Necessary if", from labels and git. A reuse
    of the running image as it is fixes the deployment's target (its tag and digest)."""
    ev = image_evidence(r)
    if ev is None:
        return None
    prefix = r.settings.image["label_prefix"]
    site, found, recipe = ev["site"], ev["found"], ev["recipe"]
    target, running = ev["target"], ev["running"]
    ref = f"{r.settings.image['name']}:{site.version}"

    def diff_for(repo, old):
        path = build.mirror(repo, r.settings.image_dir, r.settings, needs=(old, repo.commit))
        return build.changed_dependency_files(path, old, repo.commit)

    if running is not None:
        necessary, reason = build.decide(running["labels"], recipe, found, prefix, diff_for)
        # --force image builds this version's own image: the running one is never overwritten
        if not necessary and "image" not in r.force:
            return Decision("image", "skip", f"{reason}: the running image {r.settings.image['name']}:{running['tag']} "
                            f"is reused as it is (AMPEL_TAG stays {running['tag']})", {"reuse": None, "tag": False},
                            target=Target(image_tag=running["tag"], reused_digest=running["digest"]))
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


def announce(r, part: Part) -> str:
    d = part.decision
    reason = "--force image" if "image" in r.force else (d.reason if d else "no evidence could be read")
    return f"building {Site(r).image_ref} ({reason})"


def act(r, part: Part) -> None:
    """Build this version's image: never the running one's tag (nor its registry tag or file)."""
    r.target = Target()
    r.changed.add("image")  # (in --dry, "changed" means "would change": later steps decide on it)
    _build_labelled(r, Site(r), image_evidence(r))


def skipped(r, part: Part) -> None:
    _reuse(r, Site(r), part.decision)


def _reuse(r, site, d):
    """The previous image, tagged for this version when the decision says so; the
    running image as it is otherwise."""
    if d.data["reuse"] is None:  # the running image, as it is
        return
    if d.data["tag"]:
        if r.dry:
            console.command("local", f"docker tag {r.settings.image['name']} {site.image_ref}")
        else:
            d.data["reuse"].tag(r.settings.image["name"], site.version)
            r.changed.add("image")
    r.outcome.built_image = d.data["reuse"].id


def _build_labelled(r, site, ev):
    s, name = r.settings, r.settings.image["name"]
    if ev is None:
        console.command("local", f"docker build --network host -t {site.image_ref} {s.image_dir}  (labelled)")
        console.command("local", f"docker tag {site.image_ref} {name}")
        return
    built = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = build.labels_for(site.version, ev["recipe"], ev["found"], s.image["label_prefix"], built)
    for repo in ev["found"]:
        console.note(f"{repo.name} {repo.commit[:12]} ({repo.url})")
    if r.dry:
        console.command("local", f"docker build --network host --no-cache "
                        f"-t {site.image_ref} {s.image_dir}  (with {len(labels)} labels)")
        console.command("local", f"docker tag {site.image_ref} {name}")
        return
    client = ev["client"]
    img = client.images.get(_build(client, s.image_dir, site.image_ref, labels))
    img.tag(name, site.version)
    img.tag(name, "latest")
    console.note(f"built {img.short_id} as {site.image_ref} and {name}")
    r.outcome.built_image = img.id


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
