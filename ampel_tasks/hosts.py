"""Hosts: one fabric Connection per host for the whole run, opened lazily.

Every command on a host goes through `Host.run`, which is where --dry stops
mutating commands, where commands become the service user's (`sudo -n -u ampel`,
the runbook's `sudo su ampel`), and where an SSH fault becomes one DeployError.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Optional

from . import console
from .errors import DeployError
from .settings import HostSettings, Settings


@dataclass
class Result:
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


DRY_RESULT = Result("", "", 0)


PREAMBLE_FAILED = 97


def with_preamble(cmd: str, preamble) -> str:
    """The command after the site's shell set-up lines (conda, SINGULARITY_CACHEDIR);
    a failing line stops it with exit 97 and names the line."""
    lines = [
        f"{line} || {{ echo {shlex.quote('ampel-tasks: the shell preamble failed at: ' + line)} >&2; exit {PREAMBLE_FAILED}; }}"
        for line in preamble
    ]
    return "\n".join(lines + [cmd])


def as_user(cmd: str, user: Optional[str], preamble=()) -> str:
    """Wrap a shell command so it runs in the site's shell environment, as `user`
    through sudo (no password prompt) when given: `sudo su ampel` and `conda
    activate singularity-stack`, made explicit."""
    script = shlex.quote(with_preamble(cmd, preamble))
    if not user:
        return f"bash -c {script}" if preamble else cmd
    return f"sudo -n -u {shlex.quote(user)} -H -- bash -c {script}"


def failure_detail(host: str, shown: str, result, preamble, user) -> str:
    """One line for a failed remote command; a program that the site's environment
    does not provide, or a failing preamble line, is named with the setting."""
    err = (result.stderr.strip() or result.stdout.strip())
    who = f"as {user}" if user else "as you"
    if result.exited == PREAMBLE_FAILED and "the shell preamble failed at:" in err:
        line = err.split("the shell preamble failed at:", 1)[1].splitlines()[0].strip()
        return (f"on {host}: the shell set-up line `{line}` failed {who} (ampel.shell.preamble); "
                f"{console.redact(err.splitlines()[0])}")
    if result.exited == 127:
        import re

        m = re.search(r"([^\s:]+): (?:command )?not found", err)
        prog = m.group(1) if m else shown.split()[0]
        return (f"on {host}: `{prog}` was not found {who} after the shell set-up "
                f"(ampel.shell.preamble: {'; '.join(preamble) or 'none'}); log in, `sudo su {user or ''}`, "
                f"run those lines and `command -v {prog}` to see why")
    last = err.splitlines()[-3:]
    detail = console.redact(" | ".join(last)) or "no output"
    return f"on {host}: `{shown}` failed with exit {result.exited}: {detail}"


class _LastError(logging.Handler):
    """paramiko reports some faults (a missing SSH banner) only in its log; keep the
    last one for our error line instead of letting it print on stderr."""

    last = ""

    def emit(self, record):
        _LastError.last = record.getMessage()


_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(_LastError(level=logging.ERROR))
_paramiko_log.propagate = False


class Host:
    """One remote host of the run."""

    def __init__(self, spec: HostSettings, settings: Settings, dry: bool):
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.dry = dry
        self._conn = None
        self.unreachable: Optional[str] = None

    # -- connection -------------------------------------------------------
    def connection(self):
        if self._conn is not None:
            return self._conn
        if self.unreachable:
            raise DeployError(self.unreachable)
        from fabric import Config, Connection
        from paramiko import RejectPolicy

        s = self.settings
        t = s.timeouts
        cfg_kwargs = {}
        if os.path.exists(s.ssh_config):
            cfg_kwargs["runtime_ssh_path"] = s.ssh_config
        config = Config(**cfg_kwargs)
        conn = Connection(
            self.spec.hostname,
            user=self.spec.user or None,
            port=self.spec.port if self.spec.port != 22 else None,
            config=config,
            connect_timeout=t["connect"],
            connect_kwargs=_connect_kwargs(t, config, self.spec.hostname),
        )
        conn.client.set_missing_host_key_policy(RejectPolicy())
        if os.path.exists(s.known_hosts):
            conn.client.load_host_keys(s.known_hosts)
        where = f"{self.name} ({conn.host}:{conn.port})"
        try:
            conn.open()
        except Exception as exc:  # paramiko and socket faults become one line
            self.unreachable = _connect_error(where, exc, s.known_hosts, conn)
            raise DeployError(self.unreachable) from None
        conn.transport.set_keepalive(t["keepalive"])
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands ---------------------------------------------------------
    def run(
        self,
        cmd: str,
        *,
        user: Optional[str] = None,
        mutating: bool = True,
        warn: bool = False,
        stream: bool = False,
        in_stream=None,
        show: Optional[str] = None,
        prefix: str = "",
    ) -> Result:
        """Run `cmd` on the host (as `user` if given).

        In --dry a mutating command is printed, not run. `show` replaces the
        command in what is printed (for commands carrying data, never secrets).
        """
        if self.dry and mutating:
            console.command(self.name, show or cmd, user)
            return DRY_RESULT
        full = as_user(cmd, user, self.settings.preamble)
        conn = self.connection()
        t0 = time.time()
        outs = (_Redacting(prefix), _Redacting(prefix)) if stream else (None, None)
        try:
            r = conn.run(
                full,
                hide=not stream,
                warn=True,
                in_stream=in_stream if in_stream is not None else False,
                out_stream=outs[0],
                err_stream=outs[1],
            )
            for o in outs:
                if o is not None:
                    o.flush()  # a last line without its newline is still shown
        except (OSError, EOFError) as exc:
            raise DeployError(f"on {self.name}: lost the connection while running `{show or cmd}`: {exc}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("paramiko", "socket")):
                raise DeployError(f"on {self.name}: ssh failed while running `{show or cmd}`: {exc}") from None
            raise
        result = Result(r.stdout, r.stderr, r.exited)
        if os.environ.get("AMPEL_TASKS_TRACE"):
            import sys

            print(f"trace: [{self.name}] {time.time() - t0:.2f}s exit {r.exited}: {console.redact(show or cmd)[:150]}",
                  file=sys.stderr, flush=True)
        if not result.ok and (not warn or result.exited in (127, PREAMBLE_FAILED)):
            raise DeployError(failure_detail(self.name, show or cmd, result, self.settings.preamble, user))
        return result

    def fact(self, cmd: str, *, user: Optional[str] = None) -> Optional[Result]:
        """Run a read-only command; None if the host cannot be reached in --dry."""
        try:
            return self.run(cmd, user=user, mutating=False, warn=True)
        except DeployError as exc:
            if self.dry:
                return None
            raise exc

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

    def write_file(
        self, path: str, content: str, *, user: Optional[str] = None, mode: str = "0644",
        backup: bool = False, show: Optional[str] = None,
    ) -> None:
        """Write atomically: a temp file beside the target with its mode set at
        creation, optionally a NAME.bak-<timestamp> copy, then a rename."""
        q = shlex.quote(path)
        tmp = shlex.quote(f"{path}.tmp-{os.getpid()}")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        umask = "%03o" % (0o777 & ~int(mode, 8))
        script = f"umask {umask} && cat > {tmp} && chmod {mode} {tmp}"
        if backup:
            script += f" && (test ! -e {q} || cp -p {q} {shlex.quote(path + '.bak-' + stamp)})"
        script += f" && mv -f {tmp} {q} || {{ rm -f {tmp}; exit 1; }}"
        self.run_with_input(script, content.encode(), user=user, show=show or f"write {path} (mode {mode})")

    def run_with_input(self, cmd: str, data: bytes, *, user: Optional[str] = None, show: Optional[str] = None) -> Result:
        """Run `cmd` with `data` on its stdin, then EOF: how file contents (secrets
        included) reach a host without ever being part of a command line."""
        if self.dry:
            console.command(self.name, show or cmd, user)
            return DRY_RESULT
        conn = self.connection()
        t0 = time.time()
        try:
            chan = conn.transport.open_session(timeout=self.settings.timeouts["channel"])
            chan.exec_command(as_user(cmd, user, self.settings.preamble))
            chan.sendall(data)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                elif chan.exit_status_ready():
                    out += chan.recv(65536) if chan.recv_ready() else b""
                    break
                else:
                    chan.status_event.wait(0.05)
            code = chan.recv_exit_status()
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            chan.close()
        except Exception as exc:
            if isinstance(exc, DeployError):
                raise
            raise DeployError(f"on {self.name}: ssh failed while running `{show or cmd}`: {exc}") from None
        if os.environ.get("AMPEL_TASKS_TRACE"):
            import sys

            print(f"trace: [{self.name}] {time.time() - t0:.2f}s exit {code}: {show or cmd}", file=sys.stderr, flush=True)
        result = Result(out.decode(errors="replace"), err.decode(errors="replace"), code)
        if code != 0:
            raise DeployError(failure_detail(self.name, show or cmd, result, self.settings.preamble, user))
        return result


def _connect_kwargs(t: dict, config, hostname: str) -> dict:
    """Every timeout explicit (fabric's connect_timeout does not bound the banner
    wait, fabric#1342); Kerberos (GSSAPI) where ssh_config asks for it and this
    paramiko still supports it. Without it, reach Kerberos hosts through a
    ProxyCommand/ProxyJump that OpenSSH authenticates."""
    import inspect

    from paramiko import SSHClient

    kwargs = {"banner_timeout": t["banner"], "auth_timeout": t["auth"], "channel_timeout": t["channel"]}
    params = inspect.signature(SSHClient.connect).parameters
    if "gss_auth" in params:
        kwargs["gss_auth"] = _yes(conn_opt(config, hostname, "gssapiauthentication"))
        kwargs["gss_deleg_creds"] = _yes(conn_opt(config, hostname, "gssapidelegatecredentials"))
    return kwargs


def conn_opt(config, hostname: str, key: str) -> str:
    try:
        return str(config.base_ssh_config.lookup(hostname).get(key, ""))
    except Exception:
        return ""


def _yes(value: str) -> bool:
    return value.lower() == "yes"


class _Redacting:
    """A stream that prints remote output live, line by line, with secrets masked
    (and a prefix when several hosts speak at once)."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.buf = ""

    def write(self, data: str) -> None:
        self.buf += data
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            console.out(self.prefix + line)

    def flush(self) -> None:
        if self.buf:
            console.out(self.prefix + self.buf)
            self.buf = ""


def _connect_error(where: str, exc: Exception, known_hosts: str, conn) -> str:
    text = str(exc) or type(exc).__name__
    transport = getattr(conn.client, "_transport", None)
    if transport is not None:
        # paramiko's thread records why it gave up (e.g. no banner) a moment later
        transport.join(timeout=2)
    saved = getattr(transport, "saved_exception", None)
    if saved is not None:
        text = f"{text} ({saved})"
    name = type(exc).__name__
    if "not found in known_hosts" in text:
        return (
            f"host key of {where} is not in {known_hosts}; verify its fingerprint, then accept it with "
            f"`ssh-keyscan -p {conn.port} {conn.host} >> {known_hosts}`"
        )
    if name == "BadHostKeyException":
        return f"host key of {where} does not match {known_hosts}: possible man-in-the-middle; check with your admins"
    if "banner" in text.lower() or "banner" in _LastError.last.lower():
        return f"{where} accepted the connection but never spoke SSH (banner timeout); is sshd running there?"
    if isinstance(exc, socket.timeout) or "timed out" in text:
        return f"cannot reach {where}: connection timed out; check the host name, tunnel and ampel.hosts settings"
    if isinstance(exc, (ConnectionRefusedError,)) or "Unable to connect" in text or "refused" in text:
        return f"cannot reach {where}: connection refused; is sshd running and is the port right?"
    if name == "AuthenticationException":
        return f"ssh to {where} refused our credentials; check your key or Kerberos ticket (klist)"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where}: {text}"
    return f"cannot reach {where}: {name}: {text}"


class HostPool:
    """The run's hosts, each connected at most once."""

    def __init__(self, settings: Settings, dry: bool):
        self.settings = settings
        self.dry = dry
        self._hosts = {}

    def get(self, name: str) -> Host:
        if name not in self._hosts:
            if name not in self.settings.hosts:
                known = ", ".join(sorted(self.settings.hosts))
                raise DeployError(f"unknown host {name!r}; configured hosts: {known}")
            self._hosts[name] = Host(self.settings.hosts[name], self.settings, self.dry)
        return self._hosts[name]

    def close(self) -> None:
        for h in self._hosts.values():
            h.close()


class Tunnel:
    """The runbook's `ssh -R 5000:localhost:5000 HOST`, through OpenSSH.

    OpenSSH moves multi-GiB layers at full speed where in-process forwards stall
    (basecamp/kamal#1886); ExitOnForwardFailure plus a readiness token means the
    pull starts only once the forward really listens (kamal#1674).
    """

    TOKEN = "ampel-tunnel-ready"

    def __init__(self, host: Host, remote_port: int, local_host: str, local_port: int):
        self.host = host
        self.remote_port = remote_port
        self.local = (local_host, local_port)
        self.proc: Optional[subprocess.Popen] = None

    def argv(self) -> list:
        s = self.host.settings
        spec = self.host.spec
        argv = ["ssh"]
        if os.path.exists(s.ssh_config):
            argv += ["-F", s.ssh_config]
        argv += [
            "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes",
            "-o", f"UserKnownHostsFile={s.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={s.timeouts['connect']}",
            "-o", f"ServerAliveInterval={s.timeouts['keepalive']}",
            "-R", f"{self.remote_port}:{self.local[0]}:{self.local[1]}",
            "-p", str(spec.port),
        ]
        if spec.user:
            argv += ["-l", spec.user]
        argv += [spec.hostname, f"echo {self.TOKEN}; exec cat >/dev/null"]
        return argv

    def __enter__(self):
        if self.host.dry:
            console.command("local", " ".join(shlex.quote(a) for a in self.argv()[:-1]) + " (tunnel)")
            return self
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if line.strip() != self.TOKEN:
            self.proc.kill()
            err = self.proc.stderr.read().strip().splitlines()
            raise DeployError(
                f"tunnel to {self.host.name} (ssh -R {self.remote_port}:{self.local[0]}:{self.local[1]}) "
                f"did not come up: {err[-1] if err else 'no output'}; is port {self.remote_port} free there?"
            )
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return False
