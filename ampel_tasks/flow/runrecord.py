"""The end of a run, prepared when it first changes a host: the deploy lock, then (by
the hooks the lock registers) each deployment's manifest, `current` on success, one
audit line either way, and the operator's pre/post-deploy and failure hooks."""
from __future__ import annotations

import json
import socket

from ..facts import drift, envfile
from . import hooks
from .run import started
from ..config.errors import DeployError
from ..facts.site import Site
from ..facts.state import State, image_labels, now, running_manifest, running_version


def lock(r) -> None:
    """Hold the deploy lock from the first step that changes a host until the run ends.

    Also registers what the end of the run records: a manifest per deployment, the
    `current` pointer on success, one history line either way.
    """
    if r.outcome.locked:
        return
    r.outcome.locked = True
    if r.dry:
        hooks.show_dry(r)
        return
    st = State(r)
    st.acquire(wait=r.options.lock_wait, break_lock=r.options.break_lock)
    before = running_version(r) or ""
    r.outcome.started = r.outcome.started or now()  # the run log, opened earlier, bears the same stamp
    r.on_step.append(lambda step, result: st.audit(f"{r.version}: {step} {result}") if result == "changed" else None)
    r.on_success.append(lambda: record(r, st, "ok"))
    r.on_success.append(lambda: hooks.run(r, "post_deploy", running=before))
    r.on_failure.append(lambda error: record(r, st, f"failed: {error}"))
    r.on_failure.append(lambda error: hooks.on_failure(r, error, before))
    hooks.run(r, "pre_deploy", running=before)


def _recorded(site) -> dict:
    """What a manifest keeps of the host: the copies' commits and the digests, one read."""
    facts = drift.read(site)
    return drift.fingerprints(facts, site) if facts else {"sources": {}}


def read_beside(r, site) -> None:
    """Start reading what the manifest keeps of the service host on a thread of its
    own, once deploy/up has ended there: what follows (the health gate) only watches,
    so the manifest's read is done by the verdict (the image file's sha256 takes a while)."""
    r.outcome.recorded = started(lambda: _recorded(site))


def _recorded_for(r, site) -> dict:
    """What `read_beside` read, else read now (again, when that read failed)."""
    ahead, r.outcome.recorded = r.outcome.recorded, None
    if ahead is not None:
        try:
            return ahead.result()
        except Exception:  # (read again here: the error, if any, is this read's own)
            pass
    return _recorded(site)


def _switched_db(r, values: dict) -> bool:
    before = (running_manifest(r).get("env") or {}).get("MONGO_PATH")
    return bool(before and values.get("MONGO_PATH") and before != values["MONGO_PATH"])


def record(r, st: State, result: str) -> None:
    """At the end of a run: the deployment's manifest, `current` on success, an audit line."""
    site = Site(r)
    if "up" not in r.changed and result == "ok":
        running = running_manifest(r)
        if r.changed & {"src", "tag"} and running.get("version") == r.version:
            # the stack reads its mounted sources live: what runs now is what the copies hold
            st.write_manifest({**running, **_recorded_for(r, site), "tests": r.outcome.tests or running.get("tests")})
        st.audit(f"{r.version}: {', '.join(sorted(r.changed)) or 'nothing'} changed; stack not redeployed")
        return
    manifest = _manifest(r, site, result)
    previous = st.current_version()
    if previous and previous != r.version:
        manifest["previous"] = previous
    st.write_manifest(manifest)
    if result == "ok":
        st.set_current(r.version)
    st.audit(f"deploy {r.version}: {result}")


def _image_digest(r, site):
    digest = r.outcome.pushed_digest
    if not digest:  # e.g. a rollback: what the image file on the service host was pulled as
        recorded = site.service_host.read_file(site.image_path + ".digest")
        digest = recorded.strip() if recorded else None
    return digest


def _manifest(r, site, result: str) -> dict:
    try:
        values = envfile.read(site.service_host.read_file(site.env_file, user=site.src_user) or "")
    except DeployError:
        values = {}
    labels = image_labels(r, site)
    manifest = {
        "version": r.version, "result": result,
        "image": site.pushed_ref, "image_file": site.image_path, "image_digest": _image_digest(r, site),
        "repos": json.loads(labels.get(f"{r.settings.image['label_prefix']}.repos", "{}") or "{}"),
        "image_tag": site.image_tag, "image_labels": labels,
        # a new live database, or a switch to another one than the running deployment's
        "new_db": r.outcome.new_db or _switched_db(r, values),
        "ampel_src": site.ampel_src,
        **_recorded_for(r, site),
        "env": {k: values.get(k) for k in ("AMPEL_TAG", "AMPEL_SRC", "MONGO_PATH", "GROUP_NAME")},
        "operator": r.settings.operator, "started": r.outcome.started, "ended": now(),
        "steps": dict(r.results),
        "image_id": r.outcome.image_id or r.outcome.built_image or running_manifest(r).get("image_id"),
        "tests": r.outcome.tests,
        # the archive as this run left it (schema version, size), where up looked at it
        "archive": r.outcome.archive,
        # backups of the archive this run took (before a migration)
        "archive_backups": r.outcome.archive_backups,
    }
    if r.log_path:
        manifest["run_log"] = f"{socket.gethostname()}:{r.log_path}"
    return manifest
