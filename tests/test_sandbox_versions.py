"""Every deployment after the first, in the order operators live them.

v0.3.5 runs; then a code-only release, a release with a new dependency, one with a
new contrib repo, one with a schema change, a rollback across that new database,
and the newer version deployed again by a second operator. After each deploy the plan it printed is
compared with what the hosts, the registry, the engine and the git server saw,
read from them and not from the tool: image files, host copies, dryrun.env,
secrets and live instances on the hosts; the registry's access log; the engine's
images; the git server's tags; bytes sent towards the hosts (veth counters).

The versions carry a stamp of this run (v0.3.6-s1234): images, image files and
deployment tags of an earlier run on the same sandbox never make a step look
done. Upstream changes are reverted at the end (the net change upstream is none).
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import archive_query, archived, postmaster, REGISTRY, sandbox_cmd, tool
from sandboxsite import (
    CHECKOUTS, NEW_DEPENDENCY, SERVER, STATE, STEPS, Upstream, bare, burst, checkout_as_upstream, daemon,
    eventually, live_instances, second_operator,
)

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"
DEVEL = STATE / "operator/ampel-core/deploy/docker-images/devel"
PLAN_LINE = re.compile(r"^  (image|test|push|pull|src|db|tag|secrets|schema|up)\s+(run|skip|maybe)\s+(.*)$", re.M)


def files_under(root: Path, pattern: str) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.glob(pattern)}


def git(path: Path, *args) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(path), *args],
                          capture_output=True, text=True).stdout.strip()


def copies(sandbox) -> dict:
    """{tree/repo: (HEAD, moves)} of the host copies in every AMPEL_SRC tree on burst;
    moves counts the copy's reflog entries that `reset` wrote (src moves a copy so,
    tag only commits on top)."""
    out = {}
    for dot_git in burst(sandbox, "home/ampel").glob("Ampel-*/*/.git"):
        repo = dot_git.parent
        moves = sum(1 for line in git(repo, "reflog", "--format=%gs").splitlines() if line.startswith("reset:"))
        out[f"{repo.parent.name}/{repo.name}"] = (git(repo, "rev-parse", "HEAD"), moves)
    return out


def heads(sandbox) -> dict:
    return {k: head for k, (head, _) in copies(sandbox).items()}


def server_tags(sandbox) -> set:
    tags = set()
    for repo in SERVER:
        path = bare(sandbox, repo)
        if path.exists():
            out = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(path), "for-each-ref", "--format=%(refname)",
                                  "refs/tags"], capture_output=True, text=True).stdout
            tags |= {f"{repo}:{t}" for t in out.split()}
    return tags


def registry_log() -> tuple:
    """(its stdout's lines, its stderr's): the registry writes its access log to one and
    its own log to the other, so each is counted apart (joined, lines written to the
    first would hide behind the second's older ones)."""
    p = subprocess.run([DOCKER, "logs", REGISTRY], capture_output=True, text=True)
    return p.stdout.splitlines(), p.stderr.splitlines()


def sent_to_hosts() -> int:
    return sum(int(Path(f"/sys/class/net/ab-{h}/statistics/tx_bytes").read_text()) for h in ("burst", "transit"))


def containers_made(sandbox, since: float, until: float) -> int:
    """Containers made from an image on either operator's engine (the test step's
    `docker run`s), from the engines' own event logs."""
    made = 0
    for env in ({}, {"DOCKER_HOST": sandbox["operator2"]["env"]["DOCKER_HOST"]}):
        out = subprocess.run([DOCKER, "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter",
                              "type=container", "--filter", "event=create", "--filter", "label=org.ampelproject.step=test", "--format", "{{.Actor.Attributes.image}}"],
                             capture_output=True, text=True, env=dict(os.environ, **env)).stdout
        made += len(out.split())
    return made


def observe(sandbox) -> dict:
    """Everything the steps could change, read from where it lives."""
    images = subprocess.check_output([DOCKER, "images", "--no-trunc", "-q", "ampel"], text=True).split()
    return {
        "time": time.time(),
        "engine": set(images),
        "registry": tuple(len(lines) for lines in registry_log()),
        "files": {h: files_under(Path(sandbox["host"][h]["root"], "data/ampel/singularity"), "*.simg")
                  for h in ("burst", "transit")},
        "copies": {k: moves for k, (_, moves) in copies(sandbox).items()},
        # db keeps a backup of each dryrun.env it edits
        "env": set(burst(sandbox, "home/ampel").glob("Ampel-*/ampel-core/deploy/production/dryrun.env.bak-*")),
        "tags": server_tags(sandbox),
        "secrets": files_under(burst(sandbox, "home/ampel/dryrun/secrets"), "*"),
        "pids": live_instances(sandbox),
        "sent": sent_to_hosts(),
        # the archive's tables and columns, and its versions (as its superuser)
        "archive": archive_query("SELECT md5(string_agg(table_name || ' ' || column_name || ' ' || data_type, ',' "
                                 "ORDER BY table_name, column_name)) || (SELECT string_agg(alert_version, ',') FROM "
                                 "versions) FROM information_schema.columns WHERE table_schema = 'public'",
                                 user="ampel", secret="archive-root-password"),
    }


def seen(sandbox, before: dict, after: dict) -> dict:
    """Which steps acted, by their traces outside the tool."""
    log = [line for lines, seen_before in zip(registry_log(), before["registry"]) for line in lines[seen_before:]]
    return {
        "image": after["engine"] - before["engine"] != set(),
        "test": containers_made(sandbox, before["time"], after["time"]) > 0,
        "push": any(re.search(r'"PUT /v2/ampel/manifests/', line) for line in log),
        "pull": after["files"] != before["files"],
        "src": after["copies"] != before["copies"],
        "db": after["env"] != before["env"],
        "tag": after["tags"] != before["tags"],
        "secrets": after["secrets"] != before["secrets"],
        "schema": after["archive"] != before["archive"],
        "up": after["pids"] != before["pids"],
    }


def deploy(sandbox, *args, **as_operator):
    """Deploy and return (printed plan {step: action}, steps seen acting, the run's output, MiB sent to the hosts)."""
    before = observe(sandbox)
    p = tool("deploy", *args, "--yes", timeout=1200, **as_operator)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    after = observe(sandbox)
    plan = {m.group(1): m.group(2) for m in PLAN_LINE.finditer(p.stdout)}
    acted = seen(sandbox, before, after)
    for step, action in plan.items():
        if action != "maybe":
            assert (action == "run") == acted[step], f"{' '.join(args)}: plan said {step} {action}, but it " \
                                                     f"{'acted' if acted[step] else 'did not act'}\n{p.stdout[-3000:]}"
    return plan, acted, p, (after["sent"] - before["sent"]) / 2**20


def status(**as_operator):
    return json.loads(tool("status", "--json", check=True, **as_operator).stdout)


def running_images(sandbox) -> set:
    return {daemon(sandbox, n)["DAEMON_IMAGE"].strip('"').rsplit("/", 1)[1] for n in live_instances(sandbox)}


def alerts(sandbox, mongo_path: str) -> list:
    f = burst(sandbox, mongo_path.lstrip("/"), "alerts.jsonl")
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def recipe_without_new_repos(sandbox):
    """Both operators' checkouts as upstream has them; a repo another test (or an
    earlier run) added with `keys` is taken out again, its keys and its host copies
    too, so this scenario adds it itself."""
    for clone, cfg in CHECKOUTS:
        checkout_as_upstream(clone, cfg)
        for key in (clone / "deploy/docker-images/devel").glob("deploy-keys/id_rsa.ampel-contrib-foo*"):
            key.unlink()
    for copy in burst(sandbox, "home/ampel").glob("Ampel-*/ampel-contrib-foo"):
        shutil.rmtree(copy)


def publish_recipe(message: str) -> str:
    """What the operator does after `keys`: commit the recipe's change and push it,
    so that colleagues build the same image. Returns the commit."""
    clone, cfg = CHECKOUTS[0]
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {cfg}")
    subprocess.run(["git", "-C", str(clone), "pull", "-q", "--rebase", "--autostash", "origin", "master"], env=env,
                   check=True, capture_output=True)
    subprocess.run(["git", "-C", str(clone), "-c", "user.name=op", "-c", "user.email=op@x", "commit", "-qam", message],
                   check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:master"], env=env, check=True)
    return git(clone, "rev-parse", "HEAD")


@pytest.mark.changes_recipe
def test_versions_in_the_order_operators_live_them(sandbox, tmp_path):
    stamp = f"s{int(time.time()) % 100000}"
    v = {name: f"{name}-{stamp}" for name in ("v0.3.6", "v0.3.7", "v0.3.8", "v0.4.0")}
    core, base = Upstream(tmp_path / "a", "Ampel-core"), Upstream(tmp_path / "b", "Ampel-base")
    changes = []
    try:
        recipe_without_new_repos(sandbox)
        deploy(sandbox, "--version", "v0.3.5")
        start = status()
        live = {k: start["env"][k] for k in ("MONGO_PATH", "GROUP_NAME")}

        # -- a code-only release: a line the AlertProcessor prints changes upstream
        release = f"0.3.6.{stamp}"
        core.change("ampel/core/services.py", lambda t: re.sub(r'RELEASE = "[^"]*"', f'RELEASE = "{release}"', t),
                    f"AlertProcessor {release}")
        changes.append(core)
        server, before = postmaster(sandbox), archived(sandbox)
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.3.6"])
        assert plan["image"] == plan["push"] == plan["pull"] == "skip" and "is reused as it is" in p.stdout
        assert acted["src"] and acted["tag"] and acted["up"]
        # burst only: transit's postgres keeps running; burst's new writers archive, no alert missing
        assert "==> up transit: skip" in p.stdout and postmaster(sandbox) == server
        assert eventually(lambda: set(archived(sandbox)) - set(before), bool), "the new release's writers archive nothing"
        assert sent < 5, f"a code-only release sent {sent:.1f} MiB to the hosts"
        now = status()
        assert now["env"]["AMPEL_TAG"] == start["env"]["AMPEL_TAG"], "a code-only release keeps AMPEL_TAG"
        assert {k: now["env"][k] for k in live} == live, "the live database continues"
        assert now["env"]["AMPEL_SRC"] == "/home/ampel/Ampel-v0.3"
        written = eventually(lambda: alerts(sandbox, live["MONGO_PATH"]),
                             lambda w: any(x["release"] == release for x in w))
        assert {w["group"] for w in written if w["release"] == release} == {live["GROUP_NAME"]}
        assert f"deployed/{v['v0.3.6']}-1" in {t.split(":", 1)[1].removeprefix("refs/tags/") for t in server_tags(sandbox)}
        # the tag's push left the next deploy clean: nothing left to do
        again = tool("plan", "--version", v["v0.3.6"], "--json", check=True)
        assert {s["step"]: s["action"] for s in json.loads(again.stdout)["steps"]} == dict.fromkeys(STEPS, "skip")
        # -- a no-op deploy: the plan printed is all skip, and nothing outside the tool saw a step act
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.3.6"])
        assert plan == dict.fromkeys(STEPS, "skip") and not any(acted.values()), acted
        assert "is up to date; nothing to do" in p.stdout

        # -- a new dependency: the image is rebuilt, pushed and pulled; the database continues
        base.change(*NEW_DEPENDENCY)
        changes.append(base)
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.3.7"])
        assert plan["image"] == "run" and acted["push"] and acted["pull"]
        assert "ampel-base: setup.py" in p.stdout
        now = status()
        assert now["env"]["AMPEL_TAG"] == v["v0.3.7"] and {k: now["env"][k] for k in live} == live
        assert running_images(sandbox) == {f"ampel-{v['v0.3.7']}.simg", "mongo-3.6.simg"}

        # -- a new contrib repo, added with `keys`: the image clones it, AMPEL_SRC gets it, it runs
        tool("keys", "--repo", "ampel-contrib-foo", check=True)
        sandbox_cmd("add-deploy-key", "ampel-contrib-foo", str(DEVEL / "deploy-keys/id_rsa.ampel-contrib-foo.pub"))
        core.made.append(publish_recipe("clone ampel-contrib-foo into the image"))
        if core not in changes:
            changes.append(core)
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.3.8"])
        assert plan["image"] == "run" and plan["src"] == "run"
        assert "ampel-contrib-foo added by the image" in p.stdout
        assert burst(sandbox, "home/ampel/Ampel-v0.3/ampel-contrib-foo/.git").is_dir()
        units = eventually(lambda: tool("logs", "alertprocessor", "--no-follow", "--grep", "units from", check=True).stdout,
                           lambda u: "ampel-contrib-foo" in u)
        assert "ampel-contrib-foo" in units and "ERROR" not in units
        v038 = status()
        assert {k: v038["env"][k] for k in live} == live

        # -- a schema change: a new live database and consumer group, in a new tree for the series
        core.change("ampel/db_schema.py", lambda t: t.replace("SCHEMA_VERSION = 3", "SCHEMA_VERSION = 4"),
                    "schema 4")
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.4.0"])
        # the schema marker is read in the new tree, after src made it: db is known only then
        assert plan["src"] == "run" and plan["db"] in ("maybe", "run") and acted["db"]
        assert "ampel/db_schema.py changed since the running" in p.stdout
        v040 = status()
        assert v040["env"]["MONGO_PATH"] == f"/data/ampel/mongo/live/{v['v0.4.0']}"
        assert v040["env"]["GROUP_NAME"] == f"ampel-{v['v0.4.0']}" and v040["env"]["AMPEL_SRC"] == "/home/ampel/Ampel-v0.4"
        assert burst(sandbox, "home/ampel/Ampel-v0.3/ampel-core").is_dir(), "the older series' tree is kept"

        # -- rollback across the new database: listed, refused off a terminal, then confirmed
        listed = tool("rollback", "--list", check=True).stdout
        assert re.search(rf"^{re.escape(v['v0.4.0'])} .* ok .*new database {re.escape(v040['env']['MONGO_PATH'])} "
                         rf"AMPEL_TAG={re.escape(v['v0.3.8'])} running$", listed, re.M), listed
        assert re.search(rf"^{re.escape(v['v0.3.8'])} .* ok ", listed, re.M)
        refused = tool("rollback", "--to", v["v0.3.8"], timeout=300)
        assert refused.returncode == 1 and "crosses a new live database" in refused.stderr
        before = observe(sandbox)
        p = tool("rollback", "--to", v["v0.3.8"], "--yes", timeout=600)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        assert f"resumes group {live['GROUP_NAME']} from its old offsets into {live['MONGO_PATH']}" in p.stderr
        after = observe(sandbox)
        assert after["files"] == before["files"] and after["engine"] == before["engine"], "nothing pulled or built"
        back = status()
        assert back["version"] == v["v0.3.8"] and back["healthy"]
        assert {k: back["env"][k] for k in live} == live and back["env"]["AMPEL_SRC"] == "/home/ampel/Ampel-v0.3"
        assert heads(sandbox)["Ampel-v0.3/ampel-core"] == v038["sources"]["ampel-core"]
        assert burst(sandbox, v040["env"]["MONGO_PATH"].lstrip("/")).is_dir(), "the newer database is kept"

        # -- hand-over: the second operator sees what the first sees, finds nothing to do for
        # the running version, and deploys the newer version again (a new deployment tag)
        op2 = second_operator(sandbox)
        checkout_as_upstream(*CHECKOUTS[1])  # their own `git pull`
        for key in DEVEL.glob("deploy-keys/id_rsa.ampel-contrib-foo*"):  # the team's new deploy key
            shutil.copy(key, CHECKOUTS[1][0] / "deploy/docker-images/devel/deploy-keys" / key.name)
        theirs = status(**op2)
        assert {k: theirs[k] for k in ("version", "env", "sources", "image_digest", "healthy")} == \
            {k: back[k] for k in ("version", "env", "sources", "image_digest", "healthy")}
        nothing = json.loads(tool("plan", "--version", v["v0.3.8"], "--json", check=True, **op2).stdout)
        assert {s["step"]: s["action"] for s in nothing["steps"]} == dict.fromkeys(STEPS, "skip"), nothing
        plan, acted, p, sent = deploy(sandbox, "--version", v["v0.4.0"], **op2)
        assert plan["image"] == plan["push"] == plan["pull"] == "skip" and not acted["push"]
        again = status()
        assert again["version"] == v["v0.4.0"] and again["healthy"] and again["operator"] == "ampelop2"
        assert again["env"]["MONGO_PATH"] == v040["env"]["MONGO_PATH"], "v0.4.0's own database again"
        tags = {t.split(":", 1)[1] for t in server_tags(sandbox)}
        assert f"refs/tags/deployed/{v['v0.4.0']}-1" in tags and f"refs/tags/deployed/{v['v0.4.0']}-2" in tags
    finally:
        for upstream in reversed(changes):
            upstream.revert()
        recipe_without_new_repos(sandbox)
