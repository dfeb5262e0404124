"""Host commands at OpenSSH's boundary: a stand-in `ssh` on PATH records every
argv and runs the remote command locally, so these check exactly what reaches
the host, as whom, in which shell environment, over how many connections."""
import json
import os
import re
import signal
import stat
import sys
import threading
import time

import pytest
from invoke import Config

from ampel_tasks.remote import processes, ssh, tunnel
from ampel_tasks.flow import run as runs
from ampel_tasks.config.defaults import DEFAULTS
from ampel_tasks.config.errors import DeployError

FAKE_SSH = r'''#!PYTHON
import json, os, subprocess, sys
argv = sys.argv[1:]
with open(os.environ["FAKE_SSH_LOG"], "a") as f:
    f.write(json.dumps(argv) + "\n")
if "-O" in argv:
    sys.exit(0 if os.environ.get("FAKE_SSH_ALIVE", "1") == "1" else 255)
if "-M" in argv:
    err = os.environ.get("FAKE_SSH_LOGIN_ERROR")
    if err:
        sys.stderr.write(err + "\n")
        sys.exit(255)
    sys.exit(0)
cmd = argv[argv.index("--") + 1]
cut = os.environ.get("FAKE_SSH_CUT_STDIN")
if cut is None:
    sys.exit(subprocess.call(["bash", "-c", cmd]))
# the connection drops after CUT bytes of stdin: the host's command reads end of file there
sent = sys.stdin.buffer.read()[:int(cut)]
subprocess.run(["bash", "-c", cmd], input=sent)
sys.exit(255)
'''


@pytest.fixture
def burst(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ssh"
    fake.write_text(FAKE_SSH.replace("PYTHON", sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    # sudo as a no-op: run its command as we are, after `--`
    (bindir / "sudo").write_text('#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    (bindir / "sudo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_LOG", str(tmp_path / "ssh.log"))
    config = Config()
    config.load_collection(DEFAULTS)
    config["ampel"]["ssh_config"] = str(tmp_path / "none")
    config["ampel"]["known_hosts"] = str(tmp_path / "known_hosts")
    config["ampel"]["shell"]["preamble"] = ["export SINGULARITY_CACHEDIR=/data/ampel/singularity"]
    r = runs.begin(config)
    yield r, tmp_path / "ssh.log"
    runs.end(r)


def calls(log):
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_commands_run_in_the_sites_shell_as_the_service_user(burst):
    r, log = burst
    res = r.host("burst").run("echo $SINGULARITY_CACHEDIR", user="ampel", mutating=False)
    assert res.stdout == "/data/ampel/singularity\n"
    remote = calls(log)[-1]
    command = remote[remote.index("--") + 1]
    assert command.startswith("sudo -n -u ampel -H -- bash -c ")
    assert "export SINGULARITY_CACHEDIR=/data/ampel/singularity || {" in command


def test_one_connection_for_every_command_of_the_run(burst):
    r, log = burst
    for i in range(5):
        r.host("burst").run(f"true {i}", mutating=False)
    masters = [c for c in calls(log) if "-M" in c]
    assert len(masters) == 1
    assert "ControlPersist=600" in " ".join(masters[0]) and "-f" in masters[0] and "BatchMode=yes" in masters[0]
    assert all("ControlMaster=no" in " ".join(c) for c in calls(log) if "-M" not in c)


def test_data_travels_on_stdin_never_on_the_command_line(burst, tmp_path):
    r, log = burst
    target = tmp_path / "secret.txt"
    r.host("burst").write_file(str(target), b"hunter2-\x00\xffbinary", mode="0600", show="write (content not shown)")
    assert target.read_bytes() == b"hunter2-\x00\xffbinary"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not any("hunter2" in " ".join(c) for c in calls(log))


@pytest.mark.parametrize("cut", [0, 5])
def test_a_write_whose_connection_drops_leaves_the_old_file_whole(burst, tmp_path, monkeypatch, cut):
    """A Ctrl-C or a lost connection ends stdin early: the host's `cat` sees end of
    file, as after the whole content. What was received must not replace the file."""
    r, _ = burst
    target = tmp_path / "secret.txt"
    target.write_bytes(b"the old secret\n")
    monkeypatch.setenv("FAKE_SSH_CUT_STDIN", str(cut))
    with pytest.raises(DeployError):
        r.host("burst").write_file(str(target), b"the new secret\n", mode="0600", show="write (content not shown)")
    assert target.read_bytes() == b"the old secret\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("secret")] == ["secret.txt"]


def test_a_failing_command_is_one_line_naming_host_and_command(burst):
    r, _ = burst
    with pytest.raises(DeployError) as e:
        r.host("burst").run("echo something broke >&2; exit 3", mutating=False, show="false")
    assert str(e.value) == "on burst: `false` failed with exit 3: something broke"


def test_a_program_missing_from_the_sites_environment_is_named(burst):
    r, _ = burst
    with pytest.raises(DeployError) as e:
        r.host("burst").run("singularity-stack-nowhere list", user="ampel", mutating=False, warn=True)
    msg = str(e.value)
    assert "`singularity-stack-nowhere` was not found as ampel after the shell set-up" in msg
    assert "ampel.shell.preamble" in msg and "command -v singularity-stack-nowhere" in msg


def test_a_failing_preamble_line_is_named(burst):
    r, _ = burst
    r.settings.preamble[:] = [". /nonexistent/conda.sh"]
    with pytest.raises(DeployError) as e:
        r.host("burst").run("true", user="ampel", mutating=False)
    assert "the shell set-up line `. /nonexistent/conda.sh` failed as ampel (ampel.shell.preamble)" in str(e.value)


def test_dry_runs_no_mutating_command_and_opens_no_connection(burst, capsys):
    r, log = burst
    r.dry = True
    r.host("burst").dry = True
    r.host("burst").change("mkdir -p /data/ampel/mongo/live/v0.3.5", user="ampel")
    assert calls(log) == []
    assert "[burst] (as ampel) $ mkdir -p /data/ampel/mongo/live/v0.3.5" in capsys.readouterr().out


def test_a_refused_login_without_a_ticket_names_kinit(burst, monkeypatch):
    r, _ = burst
    monkeypatch.setenv("FAKE_SSH_LOGIN_ERROR", "ampelop@burst.zeuthen.desy.de: Permission denied (gssapi-with-mic).")
    monkeypatch.setenv("KRB5CCNAME", "FILE:/nonexistent/ccache")
    with pytest.raises(DeployError) as e:
        r.host("burst").run("true", mutating=False)
    assert "run `kinit`" in str(e.value) and "\n" not in str(e.value)


def test_login_errors_are_classified():
    where, kh = "burst (burst.ifh.de)", "/k"
    assert "not in /k" in ssh.login_error(where, "No ED25519 host key is known for burst.zeuthen.desy.de and you "
                                          "have requested strict checking.\nHost key verification failed.", kh)
    assert "man-in-the-middle" in ssh.login_error(where, "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\n"
                                                  "Host key verification failed.", kh)
    assert "never spoke SSH" in ssh.login_error(where, "Connection timed out during banner exchange", kh)
    assert "connection refused" in ssh.login_error(where, "ssh: connect to host x port 22: Connection refused", kh)


def test_the_tunnel_is_a_forward_on_the_hosts_connection(burst):
    r, log = burst
    host = r.host("burst")
    with tunnel.Tunnel(host, 5000, "127.0.0.1", 5000):
        pass
    forwards = [c for c in calls(log) if "-O" in c]
    assert [c[c.index("-O") + 1] for c in forwards if "-R" in c] == ["forward", "cancel"]
    assert all(c[c.index("-R") + 1] == "5000:127.0.0.1:5000" for c in forwards if "-R" in c)
    assert len([c for c in calls(log) if "-M" in c]) == 1


def _interrupt_soon(delay=0.3):
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_a_shielded_command_is_waited_for_after_ctrl_c_then_the_interrupt_goes_on(tmp_path, capsys):
    done = tmp_path / "done"
    _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        processes.execute(["sh", "-c", f"sleep 1.5; touch {done}"], None, shield="deploy/up replaces the stack")
    assert done.exists(), "the command ran to its end"
    assert "interrupted while deploy/up replaces the stack" in capsys.readouterr().err


def test_an_unshielded_command_ends_at_ctrl_c(tmp_path):
    done = tmp_path / "done"
    _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        processes.execute(["sh", "-c", f"sleep 1.5; touch {done}"], None)
    time.sleep(1.6)
    assert not done.exists(), "the command was ended"


def test_every_command_says_whether_it_changes_the_host(burst, capsys):
    """A read that forgot to say so must not come back as an empty success under --dry."""
    r, log = burst
    host = r.host("burst")
    host.dry = True
    with pytest.raises(TypeError):
        host.run("cat /etc/hostname")
    assert host.read("echo read under --dry").stdout == "read under --dry\n"
    assert host.change("touch /nonexistent/x").stdout == "" and "$ touch /nonexistent/x" in capsys.readouterr().out


def remote_commands(log):
    return [c[c.index("--") + 1] for c in calls(log) if "--" in c]


def test_reads_sent_ahead_come_back_in_one_command_and_serve_until_dropped(burst, tmp_path):
    r, log = burst
    (tmp_path / "env").write_text("AMPEL_TAG=v0.3.5\nä\n")
    host = r.host("burst")
    reads = [("ampel", f"cat {tmp_path}/env"), (None, "echo out; echo err >&2; exit 3"), ("ampel", "printf ''")]
    host.connection()
    before = len(remote_commands(log))
    host.prefetch(reads)
    assert len(remote_commands(log)) == before + 1, "one command for every read"
    assert host.read(f"cat {tmp_path}/env", user="ampel").stdout == "AMPEL_TAG=v0.3.5\nä\n"
    failed = host.run("echo out; echo err >&2; exit 3", mutating=False, warn=True)
    assert (failed.stdout, failed.stderr, failed.exited) == ("out\n", "err\n", 3)
    assert host.read("printf ''", user="ampel").stdout == ""
    assert len(remote_commands(log)) == before + 1
    (tmp_path / "env").write_text("AMPEL_TAG=v0.3.6\n")
    assert host.read(f"cat {tmp_path}/env", user="ampel").stdout == "AMPEL_TAG=v0.3.5\nä\n", "the batch's answer"
    host.drop_fetched()  # (the plan's end)
    assert host.read(f"cat {tmp_path}/env", user="ampel").stdout == "AMPEL_TAG=v0.3.6\n", "read again"
    assert len(remote_commands(log)) == before + 2


def test_a_change_to_the_host_drops_what_was_read_ahead(burst, tmp_path):
    r, log = burst
    (tmp_path / "f").write_text("before\n")
    host = r.host("burst")
    host.prefetch([(None, f"cat {tmp_path}/f")])
    host.change(f"echo after > {tmp_path}/f")
    assert host.read(f"cat {tmp_path}/f").stdout == "after\n"


def test_a_read_asked_while_its_batch_is_under_way_waits_for_it(burst, tmp_path):
    r, log = burst
    host = r.host("burst")
    read = (None, f"sleep 0.5; cat {tmp_path}/f")
    (tmp_path / "f").write_text("from the batch\n")
    host.expect([read])
    t = threading.Thread(target=host.prefetch, args=([read],))
    t.start()
    got = host.read(read[1]).stdout
    t.join()
    assert got == "from the batch\n" and sum("sleep 0.5" in c for c in remote_commands(log)) == 1


def test_a_failed_batch_serves_nothing_and_each_read_goes_on_its_own(burst, monkeypatch):
    r, log = burst
    host = r.host("burst")
    monkeypatch.setenv("FAKE_SSH_LOGIN_ERROR", "Permission denied (gssapi-with-mic)")
    host.expect([(None, "echo hi")])
    host.prefetch([(None, "echo hi")])  # (the login fails: nothing fetched, nobody left waiting)
    monkeypatch.delenv("FAKE_SSH_LOGIN_ERROR")
    host.unreachable = None
    assert host.read("echo hi").stdout == "hi\n"


def test_the_batch_runs_its_reads_side_by_side(tmp_path):
    """The batch script in a real shell: the first read waits for a file the last one
    makes, so it ends only if they run at once; outputs and exit codes kept apart."""
    import subprocess

    from ampel_tasks.remote import readbatch

    flag = tmp_path / "flag"
    cmds = [f"for i in $(seq 100); do [ -e {flag} ] && break; sleep 0.05; done; cat {flag}",
            "printf 'two\\nlines'; exit 1", f"echo made > {flag}"]
    out = subprocess.run(["sh", "-c", readbatch.script(cmds)], capture_output=True, text=True, timeout=30).stdout
    got = readbatch.parse(out)
    assert [(g.stdout, g.exited) for g in (got[0], got[1], got[2])] == [("made\n", 0), ("two\nlines", 1), ("", 0)]


def test_the_reads_asked_but_polls_are_recorded_once_each_and_kept(burst, tmp_path, monkeypatch):
    from ampel_tasks.remote import readbatch

    monkeypatch.setenv("AMPEL_TASKS_CACHE", str(tmp_path / "cache"))
    r, _ = burst
    host = r.host("burst")
    host.record_reads()
    host.read("cat /etc/hostname", user="ampel")
    host.read("echo @@PS; ps", fresh=True)  # (a poll)
    host.change("true")
    host.read("cat /etc/hostname", user="ampel")
    host.read("date", warn=True)
    readbatch.save(host.spec.hostname, host.recorded_reads())
    assert readbatch.load(host.spec.hostname) == [("ampel", "cat /etc/hostname"), (None, "date")]


def test_the_next_batch_holds_the_last_two_plans_reads_the_newest_first(tmp_path, monkeypatch):
    """A plan on an empty site (a first deploy's) reads little of what the next plan,
    on the site deployed, asks; the plan before it likely read that."""
    from ampel_tasks.remote import readbatch

    monkeypatch.setenv("AMPEL_TASKS_CACHE", str(tmp_path / "cache"))
    deployed = [("ampel", "cat /home/ampel/dryrun/dryrun.env"), ("ampel", "echo @@PS; ps -u ampel")]
    empty = [("ampel", "cat /home/ampel/dryrun/dryrun.env"), (None, "ls /data/ampel/singularity")]
    readbatch.save("burst.example", deployed)
    readbatch.save("burst.example", empty)
    assert readbatch.load("burst.example") == empty + deployed[1:]
    readbatch.save("burst.example", [(None, "date")])  # (only the last two plans are kept)
    assert readbatch.load("burst.example") == [(None, "date")] + empty
    # what an earlier release kept (one plan, a list) is read as one plan
    (tmp_path / "cache/reads/transit.example.json").write_text('[["ampel", "true"]]')
    assert readbatch.load("transit.example") == [("ampel", "true")]


def test_trace_lines_from_hosts_read_side_by_side_stay_whole_lines(burst, capfd, monkeypatch):
    """AMPEL_TASKS_TRACE: each host's reads go on a thread of their own in a plan; each
    trace line must reach stderr whole (the sandbox test and the benchmark parse them)."""
    monkeypatch.setenv("AMPEL_TASKS_TRACE", "1")
    r, _ = burst
    reads = [(None, f"echo {i}") for i in range(4)]
    hosts = [r.host("burst"), r.host("transit")]
    for host in hosts:
        host.prefetch(reads)
    capfd.readouterr()

    def ask(host):
        for _ in range(600):
            for _, cmd in reads:
                host.read(cmd)

    threads = [threading.Thread(target=ask, args=(h,)) for h in hosts for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = capfd.readouterr().err.splitlines()
    whole = [l for l in lines if re.fullmatch(r"trace: \[(burst|transit)\] read ahead, exit 0: echo \d", l)]
    assert len(whole) == len(lines) == 4 * 600 * 4, [l for l in lines if l not in whole][:3]
