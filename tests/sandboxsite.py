"""What the sandbox tests share: where the hosts' files are, the stand-ins' records,
the git server as a developer pushes to it, the second operator. Helpers only: no
test and no fixture lives here (those are in the test modules and conftest.py)."""
import hashlib
import json
import os
import stat
import threading
import time
import subprocess
from pathlib import Path

from conftest import tool

STATE = Path("/var/lib/ampel-sandbox")
DAEMONS = "home/ampel/.singularity/daemon/burst.zeuthen.desy.de"
# the git server's repository for each directory under /Ampel
SERVER = {"ampel-core": "Ampel-core", "ampel-base": "Ampel-base", "ampel-contrib-hu": "ampel-contrib-hu",
          "ampel-contrib-foo": "ampel-contrib-foo"}


def eventually(fetch, until, within=60.0, every=0.5):
    """`fetch()` again until `until(value)` holds or `within` s have passed: the last
    value (the caller asserts on it). What a service does happens in its own time."""
    deadline = time.time() + within
    value = fetch()
    while not until(value) and time.time() < deadline:
        time.sleep(every)
        value = fetch()
    return value


def burst(sandbox, *parts):
    return Path(sandbox["host"]["burst"]["root"], *parts)


def transit(sandbox, *parts):
    return Path(sandbox["host"]["transit"]["root"], *parts)


def no_secret_in(sandbox, *texts):
    for text in texts:
        for value in sandbox["operator"]["secrets"].values():
            assert value not in text, "a secret value was printed"


def accepted(sandbox, host):
    log = Path(sandbox["host"][host]["root"], "sshd.log")
    return log.read_text().count("Accepted gssapi-with-mic") if log.exists() else 0


def status(sandbox):
    p = tool("status", "--json", check=True)
    return json.loads(p.stdout)


def instance(stack, service, replica):
    return hashlib.sha1(f"{stack}.{service}.{replica}".encode()).hexdigest()[:8]


def daemon(sandbox, name):
    """Singularity 2.x's daemon file of a live instance: DAEMON_PID, DAEMON_IMAGE."""
    text = burst(sandbox, DAEMONS, name).read_text()
    return dict(line.split("=", 1) for line in text.split())


def live_instances(sandbox):
    """{instance: pid} of the instances whose process is alive (a killed one leaves its
    daemon file until `singularity instance.list` notices)."""
    out = {}
    where = burst(sandbox, DAEMONS)
    for name in os.listdir(where) if where.is_dir() else ():
        try:  # (a file goes while a stack stops; a zombie is dead: this machine's PID 1 does not reap orphans)
            pid = daemon(sandbox, name)["DAEMON_PID"]
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out[name] = pid
        except (OSError, KeyError, ValueError):
            pass
    return out


# (the running archive on transit writes its own files: not the tool's doing)
def tree_digest(root: Path, skip=("var/log", "sshd.log", "run/", "var/tmp", "tmp", "proc", "dev", "usr", "etc",
                                  "data/ampel/archive")) -> dict:
    out = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in skip):
            continue
        for name in filenames:
            p = Path(dirpath, name)
            relp = os.path.relpath(p, root)
            # the running stack writes its live database: that is not the tool's doing
            if any(relp.startswith(s) for s in skip) or p.is_symlink() or name in ("alerts.jsonl", "mongod.lock"):
                continue
            st = p.stat()
            out[relp] = (hashlib.sha256(p.read_bytes()).hexdigest() if st.st_size < 50_000_000 else st.st_size,
                         stat.S_IMODE(st.st_mode), st.st_uid)
        out[rel + "/"] = stat.S_IMODE(os.stat(dirpath).st_mode)
    return out


class Upstream:
    """A clone of one of the git server's repos, to commit and push as a developer
    would (on top of whatever upstream has then, the tool's own commits included);
    `revert()` takes every change back (the net change is none)."""

    def __init__(self, tmp_path, repo):
        self.env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {STATE}/ssh_config")
        self.work = tmp_path / repo
        subprocess.run(["git", "clone", "-q", f"github:AmpelProject/{repo}.git", str(self.work)], env=self.env, check=True)
        self.git = ["git", "-C", str(self.work), "-c", "user.name=t", "-c", "user.email=t@t"]
        self.made = []
        self.tags = []

    def _sync(self):
        subprocess.run(self.git + ["pull", "-q", "--rebase", "origin", "master"], env=self.env, check=True,
                       capture_output=True)

    def change(self, path, edit, message):
        self._sync()
        f = self.work / path
        f.write_text(edit(f.read_text() if f.exists() else ""))  # (a new file: edit("") is its text)
        subprocess.run(self.git + ["add", "--", path], check=True)
        subprocess.run(self.git + ["commit", "-qm", message], check=True)
        subprocess.run(self.git + ["push", "-q", "origin", "HEAD"], env=self.env, check=True)
        self.made.append(subprocess.check_output(self.git + ["rev-parse", "HEAD"], text=True).strip())

    def head(self) -> str:
        self._sync()
        return subprocess.check_output(self.git + ["rev-parse", "HEAD"], text=True).strip()

    def tag(self, commit, name):
        """A release tag upstream (taken away again by revert())."""
        subprocess.run(self.git + ["push", "-q", "origin", f"{commit}:refs/tags/{name}"], env=self.env, check=True)
        self.tags.append(name)

    def revert(self):
        while self.tags:
            subprocess.run(self.git + ["push", "-q", "origin", f":refs/tags/{self.tags.pop()}"], env=self.env, check=True)
        self._sync()
        while self.made:
            subprocess.run(self.git + ["revert", "--no-edit", self.made.pop()], check=True, capture_output=True)
        subprocess.run(self.git + ["push", "-q", "origin", "HEAD"], env=self.env, check=True)


NEW_DEPENDENCY = ("setup.py", lambda t: t.replace("install_requires=['ampel-core']",
                                                  "install_requires=['ampel-core', 'PyYAML']"), "depend on PyYAML")


# -- v0.3.5, first deployment -------------------------------------------------------


def bare(sandbox, repo):
    return Path(sandbox["host"]["github"]["root"], "srv/git/AmpelProject", f"{SERVER[repo]}.git")


# the runbook's steps, in the order the plan lists them
STEPS = ("image", "test", "push", "pull", "src", "db", "tag", "secrets", "schema", "up")


def second_operator(sandbox) -> dict:
    """tool()'s arguments that make a run the second operator's: their profile, ticket
    cache and Docker engine (none of the first operator's images or registry)."""
    op2 = sandbox["operator2"]
    return {"profile": op2["profile"], "env": op2["env"]}


OP2 = STATE / "operator2"
CHECKOUTS = ((STATE / "operator/ampel-core", STATE / "ssh_config"), (OP2 / "ampel-core", OP2 / "ssh_config"))


def checkout_as_upstream(clone: Path, ssh_config: Path):
    """An operator's `git pull` (here: exactly upstream's master, nothing local)."""
    env = dict(os.environ, GIT_SSH_COMMAND=f"ssh -F {ssh_config}")
    subprocess.run(["git", "-C", str(clone), "fetch", "-q", "origin"], env=env, check=True)
    subprocess.run(["git", "-C", str(clone), "reset", "-q", "--hard", "origin/master"], check=True)


class ServiceLifetimes:
    """How long each service process of burst's replicas started during the block
    lived (`singularity run instance://...` of an AMPEL service, the nannies'
    children), read from /proc every 20 ms: the hosts share this machine's process
    table."""

    def __init__(self):
        self.seen = {}  # {pid: (first seen, last seen)}
        self.before = None  # (those running when it began)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while True:
            self._read(time.time())
            if self.before is None:
                self.before = set(self.seen)
            if self._stop.wait(0.02):
                return

    def _read(self, now: float):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "instance://" in args and " ampel-" in args or "nsenter" in args and " -- ampel-" in args:
                self.seen[pid] = (self.seen.get(pid, (now,))[0], now)

    def lives(self) -> list:
        return sorted(last - first for pid, (first, last) in self.seen.items() if pid not in (self.before or ()))
