"""OpenSSH, as the operator's own `ssh` is set up: one master connection per host
per run, every command and the registry tunnel multiplexed over it.

Why OpenSSH and not fabric/paramiko for the hosts: the site is reached as the
runbook assumes, `ssh transit.ifh.de` landing on transit with Kerberos (GSSAPI,
delegated credentials) through a gateway. paramiko lost GSSAPI in 4.0 (5.1 here
has no `ssh_gss`), and it reads only part of ssh_config. OpenSSH does GSSAPI,
ProxyJump, ProxyCommand and every other option of the operator's ~/.ssh/config
exactly as their own `ssh` does; connection sharing (ControlMaster) keeps it to
one authenticated connection per host per run, and `-O forward` puts the image
tunnel on that same connection.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import List, Optional

from ..config.errors import DeployError


def base_argv(settings, spec) -> List[str]:
    """ssh options every connection gets: the operator's config, strict host keys
    from the configured known_hosts, no prompts, explicit timeouts and keepalive."""
    t = settings.timeouts
    argv = ["ssh"]
    if os.path.exists(settings.ssh_config):
        argv += ["-F", settings.ssh_config]
    argv += [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={settings.known_hosts}",
        "-o", f"ConnectTimeout={t['connect']}",
        "-o", f"ServerAliveInterval={t['keepalive']}",
        "-o", "ServerAliveCountMax=3",
    ]
    if spec.port != 22:
        argv += ["-p", str(spec.port)]
    if spec.user:
        argv += ["-l", spec.user]
    return argv


class Master:
    """The one connection to a host: opened on first use, closed at the end of the run."""

    def __init__(self, settings, spec):
        self.settings, self.spec = settings, spec
        self.dir: Optional[str] = None

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "ctl")

    def argv(self, *extra: str) -> List[str]:
        return base_argv(self.settings, self.spec) + ["-S", self.socket, "-o", "ControlMaster=no", *extra]

    def open(self, where: str) -> None:
        """Authenticate once; `-f` returns when the master is ready (or failed)."""
        self.dir = tempfile.mkdtemp(prefix="ampel-ssh-")
        t = self.settings.timeouts
        argv = base_argv(self.settings, self.spec) + [
            "-M", "-S", self.socket, "-o", "ControlPersist=600", "-f", "-N", self.spec.hostname]
        limit = t["connect"] + t["banner"] + t["auth"] + 5
        try:
            # a session of its own: a terminal's Ctrl-C must not end the connection the tool
            # still needs to end its work on the host and release the lock
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=limit,
                               start_new_session=True)
        except subprocess.TimeoutExpired:
            self.close()
            raise DeployError(f"{where} did not complete an SSH login within {limit} s "
                              "(connect, banner and auth timeouts); is sshd running there?") from None
        if p.returncode != 0:
            self.close()
            # a host not reached at all is that, ticket or none; a login refused or cut short
            # (through the gateway: "Connection closed") without a ticket is the ticket
            if (not unreachable(p.stderr) and uses_kerberos(self.settings, self.spec)
                    and not kerberos_ticket()):
                raise DeployError(f"{where} is reached with Kerberos and you have no valid ticket: run `kinit` "
                                  "(then `klist` shows it) and try again")
            raise DeployError(login_error(where, p.stderr, self.settings.known_hosts))

    def alive(self) -> bool:
        if not self.dir or not os.path.exists(self.socket):
            return False
        p = subprocess.run(self.argv("-O", "check", self.spec.hostname), capture_output=True, timeout=10)
        return p.returncode == 0

    def close(self) -> None:
        if self.dir and os.path.exists(self.socket):
            subprocess.run(self.argv("-O", "exit", self.spec.hostname), capture_output=True, timeout=10)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def forward(self, remote_port: int, local_host: str, local_port: int, cancel: bool = False) -> None:
        spec = f"{remote_port}:{local_host}:{local_port}"
        p = subprocess.run(self.argv("-O", "cancel" if cancel else "forward", "-R", spec, self.spec.hostname),
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0 and not cancel:
            err = p.stderr.strip().splitlines()
            raise DeployError(f"the tunnel -R {spec} to {self.spec.hostname} did not come up: "
                              f"{err[-1] if err else 'no output'}; is port {remote_port} free there?")


def unreachable(stderr: str) -> bool:
    """OpenSSH said the host (or the gateway) was not reached: no login was tried (pure)."""
    return any(w in stderr for w in ("Connection refused", "Connection timed out", "No route to host",
                                     "Network is unreachable", "Could not resolve hostname"))


def login_error(where: str, stderr: str, known_hosts: str) -> str:
    """One line for a failed login, from what OpenSSH printed."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no output"
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        if "HAS CHANGED" in text:
            return f"host key of {where} does not match {known_hosts}: possible man-in-the-middle; check with your admins"
        name = re.search(r"known for (\S+) and you", text)
        return (f"host key of {where} is not in {known_hosts}; verify its fingerprint with your admins, then "
                f"accept it with `ssh -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts} "
                f"{name.group(1) if name else where.split()[0]} true`")
    if "Permission denied" in text:
        if "gssapi" in text and not kerberos_ticket():
            return (f"{where} takes Kerberos logins only and you have no valid ticket: run `kinit` "
                    f"(then `klist` shows it) and try again")
        return f"ssh to {where} refused our credentials ({last}); check your Kerberos ticket (`klist`) or key"
    if "banner exchange" in text:
        return f"{where} accepted the connection but never spoke SSH (banner timeout); is sshd running there?"
    if "timed out" in text:
        return f"cannot reach {where}: connection timed out; check the host name, gateway and ampel.hosts settings"
    if "Connection refused" in text:
        return f"cannot reach {where}: connection refused; is sshd running and is the port right?"
    if "Could not resolve hostname" in text:
        return f"cannot resolve {where}: {last}"
    return f"cannot reach {where}: {last}"


def uses_kerberos(settings, spec) -> bool:
    """Whether the operator's ssh_config has GSSAPI for this host (`ssh -G`)."""
    p = subprocess.run(base_argv(settings, spec) + ["-G", spec.hostname], capture_output=True, text=True, timeout=10)
    return "\ngssapiauthentication yes" in "\n" + p.stdout


def kerberos_ticket() -> bool:
    """A valid ticket in the default credentials cache (`klist -s`)."""
    if not shutil.which("klist"):
        return False
    return subprocess.run(["klist", "-s"], capture_output=True).returncode == 0


def remote_argv(master: Master, command: str) -> List[str]:
    """One command over the master; OpenSSH hands it to the login shell as one string."""
    return master.argv("-T", master.spec.hostname, "--", command)
