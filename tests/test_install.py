"""The tool as it installs, outside the lock's comfort: the newest releases every
range of pyproject.toml allows, the oldest ones, and an operator's own install.

Each builds a virtual environment of Debian's python3 from nothing and runs the
CLI tier (every test that needs no sandbox) in it, so an upstream release that
breaks the tool is one red test naming the package and version, not a broken demo.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.version import Version

from conftest import OFFLINE

REPO = Path(__file__).resolve().parent.parent
DEBIAN_PYTHON = os.environ.get("AMPEL_PYTHON", "/usr/bin/python3")
pytestmark = pytest.mark.install


def pyproject_requirements() -> list:
    """The direct requirements pyproject.toml declares, the test extra's included."""
    text = (REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    test = re.search(r"^test = \[(.*?)\]", text, re.M).group(1)
    return re.findall(r'"([^"]+)"', deps + test)


def lower_bounds(requirements: list) -> dict:
    """`name>=X,<Y` -> {name: X}: the oldest release each range admits (pure)."""
    out = {}
    for req in requirements:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", req)
        if not m:
            raise AssertionError(f"{req!r} in pyproject.toml has no lower bound to test")
        out[m.group(1)] = m.group(2)
    return out


def test_every_range_has_a_lower_bound_and_invoke_an_upper_one():
    reqs = pyproject_requirements()
    assert set(lower_bounds(reqs)) == {"invoke", "docker", "python-dotenv", "GitPython", "PyYAML", "pytest"}
    assert any(re.fullmatch(r"invoke>=[\d.]+,<\d+", r) for r in reqs), reqs


def lock_pins() -> dict:
    return {m.group(1).lower(): m.group(2) for m in
            re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / "requirements/lock.txt").read_text(), re.M)}


def _run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


def make_venv(where: Path, *pip_args) -> Path:
    p = _run([DEBIAN_PYTHON, "-m", "venv", where])
    assert p.returncode == 0, p.stderr
    p = _run([where / "bin/python", "-m", "pip", "install", "-q", *pip_args], timeout=900,
             env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert p.returncode == 0, f"pip install {' '.join(map(str, pip_args))} failed:\n{p.stderr[-3000:]}"
    return where


def installed(venv: Path) -> dict:
    p = _run([venv / "bin/python", "-m", "pip", "list", "--format", "json"], check=True)
    return {d["name"].lower(): d["version"] for d in json.loads(p.stdout)}


def run_cli_tier(venv: Path, where: Path):
    """Every test that needs neither the sandbox nor another install, with this venv's
    python, invoke and ampel-deploy (its temporary files under `where`)."""
    env = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return _run([venv / "bin/python", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                 "--basetemp", where / "tmp",
                 "-m", "not sandbox and not install", "tests"], cwd=REPO, env=env, timeout=1200)


def _verdict(p, which: str, versions: dict) -> None:
    if p.returncode == 0:
        return
    pins = lock_pins()
    direct = {n.lower() for n in lower_bounds(pyproject_requirements())}
    differing = [f"{n} {v} (the lock has {pins.get(n, 'none')})" for n, v in sorted(versions.items())
                 if n in direct and pins.get(n) != v]
    raise AssertionError(f"with the {which} releases the ranges allow, the CLI tier fails; "
                         f"releases unlike the lock: {', '.join(differing) or 'none'}\n{p.stdout[-4000:]}")


def source_copy(where: Path) -> Path:
    """The project's files, to build from (two builds in one tree would share its build/)."""
    return Path(shutil.copytree(REPO, where / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache")))


def _newest(where: Path):
    venv = make_venv(where / "venv", "--upgrade", "--upgrade-strategy", "eager", f"{source_copy(where)}[test]")
    versions = installed(venv)
    _verdict(run_cli_tier(venv, where), "newest", versions)


def _oldest(where: Path):
    oldest = lower_bounds(pyproject_requirements())
    constraints = where / "oldest.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in oldest.items()))
    venv = make_venv(where / "venv", "-c", constraints, f"{source_copy(where)}[test]")
    versions = installed(venv)
    assert {n: Version(versions[n.lower()]) for n in oldest} == {n: Version(v) for n, v in oldest.items()}
    _verdict(run_cli_tier(venv, where), "oldest", versions)


@pytest.fixture(scope="module")
def tiers(tmp_path_factory):
    """Both installs and their CLI tiers side by side (each mostly waits on the package
    index, then takes one core); each test asks for its own outcome (its error raised there)."""
    with ThreadPoolExecutor(2) as pool:
        return {"newest": pool.submit(_newest, tmp_path_factory.mktemp("newest")),
                "oldest": pool.submit(_oldest, tmp_path_factory.mktemp("oldest"))}


def test_the_newest_releases_the_ranges_allow_run_the_cli_tier(tiers):
    tiers["newest"].result()


def test_the_oldest_releases_the_ranges_allow_run_the_cli_tier(tiers):
    tiers["oldest"].result()


def test_the_system_python_has_no_ampel_tasks():
    p = _run([DEBIAN_PYTHON, "-c", "import ampel_tasks"], cwd="/")
    assert p.returncode != 0 and "No module named 'ampel_tasks'" in p.stderr
    p = _run([DEBIAN_PYTHON, "-c", "import invoke"], cwd="/")
    assert p.returncode != 0, "invoke is installed into Debian's python"


def test_the_suite_runs_in_the_locked_venv():
    assert sys.prefix != sys.base_prefix, "pytest runs in the system python, not a venv"
    versions = installed(Path(sys.prefix))
    pins = lock_pins()
    wrong = {n: v for n, v in versions.items() if n in pins and pins[n] != v}
    assert not wrong, f"the suite's venv is not the lock's: {wrong}"


def as_nobody(argv, home: Path, **kw):
    """Run argv as an unprivileged user (nobody) whose home is `home`."""
    env = dict(OFFLINE, HOME=str(home), PATH="/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8")
    return _run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", *argv],
                env=env, cwd=home, timeout=900, **kw)


@pytest.fixture
def nobodys_home():
    with tempfile.TemporaryDirectory(prefix="ampel-operator-") as d:  # (pytest's tmp_path is root's alone)
        os.chmod(d, 0o755)
        home = Path(d) / "home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        yield home


def test_an_operator_installs_without_root_and_deploys_from_their_own_profile(nobodys_home):
    """The README's operator install: scripts/install as a user who is not root, then
    `ampel-deploy -f` with a site profile of their own, from their home."""
    home = nobodys_home
    before = _run(["git", "status", "--porcelain", "--ignored"], cwd=REPO).stdout
    p = as_nobody([REPO / "scripts/install"], home)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"linked as {home}/.local/bin/ampel-deploy" in p.stdout
    assert _run(["git", "status", "--porcelain", "--ignored"], cwd=REPO).stdout == before, "the install wrote into the clone"
    profile = home / "site.yaml"
    profile.write_text((REPO / "config/production.yaml").read_text())
    p = as_nobody([home / ".local/bin/ampel-deploy", "-f", profile, "deploy", "--version", "v0.3.5", "--dry"], home)
    assert p.returncode == 0, p.stderr
    assert "docker push localhost:5000/ampel:v0.3.5" in p.stdout
    assert "dry run of v0.3.5: nothing was changed" in p.stdout
    assert "Traceback" not in p.stderr
    versions = installed(home / ".local/share/ampel-tasks")
    assert {n: v for n, v in versions.items() if n in lock_pins()} == \
        {n: v for n, v in lock_pins().items() if n in versions}
