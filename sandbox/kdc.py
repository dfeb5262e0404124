"""The sandbox's Kerberos realm: an MIT KDC (Debian's krb5-kdc) in its own network
namespace, host principals and keytabs for the gateway, burst and transit, and the
operator's principal with a keytab to `kinit` from (the sandbox's stand-in for
typing the password).

As at DESY, burst and transit accept GSSAPI logins only (no keys, no passwords),
with delegated credentials, and only from the gateway.
"""
import os
import subprocess
import time
from pathlib import Path

REALM = "AMPEL.SANDBOX"
KDC_ADDR = "10.77.4.2"
KRB5_CONF = Path("/etc/krb5.conf")


def krb5_conf():
    return (
        "# written by ampel-tasks' scripts/sandbox: the sandbox's realm\n"
        "[libdefaults]\n"
        f"  default_realm = {REALM}\n"
        "  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  rdns = false\n"
        "  forwardable = true\n  ticket_lifetime = 10h\n  renew_lifetime = 7d\n\n"
        "[realms]\n"
        f"  {REALM} = {{\n    kdc = {KDC_ADDR}\n    admin_server = {KDC_ADDR}\n  }}\n\n"
        "[domain_realm]\n"
        f"  .zeuthen.desy.de = {REALM}\n  zeuthen.desy.de = {REALM}\n"
    )


def kdc_conf(state: Path):
    d = state / "kdc"
    return (
        "[kdcdefaults]\n  kdc_ports = 88\n  kdc_tcp_ports = 88\n\n"
        "[realms]\n"
        f"  {REALM} = {{\n"
        f"    database_name = {d}/principal\n    key_stash_file = {d}/stash\n"
        f"    acl_file = {d}/kadm5.acl\n    max_life = 10h 0m 0s\n    max_renewable_life = 7d 0h 0m 0s\n"
        "  }\n\n[logging]\n"
        f"  kdc = FILE:{d}/kdc.log\n"
    )


def _env(state: Path):
    return dict(os.environ, KRB5_KDC_PROFILE=str(state / "kdc" / "kdc.conf"), KRB5_CONFIG=str(KRB5_CONF))


def _run(argv, state, check=True):
    p = subprocess.run([str(a) for a in argv], env=_env(state), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise SystemExit(f"sandbox: error: `{' '.join(map(str, argv))}` failed: {p.stderr.strip()}")
    return p


def realm(state: Path):
    """The configuration files and the database, made once."""
    d = state / "kdc"
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o700)
    if not KRB5_CONF.exists() or REALM not in KRB5_CONF.read_text():
        if KRB5_CONF.exists() and not Path(f"{KRB5_CONF}.before-ampel-sandbox").exists():
            os.replace(KRB5_CONF, f"{KRB5_CONF}.before-ampel-sandbox")
        KRB5_CONF.write_text(krb5_conf())
    (d / "kdc.conf").write_text(kdc_conf(state))
    (d / "kadm5.acl").write_text("")
    if not (d / "principal").exists():
        _run(["kdb5_util", "create", "-s", "-r", REALM, "-P", os.urandom(12).hex()], state)


def start(state: Path, netns: str):
    """krb5kdc in its namespace, once it answers on port 88."""
    import socket

    def answers():
        try:
            socket.create_connection((KDC_ADDR, 88), timeout=1).close()
            return True
        except OSError:
            return False

    if answers():  # (a pid file could name a reused pid)
        return
    pidfile = state / "kdc" / "krb5kdc.pid"
    pidfile.unlink(missing_ok=True)
    _run(["ip", "netns", "exec", netns, "krb5kdc", "-P", pidfile], state)
    for _ in range(100):
        if answers():
            return
        time.sleep(0.1)
    raise SystemExit(f"sandbox: error: the KDC did not answer on {KDC_ADDR}:88; see {state}/kdc/kdc.log")


def principal(state: Path, name: str, keytab: Path):
    """`name` with a random key, written to `keytab` (made anew each time)."""
    if _run(["kadmin.local", "-q", f"getprinc {name}"], state, check=False).stdout.find(f"Principal: {name}@") < 0:
        _run(["kadmin.local", "-q", f"addprinc -randkey {name}"], state)
    keytab.parent.mkdir(parents=True, exist_ok=True)
    if keytab.exists():
        keytab.unlink()
    _run(["kadmin.local", "-q", f"ktadd -k {keytab} {name}"], state)
    keytab.chmod(0o600)


def kinit(state: Path, user: str, keytab: Path, ccache: str = ""):
    """The operator's ticket (the default credentials cache, or `ccache`)."""
    env = _env(state)
    if ccache:
        env["KRB5CCNAME"] = ccache
    p = subprocess.run(["kinit", "-k", "-t", str(keytab), f"{user}@{REALM}"], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"sandbox: error: kinit {user} failed: {p.stderr.strip()}")
