"""The state of one invocation: settings, version, --dry, hosts, steps done.

Why a run object and not the config: invoke gives each task its own config copy
(pyinvoke/invoke#309) and runs pre-tasks without arguments (#229, #261), so the
version given to `invoke deploy --version v0.3.5` must travel another way. The
`ChainExecutor` (configured as `tasks.executor_class`) reads the version, --dry
and --yes from the calls the operator typed, validates them once before any
task runs, hands them to every pre-task that takes them, and opens this Run;
every task of the chain then shares its settings and its SSH connections.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, FrozenSet, List, Optional, Set

from ..config.errors import DeployError, Refusal
from ..remote.hosts import HostPool
from .options import Options
from .outcome import Outcome
from ..config.settings import Settings, build_settings
from ..facts.site import Target, check_instance_name_length, fill_path
from ..config.version import validate_version


class Run:
    def __init__(self, config, runtime_file: Optional[str] = None):
        self.config = config
        self.runtime_file = runtime_file
        self._settings: Optional[Settings] = None
        self._hosts = None
        self.version: Optional[str] = None
        self.dry = bool(config.get("run", {}).get("dry", False)) if hasattr(config, "get") else False
        self.yes = False
        self.steps: List[str] = []
        # steps that changed something on a host, the engine or the registry
        self.changed: Set[str] = set()
        # the hosts each step changed, where it acts per host (src, secrets, up)
        self.changed_hosts: Dict[str, Set[str]] = {}
        self.options = Options()  # what the operator typed, for every step of the chain
        self.results: Dict[str, str] = {}
        self.on_success: list = []
        self.on_step: list = []
        self.on_failure: list = []
        self.unknown_facts: List[str] = []
        self.t0 = __import__("time").time()
        self.cache: Dict[str, object] = {}  # facts gathered once (`evidence`), by key
        self.target = Target()  # what the steps act for
        self.outcome = Outcome()  # what the run did, for its manifest and hooks
        self.cleanups = []
        # the summary table: (step, host, skipped|changed|failed|not run, seconds)
        self.rows: List[tuple] = []
        self.log_path: Optional[str] = None
        self._locks: Dict[str, threading.RLock] = {}  # one gathering per fact, whichever thread asks
        self._guard = threading.Lock()

    @property
    def force(self) -> FrozenSet[str]:
        """The steps `--force` names (the run's options)."""
        return self.options.force

    def invocation(self, *args: str) -> str:
        """The command line an operator types for `args`, with this run's profile."""
        import shlex

        profile = ["-f", self.runtime_file] if self.runtime_file else []
        return " ".join(shlex.quote(a) for a in ["invoke", *profile, *args])

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = build_settings(self.config, self.runtime_file)
        return self._settings

    @property
    def hosts(self):
        with self._guard:
            if self._hosts is None:
                self._hosts = HostPool(self.settings, self.dry)
            return self._hosts

    def host(self, name: str):
        return self.hosts.get(name)

    def set_version(self, version: Optional[str]) -> Optional[str]:
        if version in (None, ""):
            return self.version
        checked = validate_version(version, self.settings.version_pattern)
        if self.version is not None and checked != self.version:
            raise DeployError(f"two versions in one run ({self.version} and {checked}); deploy one at a time")
        check_instance_name_length(fill_path(self.settings.image_file, "ampel.image_file", version=checked),
                                   self.settings.runtime)
        self.version = checked
        return checked

    def require_version(self) -> str:
        if self.version is None:
            raise DeployError("no version given; pass --version, e.g. --version v0.3.5")
        return self.version

    def row(self, step: str, host: str, result: str, seconds: float) -> None:
        """One line of the run's summary table (a step reports its hosts itself, e.g. pull)."""
        self.rows.append((step, host, result, seconds))

    def cant_read(self, what: str) -> None:
        """Record a fact --dry could not read (say so at the end, never guess)."""
        if what not in self.unknown_facts:
            self.unknown_facts.append(what)

    def evidence(self, key: str, gather, after=(), foresees=False):
        """Gather a fact once per run; again if one of the steps in `after` has
        changed something since (their changes are what the fact is about).

        In --dry a fact that cannot be read (host unreachable, nothing built yet)
        is recorded as unknown and returns None; so is a fact that one of `after`
        would have changed (a dry run changed nothing: what is there to read is
        the state before, e.g. the registry's digest of an image a real run rebuilds),
        unless `foresees`: the gathering itself accounts for what those steps will do."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:  # (the plan reads ahead on threads: a second asker waits for the first)
            return self._evidence(key, gather, after, foresees)

    def gathered(self, key: str):
        """The fact under `key` if this run has gathered it already, else None (never
        gathers: for a reader that can do without it)."""
        with self._guard:
            return self.cache.get(key)

    def _evidence(self, key: str, gather, after, foresees):
        seen = frozenset(self.changed & set(after))
        if key in self.cache and self.cache.get(("seen", key), frozenset()) == seen:
            return self.cache[key]
        self.cache[("seen", key)] = seen
        if self.dry and seen and not foresees:
            self.cache[key] = None
            return None
        try:
            value = gather()
        except DeployError as exc:
            if not self.dry or isinstance(exc, Refusal):
                raise
            self.cant_read(f"{key} ({exc.text})")
            value = None
        self.cache[key] = value
        return value

    def close(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        self.cleanups.clear()
        if self._hosts is not None:
            self._hosts.close()


def started(read: Callable) -> Future:
    """`read()` going on on a thread of its own; `.result()` waits for it (and raises
    what it raised, on the asking thread)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(read)
    finally:
        pool.shutdown(wait=False)


def mark_changed(r: Run, step: str, host: str) -> None:
    """`step` changed something on `host`."""
    r.changed.add(step)
    r.changed_hosts.setdefault(step, set()).add(host)


def changed_on(r: Run, host: str, steps) -> Set[str]:
    """Which of `steps` changed something `host`'s stack runs from in this run: a step
    that acts per host counts where it acted; any other one (pull, db, tag) counts
    everywhere it changed something."""
    return {s for s in steps if s in r.changed and (s not in r.changed_hosts or host in r.changed_hosts[s])}


def begin(config, runtime_file: Optional[str] = None) -> Run:
    """A new run (the executor opens one per invocation and hands it to every task)."""
    return Run(config, runtime_file)


def end(r: Optional[Run]) -> None:
    if r is not None:
        r.close()


def attach(c, r: Run) -> None:
    """Hand the run to a task through its invoke Context: a plain instance attribute,
    set past invoke's DataProxy (whose attribute writes go into the config)."""
    object.__setattr__(c, "_ampel_run", r)


def start(c, version: Optional[str] = None, dry: bool = False) -> Run:
    """The run a task belongs to: the one its Context carries, else (a task called
    outside the executor) a fresh one, attached to that Context."""
    r = getattr(c, "_ampel_run", None)
    if r is None:
        r = Run(c.config)
        attach(c, r)
    if dry:
        r.dry = True
    r.set_version(version)
    return r


