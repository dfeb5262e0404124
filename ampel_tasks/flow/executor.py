"""The chain: make-style pre-tasks that share one version, one --dry, one run.

invoke runs pre-tasks without arguments and its maintainers decline to change
that (pyinvoke/invoke#229, #261; #730 never merged). Rather than keep the version
in a global config key that every pre-task must remember to read, this executor
passes the options the operator typed (`SHARED`) down to every pre-task that
declares a parameter of that name. So `invoke pull --version v0.3.5` runs
image, push and pull each with version=v0.3.5, exactly as if typed one by one,
and a task still works when called on its own. Steps are deduplicated by task,
so each runs once per invocation. Everything is validated before the first
task runs, and any exception is turned into one `error:` line.
"""
from __future__ import annotations

import inspect
import os
import time
from collections.abc import Mapping

from invoke import Call, Context, Executor, Task
from invoke.env import Environment
from invoke.exceptions import Exit, ParseError, UnexpectedExit

from ..config import console
from . import run as runs
from ..config.errors import DeployError, debug_enabled, describe
from .options import typed
from ..facts.state import State, now
from ..steps import ORDER, STEPS

SHARED = ("version", "dry", "yes")
# INVOKE_AMPEL_*: the prefix of `invoke` and `ampel-deploy` alike
ENV_PREFIX = "INVOKE_"
# tasks that act on one version and cannot run without it
VERSIONED = set(ORDER) | {"plan", "deploy"}
# runs of these keep a run log (every line, the hosts' output included)
LOGGED = set(ORDER) | {"deploy", "rollback"}


def _params(task: Task) -> set:
    return set(inspect.signature(task.body).parameters)


def _same_version(r) -> None:
    """`up --same`: the version the service host records as running."""
    if r.version:
        raise DeployError("--same starts the recorded version again; it takes no --version")
    current = State(r).current_version()
    if not current:
        raise DeployError("--same: no deployment is recorded on the service host; pass --version")
    r.set_version(current)


class ChainExecutor(Executor):
    def expand_calls(self, calls, inherited=None):
        ret = []
        for call in calls:
            if isinstance(call, Task):
                call = Call(call)
            kwargs = dict(call.kwargs)
            params = _params(call.task)
            for key, value in (inherited or {}).items():
                if key in params and kwargs.get(key) in (None, False, ""):
                    kwargs[key] = value
            call = Call(call.task, called_as=call.called_as, args=call.args, kwargs=kwargs)
            passing = dict(inherited or {})
            passing.update({k: kwargs[k] for k in SHARED if kwargs.get(k) not in (None, False, "")})
            ret.extend(self.expand_calls(call.pre, passing))
            ret.append(call)
            ret.extend(self.expand_calls(call.post, passing))
        return ret

    def dedupe(self, calls):
        """One call per task; a later call's options fill what an earlier lacks."""
        out = []
        by_task = {}
        for call in calls:
            first = by_task.get(call.task)
            if first is None:
                by_task[call.task] = call
                out.append(call)
                continue
            for key, value in call.kwargs.items():
                if first.kwargs.get(key) in (None, False, "", ()) and value not in (None, False, "", ()):
                    first.kwargs[key] = value
        return out

    def execute(self, *tasks):
        r = runs.begin(self.config, self._runtime_file())
        try:
            self._load_config()
            calls = self.dedupe(self.expand_calls(self.normalize(tasks)))
            _take_options(r, calls)
            console.verbose = r.options.verbose or bool(r.settings.output["verbose"])
            _open_log(r)
            result = self._run_calls(r, calls, tasks)
            for hook in r.on_success:
                hook()
            return result
        except (DeployError, Exit, ParseError, UnexpectedExit) as exc:
            self._failed(r, str(exc))
            console.logged(getattr(exc, "message", None) or f"error: {exc}")
            raise
        except KeyboardInterrupt:
            self._failed(r, "interrupted")
            raise DeployError("interrupted; nothing more was started", 130) from None
        except Exception as exc:
            self._failed(r, describe(exc))
            if debug_enabled():
                raise
            raise DeployError(describe(exc)) from None
        finally:
            _end(r)

    def _runtime_file(self):
        try:
            return self.core[0].args["config"].value if self.core else None
        except (KeyError, IndexError, AttributeError):
            return None

    def _load_config(self) -> None:
        """Every layer, INVOKE_AMPEL_* included, before the one validation. Our layering
        puts INVOKE_AMPEL_* above the -f profile (invoke's own order is the other way
        round): an operator's one-off override must win. invoke's public pieces only:
        its Environment loader reads the variables against the merged config (so
        their types are the keys' types), and they are set as modifications, the level
        above every file and flag (no flag of ours sets an `ampel` key)."""
        self.config.load_collection(self.collection.configuration())
        self.config.load_shell_env()
        ours = Environment(config=self.config, prefix=ENV_PREFIX).load().get("ampel")
        if ours:
            _modify(self.config["ampel"], ours)

    @staticmethod
    def _failed(r, error):
        for hook in r.on_failure:
            try:
                hook(error)
            except Exception as exc:  # the original error matters more
                console.warn(f"could not record the failure: {exc}")

    def _run_calls(self, r, calls, tasks):
        direct = self.normalize(tasks)
        results = {}
        for call in calls:
            config = self.config
            config.load_collection(self.collection.configuration(call.called_as))
            config.load_shell_env()
            context = Context(config=config)
            runs.attach(context, r)
            before = set(r.changed)
            name = call.task.name
            t0 = time.time()
            try:
                result = call.task(context, *call.args, **call.kwargs)
            except BaseException:
                r.results[name] = "failed"
                _row(r, name, "failed", time.time() - t0)
                raise
            if name in ORDER:
                r.results[name] = "changed" if (r.changed - before) else "unchanged"
                _row(r, name, "changed" if r.results[name] == "changed" else "skipped", time.time() - t0)
                for hook in r.on_step:
                    hook(name, r.results[name])
            if call in direct and call.autoprint:
                print(result)
            results[call.task] = result
        return results


def _modify(proxy, values: dict) -> None:
    """Set nested `values` into a config section, key by key (a mapping merges)."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(proxy.get(key), Mapping):
            _modify(proxy[key], value)
        else:
            proxy[key] = value


def _where(r, step: str) -> str:
    where = STEPS[step].where
    if where == "local":
        return "local"
    if where == "archive" and r.settings.archive_host is not None:
        return r.settings.archive_host.name
    try:
        return r.settings.service_host.name
    except DeployError:
        return "?"


def _row(r, step: str, result: str, seconds: float) -> None:
    """The step's row(s) in the summary, unless the step reported its hosts itself."""
    reported = [row for row in r.rows if row[0] == step]
    if step not in ORDER or (reported and (result != "failed" or any(row[2] == "failed" for row in reported))):
        return
    r.row(step, _where(r, step), result, seconds)


def log_name(version, steps, started: str) -> str:
    """The run log's file name: the manifest's id (version and start), else the task (pure)."""
    stamp = started.replace(":", "").replace("-", "")
    return f"{version or next((s for s in steps if s in LOGGED), 'run')}.{stamp}.log"


def _open_log(r) -> None:
    if r.dry or not set(r.steps) & LOGGED:
        return
    r.outcome.started = r.outcome.started or now()
    folder = os.path.expanduser(r.settings.output["run_log_dir"])
    r.log_path = console.open_log(os.path.join(folder, log_name(r.version, r.steps, r.outcome.started)))
    if r.log_path:
        console.logged(f"ampel-tasks: {' '.join(r.steps)} {r.version or ''} by {r.settings.operator}")
        console.out(f"run log: {r.log_path}")


def _summary(r) -> None:
    """Every run that ran a step ends with a table: step x host, result, seconds."""
    if r.rows:
        ran = {row[0] for row in r.rows}
        failed = any(row[2] == "failed" for row in r.rows)
        rows = list(r.rows)
        if failed:
            rows += [(s, _where(r, s), "not run", 0.0) for s in ORDER if s in r.steps and s not in ran]
        order = {s: i for i, s in enumerate(ORDER)}
        rows.sort(key=lambda row: order.get(row[0], 99))
        console.out("")
        console.table(("step", "host", "result", "seconds"),
                      [(s, h, ("would run" if r.dry and res == "changed" else res), f"{sec:.1f}") for s, h, res, sec in rows])
    if r.log_path:
        console.out(f"run log: {r.log_path}")
    console.close_log()


def _take_options(r, calls) -> None:
    """Validate before anything runs: the typed settings, the one version, --dry,
    --force's steps; the options the operator typed, for every step of the chain."""
    r.settings  # noqa: B018 (builds and validates the typed settings)
    for call in calls:
        r.set_version(call.kwargs.get("version"))
        r.dry = r.dry or bool(call.kwargs.get("dry"))
        r.yes = r.yes or bool(call.kwargs.get("yes"))
    r.options = typed(c.kwargs for c in calls)
    unknown = r.force - set(ORDER)
    if unknown:
        raise DeployError(f"--force {sorted(unknown)[0]}: not a step; steps are {', '.join(ORDER)}")
    r.steps = [c.task.name for c in calls]
    if r.options.same:
        _same_version(r)
    if r.version is None and set(r.steps) & VERSIONED:
        need = next(s for s in r.steps if s in VERSIONED)
        raise DeployError(f"no version given for {need}; pass --version, e.g. --version v0.3.5")


def _end(r) -> None:
    """Whatever happened: the facts that could not be read, the summary table."""
    for host in (r._hosts._hosts.values() if r._hosts is not None else ()):
        if host.unreachable and r.dry:
            r.cant_read(host.unreachable)
    if r.unknown_facts:
        console.warn("facts that could not be read (steps depending on them are shown as they would run):\n  - "
                     + "\n  - ".join(r.unknown_facts))
    _summary(r)
    runs.end(r)
