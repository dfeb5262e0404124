"""Hosts: every command on burst and transit goes through `Host.run`, as
`Host.change` (printed, not run, under --dry) or `Host.read` (runs always).

That is where --dry stops the changes, where commands get the site's shell
environment (ampel.shell.preamble: conda's singularity-stack env and
SINGULARITY_CACHEDIR, which a non-interactive shell never reads) and become the
service user's (`sudo -n -u ampel`, the runbook's `sudo su ampel`), and where a
failure becomes one DeployError. The connection is OpenSSH's (see ssh.py): one
per host per run.
"""
from __future__ import annotations

import os
import re
import shlex
import threading
import time
from typing import Callable, Dict, List, Optional

from ..config import console
from . import readbatch, ssh
from ..config.errors import DeployError
from .processes import Result, execute
from ..config.settings import HostSettings, Settings

PREAMBLE_FAILED = 97


DRY_RESULT = Result("", "", 0)


def with_preamble(cmd: str, preamble) -> str:
    """The command after the site's shell set-up lines; a failing line stops it
    with exit 97 and is named."""
    lines = [
        f"{line} || {{ echo {shlex.quote('ampel-tasks: the shell preamble failed at: ' + line)} >&2; exit {PREAMBLE_FAILED}; }}"
        for line in preamble
    ]
    return "\n".join(lines + [cmd])


def as_user(cmd: str, user: Optional[str], preamble=()) -> str:
    """The command in the site's shell environment, as `user` through sudo (no
    password prompt) when given: `sudo su ampel` and `conda activate
    singularity-stack`, made explicit."""
    script = shlex.quote(with_preamble(cmd, preamble))
    if not user:
        return f"bash -c {script}" if preamble else cmd
    return f"sudo -n -u {shlex.quote(user)} -H -- bash -c {script}"


def failure_detail(host: str, shown: str, result: Result, preamble, user) -> str:
    """One line for a failed remote command; a program that the site's environment
    does not provide, or a failing preamble line, is named with the setting."""
    err = result.stderr.strip() or result.stdout.strip()
    who = f"as {user}" if user else "as you"
    if result.exited == PREAMBLE_FAILED and "the shell preamble failed at:" in err:
        line = err.split("the shell preamble failed at:", 1)[1].splitlines()[0].strip()
        return (f"on {host}: the shell set-up line `{line}` failed {who} (ampel.shell.preamble); "
                f"{console.redact(err.splitlines()[0])}")
    if result.exited == 127:
        m = re.search(r"([^\s:]+): (?:command )?not found", err)
        prog = m.group(1) if m else shown.split()[0]
        return (f"on {host}: `{prog}` was not found {who} after the shell set-up "
                f"(ampel.shell.preamble: {'; '.join(preamble) or 'none'}); log in, `sudo su {user or ''}`, "
                f"run those lines and `command -v {prog}` to see why")
    last = err.splitlines()[-3:]
    detail = console.redact(" | ".join(last)) or "no output"
    return f"on {host}: `{shown}` failed with exit {result.exited}: {detail}"


class Host:
    """One remote host of the run."""

    def __init__(self, spec: HostSettings, settings: Settings, dry: bool):
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.dry = dry
        self._master: Optional[ssh.Master] = None
        self.unreachable: Optional[str] = None
        self._lock = threading.Lock()
        # reads sent ahead in one command (prefetch): their answers, until dropped
        self._fetched: Dict[readbatch.Read, Result] = {}
        self._pending: set = set()
        self._ready = threading.Event()
        self._ready.set()
        self._asked: Optional[List[readbatch.Read]] = None  # the reads asked while recording

    @property
    def where(self) -> str:
        return f"{self.name} ({self.spec.hostname})"

    def connection(self) -> ssh.Master:
        with self._lock:
            if self._master is not None:
                return self._master
            if self.unreachable:
                raise DeployError(self.unreachable)
            master = ssh.Master(self.settings, self.spec)
            try:
                master.open(self.where)
            except DeployError as exc:
                self.unreachable = str(exc)
                raise
            self._master = master
            return master

    def close(self) -> None:
        if self._master is not None:
            self._master.close()
            self._master = None

    def change(self, cmd: str, **options) -> Result:
        """A command that changes the host: printed exactly as it would run, not run, under --dry."""
        return self.run(cmd, mutating=True, **options)

    def read(self, cmd: str, **options) -> Result:
        """A command that only reads: it runs under --dry too."""
        return self.run(cmd, mutating=False, **options)

    def run(self, cmd: str, *, mutating: bool, user: Optional[str] = None, warn: bool = False,
            stream: bool = False, show: Optional[str] = None, prefix: str = "", data: Optional[bytes] = None,
            on_line: Optional[Callable[[str], None]] = None, shield: Optional[str] = None, fresh: bool = False) -> Result:
        """Run `cmd` on the host (as `user` if given), `data` on its stdin.

        `mutating` has no default: each command says whether it changes the host
        (then, in --dry, it is printed, not run) or only reads (it runs). `show` replaces the
        command in what is printed (for commands carrying data, never secrets).
        `stream` hands output lines to the run log as they come (printed with
        --verbose); `on_line` receives them instead. `shield`: see execute(). `fresh`: a
        read whose answer changes by the moment (a poll): never sent ahead nor answered so.
        """
        if self.dry and mutating:
            console.command(self.name, show or cmd, user)
            return DRY_RESULT
        _record(self.spec.hostname, as_user(cmd, user, self.settings.preamble), data)
        plain = data is None and not stream and on_line is None and shield is None and not fresh
        answer = self._answered((user, cmd)) if plain and not mutating else None
        if mutating:
            self.drop_fetched()
        if answer is not None:
            console.trace(f"[{self.name}] read ahead, exit {answer.exited}", show or cmd)
            return self._checked(answer, show or cmd, user, warn)
        return self._checked(self._send(cmd, user, show, data, stream, prefix, on_line, shield), show or cmd, user, warn)

    def _send(self, cmd, user, show, data, stream, prefix, on_line, shield) -> Result:
        master = self.connection()
        remote = as_user(cmd, user, self.settings.preamble)
        argv = ssh.remote_argv(master, remote)
        printer = (lambda line: console.detail(prefix + line)) if stream else None
        t0 = time.time()
        result = execute(argv, data, on_line or printer, printer, shield)
        if result.exited == 255 and not master.alive():
            raise DeployError(f"on {self.name}: lost the connection while running `{show or cmd}`: "
                              f"{console.redact(result.stderr.strip()[-200:]) or 'no output'}")
        console.trace(f"[{self.name}] {time.time() - t0:.2f}s exit {result.exited}", show or cmd)
        return result

    def _checked(self, result: Result, shown: str, user, warn: bool) -> Result:
        if not result.ok and (not warn or result.exited in (127, PREAMBLE_FAILED)):
            raise DeployError(failure_detail(self.name, shown, result, self.settings.preamble, user))
        return result

    # -- reads sent ahead in one command ----------------------------------------
    def expect(self, reads: List[readbatch.Read]) -> None:
        """`reads` will come in one batch (`prefetch`): until it has, a read among them waits for it."""
        with self._lock:
            self._pending = set(reads)
            if reads:
                self._ready.clear()

    def prefetch(self, reads: List[readbatch.Read]) -> None:
        """Send `reads` in one command; each answer is served to the same read (command
        and user) when it is asked, until the host is changed or `drop_fetched` (the
        plan's end: what later steps read is read then).
        A batch that fails serves nothing: every read then goes on its own."""
        try:
            if reads:
                res = self._send(readbatch.script([as_user(c, u, self.settings.preamble) for u, c in reads]),
                                 None, f"{len(reads)} reads at once", None, False, "", None, None)
                answers = readbatch.parse(res.stdout) if res.exited == 0 else {}
                with self._lock:
                    self._fetched = {reads[i]: a for i, a in answers.items() if i < len(reads)}
        except DeployError:
            pass  # (each read, on its own, says what is wrong)
        finally:
            with self._lock:
                self._pending = set()
            self._ready.set()

    def record_reads(self) -> None:
        """From now on, keep the reads asked (`recorded_reads`), polls left out."""
        self._asked = []

    def recorded_reads(self) -> List[readbatch.Read]:
        asked, self._asked = self._asked or [], None
        return asked

    def _answered(self, read: readbatch.Read) -> Optional[Result]:
        if self._asked is not None:
            self._asked.append(read)
        if read in self._pending:
            self._ready.wait()
        with self._lock:
            return self._fetched.get(read)

    def drop_fetched(self) -> None:
        """What the batch answered is not served any more (the plan's end, a change)."""
        with self._lock:
            self._fetched = {}

    def fact(self, cmd: str, *, user: Optional[str] = None) -> Optional[Result]:
        """Run a read-only command; None if the host cannot be reached in --dry."""
        try:
            return self.run(cmd, user=user, mutating=False, warn=True)
        except DeployError:
            if self.dry:
                return None
            raise

    def exists(self, path: str, *, user: Optional[str] = None) -> Optional[bool]:
        r = self.fact(f"test -e {shlex.quote(path)}", user=user)
        return None if r is None else r.ok

    def read_file(self, path: str, *, user: Optional[str] = None) -> Optional[str]:
        """The file's text; None when it does not exist (or --dry cannot reach the host)."""
        r = self.fact(f"cat {shlex.quote(path)}", user=user)
        if r is None:
            return None
        if not r.ok and "No such file" in r.stderr:
            return None
        if not r.ok:
            raise DeployError(f"on {self.name}: cannot read {path}: {r.stderr.strip() or 'no such file'}")
        return r.stdout

    def write_file(self, path: str, content: bytes, *, user: Optional[str] = None, mode: str = "0644",
                   backup: bool = False, show: Optional[str] = None) -> None:
        """Write atomically: a temp file beside the target with its mode set at
        creation, its size checked (a dropped connection ends stdin early, which
        `cat` cannot tell from the end), optionally a NAME.bak-<timestamp> copy,
        then a rename. The content travels on stdin, never on a command line."""
        data = content if isinstance(content, bytes) else content.encode()
        q = shlex.quote(path)
        tmp = shlex.quote(f"{path}.tmp-{os.getpid()}")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        umask = "%03o" % (0o777 & ~int(mode, 8))
        script = f"umask {umask} && cat > {tmp} && test \"$(wc -c < {tmp})\" -eq {len(data)} && chmod {mode} {tmp}"
        if backup:
            script += f" && (test ! -e {q} || cp -p {q} {shlex.quote(path + '.bak-' + stamp)})"
        script += f" && mv -f {tmp} {q} || {{ rm -f {tmp}; exit 1; }}"
        self.change(script, user=user, data=data, show=show or f"write {path} (mode {mode})")


def _record(hostname: str, remote: str, data: Optional[bytes]) -> None:
    """AMPEL_TASKS_RECORD=FILE: each command as it goes to the host, one JSON line
    (benchmarks/by_hand.py replays them; a command with data on stdin is marked)."""
    where = os.environ.get("AMPEL_TASKS_RECORD")
    if where:
        import json

        with open(where, "a") as f:
            f.write(json.dumps({"host": hostname, "command": remote, "stdin": data is not None}) + "\n")


class HostPool:
    """The run's hosts, each connected at most once."""

    def __init__(self, settings: Settings, dry: bool):
        self.settings = settings
        self.dry = dry
        self._hosts = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Host:
        with self._lock:  # (two threads asking at once still share one host, one connection)
            if name not in self._hosts:
                if name not in self.settings.hosts:
                    known = ", ".join(sorted(self.settings.hosts))
                    raise DeployError(f"unknown host {name!r}; configured hosts: {known}")
                self._hosts[name] = Host(self.settings.hosts[name], self.settings, self.dry)
            return self._hosts[name]

    def close(self) -> None:
        for h in self._hosts.values():
            h.close()

