"""Faults in the middle of a step, injected when the step is seen acting (not after a
guessed delay): a host's sshd killed during `pull`, the registry stopped during
`push`, Ctrl-C at the steps of `deploy`. After each: one `error:` line, no
half-written file on any host, no lock left, and a plain re-run that completes.
"""
import json
import os
import re
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REGISTRY, REPO, sandbox_cmd, tool
from sandboxsite import STATE, Upstream, burst, live_instances

pytestmark = pytest.mark.sandbox
DOCKER = "/usr/bin/docker"
HOSTS = ("burst", "transit")


def singularity_dir(sandbox, host) -> Path:
    return Path(sandbox["host"][host]["root"], "data/ampel/singularity")


def parts(sandbox) -> list:
    """Temporary files of a pull or a write, on either host."""
    found = []
    for host in HOSTS:
        root = Path(sandbox["host"][host]["root"])
        for where in (root / "data/ampel/singularity", root / "home/ampel"):
            for dirpath, dirnames, filenames in os.walk(where):
                dirnames[:] = [d for d in dirnames if d != ".git"]
                found += [f"{host}:{dirpath}/{n}" for n in filenames if ".part-" in n or ".tmp-" in n]
    return found


def intact(sandbox, since: float) -> None:
    """Every file the tool writes on the hosts is whole."""
    assert not parts(sandbox), parts(sandbox)
    for host in HOSTS:
        for image in singularity_dir(sandbox, host).glob("*.simg"):
            digest = image.with_name(image.name + ".digest")
            if image.name.startswith("ampel-"):
                assert digest.read_text().startswith("sha256:"), f"{host}: {digest} is not whole"
            if image.stat().st_mtime >= since:
                with tarfile.open(image) as tar:  # reads it to the end: a cut file raises
                    assert tar.getmembers(), f"{host}: {image} is empty"
    env = burst(sandbox, "home/ampel/Ampel-v0.3/ampel-core/deploy/production/dryrun.env").read_text()
    assert all(f"\n{k}=" in "\n" + env for k in ("AMPEL_TAG", "AMPEL_SRC", "MONGO_PATH", "GROUP_NAME")), env
    state = burst(sandbox, "home/ampel/dryrun/.ampel-tasks")
    for manifest in state.glob("deployments/*.json"):
        json.loads(manifest.read_text())
    stack = burst(sandbox, "home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml").read_text()
    for name in yaml.safe_load(stack)["secrets"]:  # burst's own set (transit's are not copied there)
        local = STATE / "operator/secrets" / f"{name}.txt"
        assert burst(sandbox, f"home/ampel/dryrun/secrets/{local.name}").read_bytes() == local.read_bytes()
    assert not (state / "lock").exists(), "the lock is left"
    locks = list(burst(sandbox, "home/ampel").glob("Ampel-*/*/.git/*.lock"))
    assert not locks, f"git left its locks: {locks}"


def interrupted(args, when, act, timeout=600, env=None):
    """Run the tool as an operator does; once `when(stdout so far)` is true, `act(process)`."""
    # (the tool writes through a file description of its own: a seek of the reader's
    # would move a shared offset, and the tool's next line would overwrite the first)
    with open(STATE / "fault.out", "w") as sink:
        p = subprocess.Popen(["invoke", "-f", "config/sandbox.yaml", *args], cwd=REPO, stdout=sink,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                             env=dict(os.environ, **(env or {})))
    out = open(STATE / "fault.out")
    deadline, acted = time.time() + timeout, False
    try:
        while p.poll() is None and time.time() < deadline:
            out.seek(0)
            if not acted and when(out.read()):
                act(p)
                acted = time.strftime("%H:%M:%S")  # (the run log's clock: a late fault shows there)
            time.sleep(0.05)
        _, err = p.communicate(timeout=max(1, deadline - time.time()))
    finally:  # a failing check must not leave a deploy running into the next test
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    out.seek(0)
    assert acted, f"the fault was never injected:\n{out.read()[-3000:]}\n{err}"
    print(f"fault injected at {acted}, exit {p.returncode}")
    return p.returncode, out.read(), err


def logged_runs(version) -> str:
    """The run logs of `version`'s runs (each line timed), to show when a fault landed."""
    logs = sorted(Path.home().glob(f".local/state/ampel-tasks/runs/{version}.*.log"))
    return "\n".join(f"--- {f.name}\n{f.read_text()[-2500:]}" for f in logs)


def one_error(rc, err, *words):
    assert rc != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


def rerun(sandbox, since, version="v0.3.5"):
    """The plain command again (no --force: what was forced is what the fault cut)."""
    p = tool("deploy", "--version", version, "--yes", timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr
    intact(sandbox, since)
    assert json.loads(tool("status", "--json", check=True).stdout)["healthy"]
    return p


def pulling(sandbox, host):
    """A pull on `host` has written its first MiB."""
    def seen(_out):
        return any(f.stat().st_size > 2**20 for f in singularity_dir(sandbox, host).glob(".*.part-*"))
    return seen


def test_sshd_of_a_host_killed_during_pull(deployed):
    sandbox, since = deployed, time.time()

    def kill_sshd(_p):
        pids = subprocess.check_output(["ip", "netns", "pids", "ampel-transit"], text=True).split()
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass

    try:
        rc, out, err = interrupted(["deploy", "--version", "v0.3.5", "--force", "pull", "--yes"],
                                   pulling(sandbox, "transit"), kill_sshd)
        one_error(rc, err, "transit", "lost the connection")
        assert not (burst(sandbox, "home/ampel/dryrun/.ampel-tasks") / "lock").exists(), "burst's lock was released"
    finally:
        sandbox_cmd("up")  # the host's sshd again
    time.sleep(2)  # what the lost session started there ends (SIGPIPE)
    left = [p for p in parts(sandbox) if p.startswith("transit:")]
    assert left, "the cut pull left its temporary file (never under the image file's name)"
    plan = tool("plan", "--version", "v0.3.5", check=True).stdout
    assert "removes what an interrupted pull left: transit:.ampel-v0.3.5.simg.part-" in plan, plan
    p = rerun(sandbox, since)
    assert "removed what an interrupted pull left: .ampel-v0.3.5.simg.part-" in p.stdout, p.stdout


def test_registry_stopped_during_push(deployed):
    sandbox, since = deployed, time.time()
    # an empty registry: the push sends every layer
    subprocess.run([DOCKER, "rm", "-f", "-v", REGISTRY], check=True, capture_output=True)
    log_from = time.time()

    def uploading(_out):
        logs = subprocess.run([DOCKER, "logs", "--since", f"{log_from:.3f}", REGISTRY], capture_output=True, text=True)
        return "PATCH /v2/ampel/blobs/uploads/" in logs.stdout + logs.stderr

    rc, out, err = interrupted(["deploy", "--version", "v0.3.5", "--force", "push", "--yes"], uploading,
                               lambda _p: subprocess.run([DOCKER, "stop", "-t", "1", REGISTRY], capture_output=True))
    one_error(rc, err, "push of localhost:5000/ampel:v0.3.5 failed", "stopped answering")
    assert "==> pull" not in out and "==> up" not in out, "nothing after push started"
    intact(sandbox, since)
    # the registry stays stopped: a dry run says it would start it, and does not
    p = tool("deploy", "--version", "v0.3.5", "--force", "push", "--dry", check=True)
    assert f"[local] $ docker start {REGISTRY}" in p.stdout
    assert "exited" in subprocess.check_output([DOCKER, "inspect", "-f", "{{.State.Status}}", REGISTRY], text=True)
    p = tool("deploy", "--version", "v0.3.5", "--force", "push", "--yes", timeout=900)
    assert p.returncode == 0 and "exists but is exited: starting it" in p.stdout, p.stdout + p.stderr
    assert "verified: registry serves localhost:5000/ampel:v0.3.5" in p.stdout
    rerun(sandbox, since)


SMALL = "data/ampel/small"


def test_a_disk_filling_during_pull_leaves_nothing_and_a_rerun_completes(deployed):
    """burst's singularity directory is a filesystem with room for the pull when the
    plan checks; another writer then fills it while the layers arrive."""
    sandbox, since = deployed, time.time()
    pid = Path(sandbox["host"]["burst"]["root"], "run/sshd.pid").read_text().strip()
    small = Path(f"/proc/{pid}/root/{SMALL}")  # burst's own mount namespace, seen from here
    need = (singularity_dir(sandbox, "burst") / "ampel-v0.3.5.simg").stat().st_size * 2 + 48 * 2**20
    for host in HOSTS:
        Path(sandbox["host"][host]["root"], SMALL).mkdir(exist_ok=True)
    subprocess.run(["nsenter", "-t", pid, "-m", "mount", "-t", "tmpfs", "-o",
                    f"size={need // 2**20}m,uid=ampel,gid=ampel,mode=755", "tmpfs", f"/{SMALL}"], check=True)
    subprocess.run(["chown", "ampel:ampel", str(Path(sandbox["host"]["transit"]["root"], SMALL))], check=True)
    env = {"INVOKE_AMPEL_PATHS_SINGULARITY_DIR": f"/{SMALL}"}
    before = live_instances(sandbox)

    def arriving(_out):
        return any(f.stat().st_size > 2**20 for f in (small / "docker").glob("*.part-*"))

    def fill(_p):
        subprocess.run(["dd", "if=/dev/zero", f"of={small}/other-writer", "bs=1M"], capture_output=True)

    try:
        rc, out, err = interrupted(["pull", "--version", "v0.3.5"], arriving, fill, env=env)
        error = one_error(rc, err, "on burst: singularity pull of", "No space left on device",
                          "no image file was left")
        assert "transit" not in error, "transit's pull had room and completed"
        left = [str(f.relative_to(small)) for f in small.rglob("*")]
        assert not [f for f in left if ".part-" in f or f.endswith(".simg")], left
        assert (Path(sandbox["host"]["transit"]["root"], SMALL) / "ampel-v0.3.5.simg").is_file()
        assert not burst(sandbox, "home/ampel/dryrun/.ampel-tasks/lock").exists()
        assert live_instances(sandbox) == before, "the running stack was not touched"
        # room again: the same command completes, with the layers already there kept
        (small / "other-writer").unlink()
        p = tool("pull", "--version", "v0.3.5", env=env, timeout=600)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr
        recorded = (singularity_dir(sandbox, "burst") / "ampel-v0.3.5.simg.digest").read_text()
        assert (small / "ampel-v0.3.5.simg.digest").read_text() == recorded
        with tarfile.open(small / "ampel-v0.3.5.simg") as tar:
            assert tar.getmembers()
        intact(sandbox, since)
    finally:
        subprocess.run(["nsenter", "-t", pid, "-m", "umount", "-l", f"/{SMALL}"])
        for host in HOSTS:
            subprocess.run(["rm", "-rf", str(Path(sandbox["host"][host]["root"], SMALL))])


def ctrl_c(p):
    os.killpg(p.pid, signal.SIGINT)  # what a terminal sends: the tool's whole process group


def image_id(ref="ampel:v0.3.5"):
    return subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True).stdout


def leftover_test_containers():
    return subprocess.run([DOCKER, "ps", "-aq", "--filter", "label=org.ampelproject.step=test"], capture_output=True,
                          text=True).stdout.split()


@pytest.mark.parametrize("step", ["image", "test", "pull", "secrets", "up"])
def test_ctrl_c_during_a_step(deployed, step):
    """The running version, with the step forced: the next test needs no redeploy."""
    sandbox, since = deployed, time.time()
    before, built = live_instances(sandbox), image_id()
    # (a step acting per host prints "==> secrets transit:", then "==> secrets burst:")
    when = pulling(sandbox, "burst") if step == "pull" else (lambda out: re.search(rf"==> {step}( \w+)?:", out))
    if step == "secrets":  # while burst's are written (transit's few go by in a moment)
        when = (lambda out: "==> secrets burst:" in out)
    if step == "up":  # once deploy/up has begun to replace the stack
        when = (lambda out: "==> up burst:" in out and live_instances(sandbox) != before)
    rc, out, err = interrupted(["deploy", "--version", "v0.3.5", "--force", step, "--yes"], when, ctrl_c)
    one_error(rc, err, "interrupted")
    if step == "up":
        assert "stopping now would leave it half done" in err
        assert len(live_instances(sandbox)) == 22, "deploy/up was let finish: the whole stack runs"
    intact(sandbox, since)
    assert image_id() == built, "the running version's image is the one it was"
    assert not leftover_test_containers(), "no test container is left"
    rerun(sandbox, since)


@pytest.mark.moves_site
def test_ctrl_c_at_each_step_of_a_new_deployment_then_a_plain_rerun(running, tmp_path):
    """src, db and tag act only for another version: an operator deploys one with a
    code change upstream and a new database, and hits Ctrl-C three times, once in
    each of them, before letting a plain run finish (from whichever version runs)."""
    sandbox, since = running, time.time()
    version = f"v0.3.5-c{int(since) % 100000}"
    built = image_id()
    core = Upstream(tmp_path, "Ampel-core")
    try:  # a code-only change upstream: src moves ampel-core's host copy
        core.change("ampel/core/services.py", lambda t: t + "\n# interrupted while src moves this\n", "a comment")
        for step in ("src", "db", "tag"):
            rc, out, err = interrupted(["deploy", "--version", version, "--new-db", "--yes"],
                                       lambda out, step=step: re.search(rf"==> {step}( \w+)?:", out), ctrl_c)
            assert rc != 0, f"Ctrl-C in {step} did not stop the run:\n{out[-3000:]}\n{err}\n{logged_runs(version)}"
            one_error(rc, err, "interrupted")
            assert "==> up burst:" not in out, f"interrupted in {step}, the run went on"
            intact(sandbox, since)
        assert image_id() == built
        rerun(sandbox, since, version)
    finally:
        core.revert()


def test_a_service_that_dies_at_start_is_ended_by_the_tools_timeout(deployed):
    """The catalog's mongod cannot start, so its port never opens; singularity-stack
    0.2.2 would retry for hours. The tool ends deploy/up after ampel.timeouts.up."""
    sandbox, since = deployed, time.time()
    lock = burst(sandbox, "data/ampel/catalogs/dryrun/mongod.lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()  # mongod's open() of its lock file fails: it dies at start
    try:
        t0 = time.time()
        p = tool("deploy", "--version", "v0.3.5", "--force", "up", "--yes", env={"INVOKE_AMPEL_TIMEOUTS_UP": "20"},
                 timeout=300)
        took = time.time() - t0
        error = one_error(p.returncode, p.stderr, "did not end within 20 s (ampel.timeouts.up) and was ended",
                          "connection refused on burst.zeuthen.desy.de:27018",
                          "back to v0.3.5: `invoke -f config/sandbox.yaml rollback --to v0.3.5`")
        assert took < 120, f"{took:.0f} s: {error}"
        # (the nannies of the services it started, in sessions of their own, run on)
        left = subprocess.run(["pgrep", "-f", "deploy/up dryrun"], capture_output=True, text=True).stdout.split()
        assert not left, "deploy/up was ended"
    finally:
        lock.rmdir()
    intact(sandbox, since)
    status = json.loads(tool("status", "--json", check=True).stdout)
    assert not status["healthy"]
    rerun(sandbox, since)
