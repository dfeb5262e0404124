"""Task db: dryrun.env's values for the version, and a new live database only when
one is necessary."""
from __future__ import annotations

import posixpath
import shlex


from ..config import console
from ..facts import envfile, preflight, state
from ..config.errors import DeployError, Refusal
from ..flow.plan import Decision, Part
from ..facts.site import Site
from . import evidence


def _db_evidence(r, site):
    text = site.service_host.read_file(site.env_file, user=site.src_user)
    if text is None:
        return None
    _refuse_env(f"{site.env_file} on {site.service_host.name}, ", envfile.problems(text))
    values = envfile.read(text)
    new_db = r.options.new_db
    running = state.running_manifest(r).get("env") or {}
    # the live database continues: the running deployment's, whatever this tree's copy says
    live = {k: running[k] for k in ("MONGO_PATH", "GROUP_NAME") if running.get(k)} or values
    necessary, reason = new_db_needed(r, site, site.service_host, live, new_db)
    changes = {"AMPEL_TAG": site.image_tag, "AMPEL_SRC": site.ampel_src}
    resumed = _used_before(r, site) if necessary and not new_db else None
    if resumed:  # back to a database an earlier deployment wrote: its group resumes from its offsets
        changes.update({k: resumed["env"][k] for k in ("MONGO_PATH", "GROUP_NAME")})
    elif necessary:
        changes.update({"MONGO_PATH": site.mongo_path, "GROUP_NAME": site.group_name})
    else:
        changes.update({k: live[k] for k in ("MONGO_PATH", "GROUP_NAME") if live.get(k)})
    _require_defined(r, site, {**values, **changes})
    return {"text": text, "values": values, "new_db": necessary and not resumed, "reason": reason,
            "resumed": resumed, "new_text": envfile.update(text, changes), "changes": changes}


def _require_defined(r, site, values: dict) -> None:
    """Every $VAR of the stack file defined by the env file as db will leave it: found
    by the plan, before tag commits the file (the preflight checks it again)."""
    doc = site.stack_doc()
    missing = preflight.needs(doc, preflight.stack_env(r, site, values))[0] if doc else []
    _refuse_env("", [f"{m} is not defined by {site.env_file} on {site.service_host.name}" for m in missing])


def _refuse_env(where: str, problems: list) -> None:
    """One line for what is wrong with the env file, found by the plan."""
    if problems:
        raise Refusal(f"{where}{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                          + "; fix the file: a deploy would stop the stack and fail to start it")


def _used_before(r, site):
    """The newest deployment that wrote the live database this version's would be
    (an existing directory), or None."""
    if not site.service_host.exists(site.mongo_path, user=r.settings.service_user):
        return None
    return next((m for m in state.State(r).manifests()
                 if (m.get("env") or {}).get("MONGO_PATH") == site.mongo_path and (m.get("env") or {}).get("GROUP_NAME")),
                None)


def decide_db(r):
    """Decision for `db`: dryrun.env values and whether a new live database is necessary."""
    site = Site(r)
    ev = evidence(r, "db", lambda: _db_evidence(r, site))
    if ev is None:
        return None
    if ev["resumed"]:
        used = ev["resumed"]
        back = (f"back to the live database {used['env']['MONGO_PATH']} that {used['version']} wrote (consumer group "
                f"{used['env']['GROUP_NAME']} resumes from its offsets): {ev['reason']}")
        return Decision("db", "run" if ev["new_text"] != ev["text"] else "skip",
                        back if ev["new_text"] != ev["text"] else f"dryrun.env already uses it; {back}")
    if ev["new_db"]:
        return Decision("db", "run", f"new live database {site.mongo_path}: {ev['reason']}")
    if ev["new_text"] != ev["text"]:
        changed = [k for k, v in ev["changes"].items() if ev["values"].get(k) != v]
        return Decision("db", "run", f"{ev['reason']}; set {', '.join(changed)} in dryrun.env")
    return Decision("db", "skip", f"{ev['reason']}; dryrun.env already has AMPEL_TAG={site.image_tag}")


def parts(r):
    """The whole step, on the service host; refused before anything is printed when
    dryrun.env is not there (src makes it)."""
    site = Site(r)
    d = decide_db(r)
    ev = evidence(r, "db", lambda: _db_evidence(r, site))
    if (d is None or ev is None) and not r.dry:
        raise DeployError(f"on {site.service_host.name}: {site.env_file} does not exist; "
                          f"run `invoke src --version {site.version}`")
    doing = "" if ev is not None else (
        f"set AMPEL_TAG={site.image_tag}, AMPEL_SRC={site.ampel_src} in {site.env_file}; if a new live database "
        f"is necessary: mkdir {site.mongo_path}, MONGO_PATH, GROUP_NAME={site.group_name}")
    return [Part(d, "db", doing=doing, site=site, evidence=ev)]


def act(r, part: Part) -> None:
    """dryrun.env's values for this version (a backup kept); a new live database's directory."""
    site, ev, s = part.site, part.evidence, r.settings
    host = site.service_host
    if ev is None:  # (--dry: dryrun.env not there yet)
        host.change(f"mkdir -p {shlex.quote(site.mongo_path)}", user=s.service_user)
        console.command(host.name, f"update {site.env_file}: AMPEL_TAG, AMPEL_SRC[, MONGO_PATH, GROUP_NAME] (backup kept)")
        r.changed.add("db")
        return
    if ev["new_db"]:
        r.outcome.new_db = True
        listing = host.fact(f"ls -A {shlex.quote(site.mongo_path)} 2>/dev/null | head -1", user=s.service_user)
        if listing is not None and listing.stdout.strip() and ev["values"].get("MONGO_PATH") != site.mongo_path:
            raise DeployError(
                f"on {host.name}: {site.mongo_path} exists and is not empty; it may hold another deployment's "
                "data. Move it aside yourself or point ampel.env.mongo_path elsewhere"
            )
        host.change(f"mkdir -p {shlex.quote(site.mongo_path)}", user=s.service_user)
    text, new = ev["text"], ev["new_text"]
    if new == text:
        return
    if r.dry:
        console.diff(envfile.diff(text, new, site.env_file))
    host.write_file(site.env_file, new, user=site.src_user, backup=True, mode="0644", show=f"update {site.env_file} (backup kept)")
    r.changed.add("db")
    if not r.dry:
        console.note(f"updated {site.env_file}: " + ", ".join(
            f"{k}={v}" for k, v in ev["changes"].items() if ev["values"].get(k) != v))


def new_db_needed(r, site, host, values, new_db):
    """(necessary?, reason) for a new live database, from dryrun.env and the host."""
    if new_db:
        return True, "--new-db"
    current = values.get("MONGO_PATH", "")
    if current == site.mongo_path and host.exists(current, user=r.settings.service_user):
        return False, f"MONGO_PATH is already {current}"
    if not current or not host.exists(current, user=r.settings.service_user):
        return True, f"MONGO_PATH {current or '(unset)'} does not exist on {host.name}"
    changed = schema_changed(r, site)
    if changed:
        return True, changed
    return False, f"keeping the live database {current} (no schema change; pass --new-db for a fresh one)"


def schema_changed(r, site):
    """The runbook's "changed the structure of the database": the schema marker file
    (ampel.source.schema_marker) differs from the running deployment's (its manifest
    records the file's digest; older manifests: the file in their own tree)."""
    running = state.running_version(r)
    if not running or running == site.version:
        return None
    manifest = state.running_manifest(r)
    old = manifest.get("schema_marker")
    old_src = manifest.get("ampel_src")
    if not old and (not old_src or old_src == site.ampel_src):
        return None
    new = marker_digest(site, site.ampel_src)
    if old is None:
        old = marker_digest(site, old_src)
    if old and new and old != new:
        return f"{r.settings.source['schema_marker']} changed since the running {running}"
    return None


def marker_digest(site, src: str):
    """sha256 of the schema marker under `src` on the service host, or None."""
    path = posixpath.join(src, "ampel-core", site.s.source["schema_marker"])
    res = site.service_host.fact(f"sha256sum {shlex.quote(path)}", user=site.src_user)
    return res.stdout.split()[0] if res is not None and res.ok and res.stdout.strip() else None
