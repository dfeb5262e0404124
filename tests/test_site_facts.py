"""The sandbox is the site of AMPEL-FACTS.md, and the stand-ins behave like the real
programs at their command line. Each test fails if the sandbox, a stand-in or the
tool drifts from a fact: the runbook's own transcript of `deploy/up dryrun`, the
`list` table, both log formats, `logs`' first-line and truncation behaviour, the
nanny's lines, the hosts' shell environment, Kerberos through the gateway.
"""
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from conftest import on, tool

pytestmark = pytest.mark.sandbox
STATE = Path("/var/lib/ampel-sandbox")
from runbook_transcript import RUNBOOK_MONGO, RUNBOOK_REST, RUNBOOK_STOPPED  # noqa: E402


def test_deploy_up_prints_the_runbooks_transcript(deployed):
    src = "/home/ampel/Ampel-v0.3"
    p = on("burst", f"cd /home/ampel/dryrun && {src}/ampel-core/deploy/up dryrun")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    stopping = [l for l in lines if l.startswith("Stopping ")]
    assert len(stopping) == 22
    for line, name in zip(stopping, RUNBOOK_STOPPED):
        m = re.fullmatch(r"Stopping (\w{8}) instance of (/data/ampel/singularity/\S+\.simg) \(PID=\d+\)", line)
        assert m and m.group(1) == name, line
        assert m.group(2).endswith("mongo-3.6.simg") == (name in RUNBOOK_MONGO)
    rest = lines[len(stopping):]
    # the mongod stand-ins take as long to start as the runbook's did: retries, 1 s then 2 s
    assert rest[0] == RUNBOOK_REST[0]
    for port in ("27018", "27017"):
        tries = [l for l in rest if f":{port}" in l]
        assert tries[-1] == f"connected to burst.zeuthen.desy.de:{port}"
        want = [l for l in RUNBOOK_REST if f":{port}" in l][:-1]
        assert tries[:-1][:2] == want and all(re.fullmatch(
            rf"connection refused on burst\.zeuthen\.desy\.de:{port}, retry after \d+ s", l) for l in tries[:-1])
    assert rest[-10:] == RUNBOOK_REST[-10:]
    # and the tool sees it healthy again
    assert tool("status", "--json", check=True).stdout.count('"healthy": true') == 1


def test_list_shows_configured_replicas_whatever_runs(deployed):
    inst = hashlib.sha1(b"burst.alertprocessor.7").hexdigest()[:8]
    on("burst", f"singularity instance.stop {inst}")
    try:
        listed = on("burst", "singularity-stack list").stdout.splitlines()
        assert listed == RUNBOOK_REST[-10:], "0.2.2's list reads its cache: still 16 configured"
        live = on("burst", "singularity instance.list").stdout
        assert live.splitlines()[0].split() == ["DAEMON", "NAME", "PID", "CONTAINER", "IMAGE"]
        assert len([l for l in live.splitlines()[1:] if l.strip()]) == 21 and inst not in live
        assert on("burst", f"singularity instance.list {inst}").returncode == 1
    finally:
        assert tool("deploy", "--version", "v0.3.5", "--yes", timeout=300).returncode == 0


def test_logs_skip_each_files_first_line_and_start_again_at_each_deploy(deployed):
    inst = hashlib.sha1(b"burst.stats.0").hexdigest()[:8]
    shown = on("burst", "singularity-stack logs burst stats 0 --stdout").stdout.splitlines()
    raw = Path(deployed["host"]["burst"]["root"], f"var/tmp/ampel.singularity.{inst}.stdout").read_text().splitlines()
    assert raw[0].startswith("StatsPublisher 0.3.5 starting")
    assert shown == [f"(stats:0 stdout) {l}" for l in raw[1:len(shown) + 1]] and raw[0] not in "\n".join(shown)
    # padded to the longest service name when all are shown
    every = on("burst", "singularity-stack logs burst").stdout
    assert re.search(r"^\(stats         :0 stdout\) ", every, re.M)
    assert tool("deploy", "--version", "v0.3.5", "--yes", "--force", "up", timeout=300).returncode == 0
    after = Path(deployed["host"]["burst"]["root"], f"var/tmp/ampel.singularity.{inst}.stdout").read_text()
    assert len(after.splitlines()) < len(raw) + 2 and after.startswith("StatsPublisher 0.3.5 starting")


def test_later_releases_log_format_from_the_stand_in(deployed):
    p = on("burst", "SINGULARITY_STACK_STANDIN_LOGS=later singularity-stack logs burst mongo")
    line = p.stdout.splitlines()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} mongo:0 stdout  \u23b8 .*", line)


def test_the_hosts_shell_is_burst_s(sandbox):
    # a bare `sudo -u ampel sh -c` gets neither ~/.bashrc nor the conda env, as on burst
    bare = on("burst", "sudo -n -u ampel sh -c 'singularity-stack --version'", user=None)
    assert bare.returncode == 127 and "not found" in bare.stderr
    p = on("burst", "singularity-stack --version; singularity --version; echo $SINGULARITY_CACHEDIR; "
                    "hostname; hostname | cut -d. -f1")
    assert p.stdout.splitlines() == ["singularity-stack 0.2.2", p.stdout.splitlines()[1], "/data/ampel/singularity",
                                     "burst.zeuthen.desy.de", "burst"]
    assert re.fullmatch(r"2\.6\.\d+-\S+", p.stdout.splitlines()[1])
    # the nanny runs `singularity` with no PATH at all: Python then looks in /bin:/usr/bin
    found = on("burst", "env -i /usr/bin/python3 -c 'import shutil, os; print(os.path.realpath(shutil.which(\"singularity\", path=os.defpath)))'")
    assert found.stdout.strip() == "/usr/bin/singularity"
    assert on("transit", "hostname").stdout.strip() == "transit.zeuthen.desy.de"


def test_burst_takes_only_kerberos_logins_through_the_gateway(sandbox, tmp_path):
    cfg = STATE / "ssh_config"
    direct = subprocess.run(["ssh", "-F", str(cfg), "-o", "ProxyJump=none", "-o", "HostName=10.77.1.2",
                             "-o", "HostKeyAlias=burst.zeuthen.desy.de", "burst", "true"], capture_output=True, text=True)
    assert direct.returncode == 255, "burst must refuse logins that do not come through the gateway"
    key = subprocess.run(["ssh", "-F", str(cfg), "-o", "PreferredAuthentications=publickey", "-o", "PubkeyAuthentication=yes",
                          "-i", str(STATE / "operator/id_ed25519"), "burst", "true"], capture_output=True, text=True)
    assert key.returncode == 255 and "Permission denied" in key.stderr
    cache = f"FILE:{tmp_path}/ccache"
    assert on("burst", "true", user=None, env={"KRB5CCNAME": cache}).returncode == 255


def test_without_a_ticket_a_deploy_stops_at_once_naming_kinit(deployed, tmp_path):
    images = sorted(set(subprocess.check_output(["/usr/bin/docker", "images", "-q", "--no-trunc"]).split()))
    p = tool("deploy", "--version", "v0.3.6", "--yes", env={"KRB5CCNAME": f"FILE:{tmp_path}/none"}, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: ")
    assert "kinit" in p.stderr
    assert "==> " not in p.stdout, "nothing may start before the hosts are reached"
    assert sorted(set(subprocess.check_output(["/usr/bin/docker", "images", "-q", "--no-trunc"]).split())) == images
    assert tool("status", "--json", check=True).stdout.count('"version": "v0.3.5"') == 1


def test_one_kerberos_login_per_host_per_run(deployed):
    def logins(host):
        return Path(deployed["host"][host]["root"], "sshd.log").read_text().count("Accepted gssapi-with-mic for ampelop")

    before = {h: logins(h) for h in ("burst", "transit", "gateway")}
    tool("deploy", "--version", "v0.3.5", "--yes", check=True)
    after = {h: logins(h) for h in ("burst", "transit", "gateway")}
    assert after == {"burst": before["burst"] + 1, "transit": before["transit"] + 1, "gateway": before["gateway"] + 2}
