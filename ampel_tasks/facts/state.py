"""What is deployed, kept on the service host under ampel.paths.state_dir (owned by ampel):

    deployments/<version>.<start>.json   one manifest per deployment
    current                      the version that runs now
    history.log                  one audit line per action, append-only
    lock/                        mkdir is atomic: held for the whole deploy,
                                 health gate included; lock/info.json says who
"""
from __future__ import annotations

import json
import posixpath
import shlex
import socket
import time
from datetime import datetime, timezone
from typing import Optional

from ..config import console
from ..remote import dockerengine
from ..config.errors import DeployError
from .site import Target


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def manifests_command(directory: str) -> str:
    """Every manifest under `directory`, one JSON document per line."""
    return (f"cd {shlex.quote(directory)} 2>/dev/null && for f in *.json; do test -f \"$f\" && cat \"$f\" && echo; "
            "done; true")


def parse_manifests(out: str) -> list:
    """The manifests, newest first; a line that is not JSON (a file cut short) is left out (pure)."""
    found = []
    for line in out.splitlines():
        if line.strip():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return sorted(found, key=lambda m: m.get("started", ""), reverse=True)


class State:
    def __init__(self, r):
        self.r = r
        self.s = r.settings
        self.dir = self.s.paths["state_dir"]
        self.user = self.s.service_user
        self.host = r.host(self.s.service_host.name)

    def path(self, *parts) -> str:
        return posixpath.join(self.dir, *parts)

    # -- reading ----------------------------------------------------------
    def current_version(self) -> Optional[str]:
        res = self.host.fact(f"cat {shlex.quote(self.path('current'))} 2>/dev/null", user=self.user)
        if res is None:
            self.r.cant_read("the running version (state on the service host)")
            return None
        return res.stdout.strip() or None

    def manifest(self, version: str) -> Optional[dict]:
        """The newest manifest of `version` (a successful one if there is any)."""
        mine = [m for m in self.manifests() if m.get("version") == version]
        return next((m for m in mine if m.get("result") == "ok"), mine[0] if mine else None)

    def manifests(self) -> list:
        res = self.host.fact(manifests_command(self.path("deployments")), user=self.user)
        return parse_manifests(res.stdout if res else "")

    def lock_info(self) -> Optional[dict]:
        res = self.host.fact(f"cat {shlex.quote(self.path('lock', 'info.json'))} 2>/dev/null", user=self.user)
        if res is None or not res.stdout.strip():
            return None
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {"operator": "?", "since": "?", "raw": res.stdout.strip()[:100]}

    # -- writing ----------------------------------------------------------
    def audit(self, what: str) -> None:
        line = f"{now()}\t{self.s.operator}\t{what}".replace("\n", " ")
        self.host.change(
            f"mkdir -p {shlex.quote(self.dir)} && printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(self.path('history.log'))}",
            user=self.user, show=f"append to {self.path('history.log')}: {what}",
        )

    def write_manifest(self, manifest: dict) -> None:
        self.host.change(f"mkdir -p {shlex.quote(self.path('deployments'))}", user=self.user)
        stamp = manifest["started"] or now()
        name = f"{manifest['version']}.{stamp.replace(':', '').replace('-', '')}.json"
        self.host.write_file(self.path("deployments", name),
                             json.dumps(manifest, sort_keys=True) + "\n", user=self.user, mode="0644")

    def set_current(self, version: str) -> None:
        self.host.write_file(self.path("current"), version + "\n", user=self.user, mode="0644")

    def acquire(self, wait: float = 0, break_lock: bool = False) -> None:
        """Take the deploy lock (atomic mkdir) or explain who holds it."""
        info = json.dumps({
            "operator": self.s.operator, "since": now(), "version": self.r.version,
            "pid": __import__("os").getpid(), "from": socket.gethostname(),
        })
        lock = self.path("lock")
        cmd = (
            f"mkdir -p {shlex.quote(self.dir)} && mkdir {shlex.quote(lock)} 2>/dev/null && "
            f"printf '%s\\n' {shlex.quote(info)} > {shlex.quote(posixpath.join(lock, 'info.json'))}"
        )
        deadline = time.time() + wait
        announced = False
        while True:
            res = self.host.change(cmd, user=self.user, warn=True, show=f"take the deploy lock {lock}")
            if res.ok:
                self.r.cleanups.append(self.release)
                self.audit(f"lock taken for {self.r.version or 'maintenance'}")
                return
            holder = self.lock_info() or {}
            who = f"{holder.get('operator', '?')} since {holder.get('since', '?')} (version {holder.get('version', '?')}, pid {holder.get('pid', '?')} on {holder.get('from', '?')})"
            if break_lock:
                console.warn(f"breaking the deploy lock held by {who}")
                self.host.change(f"rm -rf {shlex.quote(lock)}", user=self.user)
                self.audit(f"broke the lock held by {who}")
                break_lock = False
                continue
            if time.time() >= deadline:
                raise DeployError(
                    f"another deploy holds the lock on {self.host.name}: {who}; wait with --lock-wait SECONDS, "
                    "or if that run is dead, --break-lock"
                )
            if not announced:
                console.note(f"waiting for the deploy lock held by {who}")
                announced = True
            time.sleep(1)

    def release(self) -> None:
        self.host.change(f"rm -rf {shlex.quote(self.path('lock'))}", user=self.user, warn=True, show="release the deploy lock")


def running_version(r) -> Optional[str]:
    """The version that runs now, read once per run."""
    return r.evidence("running version", State(r).current_version)


def running_manifest(r) -> dict:
    """The running deployment's manifest ({} when none), read once per run: the image
    it runs, its dryrun.env values, its sources. Every decision about what continues
    from it reads this one copy."""
    def gather():
        current = running_version(r)
        return (State(r).manifest(current) or {}) if current else {}

    return r.evidence("running manifest", gather) or {}


def adopt_running(r) -> Optional[str]:
    """Take the running deployment's version, tree and image as this run's (status,
    doctor: tasks without --version); None when nothing is recorded."""
    current, manifest = running_version(r), running_manifest(r)
    if current:
        r.set_version(current)
        r.target = target_of(manifest)
    return current


def target_of(manifest: dict) -> Target:
    """The target a deployment's manifest records (pure): the tag AMPEL_TAG named, the
    tree AMPEL_SRC was."""
    return Target(image_tag=(manifest.get("env") or {}).get("AMPEL_TAG") or manifest.get("version"),
                  ampel_src=manifest.get("ampel_src") or None)


def running_image(r):
    """The image the running deployment runs, as its manifest on the service host
    records it (so any operator decides alike, with or without local images)."""
    manifest = running_manifest(r)
    labels = manifest.get("image_labels") or {}
    tag = (manifest.get("env") or {}).get("AMPEL_TAG")
    if not labels or not tag:
        return None
    return {"tag": tag, "labels": labels, "digest": manifest.get("image_digest"), "version": manifest.get("version")}


def image_labels(r, site) -> dict:
    """The labels of the image this deployment runs: from the local engine, else
    (the running image reused, or another operator's machine) its manifest's."""
    try:
        img = dockerengine.image_or_none(dockerengine.engine(r), site.image_ref)
        if img is not None and img.labels:
            return dict(img.labels)
    except DeployError:
        pass
    running = running_image(r)
    return dict(running["labels"]) if running and running["tag"] == site.image_tag else {}
