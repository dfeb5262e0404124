"""Shared fixtures: the tool run as a user runs it, and the sandbox brought up once."""
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "sandbox"
# the sandbox's registry container (config/sandbox.yaml): not `registry`, which may be the machine's
REGISTRY = "ampel-sandbox-registry"


def _beside_python(binary: str) -> str:
    """The tool of the environment the tests run in (its venv's bin), not whichever is on PATH."""
    here = Path(sys.executable).parent / binary
    return str(here) if here.exists() else binary


def tool(*args, profile="config/sandbox.yaml", env=None, check=False, timeout=600, cwd=None, binary="invoke"):
    """Run `invoke -f PROFILE ARGS...` (or ampel-deploy) the way an operator does."""
    argv = [_beside_python(binary)] + (["-f", profile] if profile else []) + list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.pop("INVOKE_DEBUG", None)
    p = subprocess.run(argv, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# --dry with the production profile, offline: the hosts refuse at once, no engine (nothing
# is sent anywhere but this machine's loopback)
OFFLINE = {
    "INVOKE_AMPEL_HOSTS_BURST_HOSTNAME": "127.0.0.1", "INVOKE_AMPEL_HOSTS_BURST_PORT": "1",
    "INVOKE_AMPEL_HOSTS_TRANSIT_HOSTNAME": "127.0.0.1", "INVOKE_AMPEL_HOSTS_TRANSIT_PORT": "1",
    "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    # no Kerberos ticket, whatever this machine holds (a fresh one has none): a host that
    # cannot be reached is named as such, not blamed on the missing ticket
    "KRB5CCNAME": "FILE:/nonexistent/ampel-test-krb5cc",
}


# the shell set-up of user ampel on the sandbox's hosts, as the runbook's operator has it
PREAMBLE = ". /scratch/jvs/miniconda3/etc/profile.d/conda.sh; conda activate singularity-stack; " \
           "export SINGULARITY_CACHEDIR=/data/ampel/singularity"


def on(host, command, user="ampel", env=None, timeout=300):
    """A command on a sandbox host through the gateway, as the runbook's operator:
    `sudo su ampel`, then the conda env, then the command."""
    inner = command if user is None else f"sudo -n -u {user} -H bash -c {shlex.quote(PREAMBLE + '; ' + command)}"
    return subprocess.run(["ssh", "-F", "/var/lib/ampel-sandbox/ssh_config", host, inner], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, **(env or {})))


TRANSIT_ADDRESS = "10.77.2.2"  # transit's, in its network namespace (this machine reaches it)
SECRETS_DIR = Path("/var/lib/ampel-sandbox/operator/secrets")


def archive(sandbox) -> Path:
    """ARCHIVE_PATH on transit, as this machine sees it."""
    return Path("/var/lib/ampel-sandbox/hosts/transit/data/ampel/archive/dryrun")


def postmaster(sandbox) -> str:
    """The archive server's pid and start, from its postmaster.pid (changes when postgres restarts)."""
    lines = (archive(sandbox) / "postmaster.pid").read_text().splitlines()
    return f"{lines[0]} {lines[2]}"


def archive_query(sql: str, user="ampel-readonly", secret="archive-read-password") -> str:
    """A query to the archive on transit over TCP, as a client of it (psql)."""
    password = (SECRETS_DIR / f"{secret}.txt").read_text().strip()
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
                        f"postgresql://{user}:{password}@{TRANSIT_ADDRESS}:5432/ztfarchive"],
                       capture_output=True, text=True, timeout=30)
    return p.stdout.strip() if p.returncode == 0 else f"ERROR {p.stderr.strip()}"


def archived(sandbox) -> dict:
    """{writer pid: alerts it archived} from the archive's rows; each writer numbers its
    alerts 1, 2, ... (candid = pid * 10**7 + n): a gap is an alert missing."""
    rows = archive_query("SELECT candid / 10000000, count(*), max(candid % 10000000) FROM alert "
                         "WHERE objectId LIKE 'ZTF18%' GROUP BY 1")
    assert not rows.startswith("ERROR"), rows
    out = {}
    for line in rows.splitlines():
        pid, count, top = map(int, line.split("|"))
        assert count == top, f"writer {pid} archived {count} alerts numbered up to {top}: some are missing"
        out[pid] = count
    return out


def sandbox_cmd(*args, check=True):
    p = subprocess.run([str(SANDBOX), *args], cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"scripts/sandbox {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(autouse=True)
def _leaves_the_working_directory_as_it_was():
    """No test may change the directory every later test runs in (tests must not depend on their order)."""
    before = os.getcwd()
    yield
    after = os.getcwd()
    os.chdir(before)
    assert after == before, f"the test left the working directory at {after}"


@pytest.fixture(scope="session")
def sandbox():
    """A freshly reset sandbox (hosts, git server, registry engine), once per session."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the sandbox needs root; CI runs as root")
        pytest.skip("the sandbox needs root")
    # AMPEL_SANDBOX_KEEP=1 reuses the running sandbox (while iterating on one test)
    sandbox_cmd("up" if os.environ.get("AMPEL_SANDBOX_KEEP") else "reset")
    status = json.loads(sandbox_cmd("status", "--json").stdout)
    status["host"] = {h["name"]: h for h in status["hosts"]}
    return status


_LAST_TEST = {"id": None}
_REDEPLOYS = []


@pytest.fixture
def deployed(sandbox):
    """v0.3.5 deployed and healthy on the sandbox (a no-op deploy when it already is)."""
    return _deploy_v035(sandbox)


def _deploy_v035(sandbox):
    t0 = time.time()
    # (--new-archive: on a sandbox just made, transit's archive starts empty; it changes nothing on one that exists)
    p = tool("deploy", "--version", "v0.3.5", "--yes", "--new-archive", timeout=900)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    if "is up to date; nothing to do" not in p.stdout:  # for the summary: which test left the site changed
        _REDEPLOYS.append(f"{time.time() - t0:5.1f}s after {_LAST_TEST['id']}")
    return sandbox


@pytest.fixture
def running(sandbox):
    """Some deployment (whichever version) running healthy and without drift; v0.3.5 is
    deployed only when none is. For tests that deploy a version of their own."""
    p = tool("status", "--json", timeout=300)
    now = json.loads(p.stdout) if p.returncode == 0 else {}
    if now.get("healthy") and now.get("drift") == [] and now.get("stack") == "up":
        return sandbox
    return _deploy_v035(sandbox)


def pytest_collection_modifyitems(items):
    """Speed only, never correctness: each test asks for the state it needs. Tests that
    leave another deployment running go late, so the others find v0.3.5 up and the
    `deployed` fixture is a no-op for them; among those, the ones content with any
    running deployment (`running`) go last, so they follow one another without a
    redeploy; those that change the image recipe (a v0.3.5 deploy then rebuilds) come
    after them; the sandbox's teardown stays last."""
    def rank(item):
        if "test_zz_sandbox_down" in item.nodeid:
            return 3
        if item.get_closest_marker("changes_recipe"):  # (the versions test restores the recipe itself)
            return 2
        if not item.get_closest_marker("moves_site"):
            return 0
        # those needing v0.3.5 itself first, then those content with any deployment
        return 1 if "deployed" in item.fixturenames else 1.5
    items.sort(key=rank)  # stable: file order within each rank


def pytest_runtest_logfinish(nodeid, location):
    _LAST_TEST["id"] = nodeid


def pytest_terminal_summary(terminalreporter):
    """Where the suite pays for a redeploy of v0.3.5 (the order of files decides how often)."""
    if _REDEPLOYS:
        terminalreporter.write_sep("-", f"deployed: v0.3.5 deployed again {len(_REDEPLOYS)} times")
        for line in _REDEPLOYS:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    """Under CI a skipped test is a failure: every integration test must run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        print(f"\nCI: {skipped} test(s) skipped; every test must run in CI", file=sys.stderr)
        session.exitstatus = 1
