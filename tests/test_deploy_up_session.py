"""deploy/up's session ends when deploy/up does. Singularity 2.x's `instance.stop`
leaves `{ sleep KILL_WAIT; kill -9 PID; } &` behind (libexec/cli/instance.stop.exec),
which holds the output it inherited: run plainly over ssh, deploy/up's session stayed
open until 10 s after its `rm`, and the health gate started that much later. In a
real shell, with such a sleeper behind."""
import subprocess
import time

from ampel_tasks.steps import up

BEHIND = "echo replaced; { sleep 30; true; } & echo 'to stderr' >&2; exit 3"


def test_the_session_ends_with_the_command_not_with_what_it_left_behind():
    t0 = time.time()
    p = subprocess.run(["bash", "-c", up.ending_with(BEHIND)], capture_output=True, text=True, timeout=60)
    assert time.time() - t0 < 20, "the session waited for the sleeper left behind"
    assert p.returncode == 3
    assert p.stdout.splitlines() == ["replaced", "to stderr"], (p.stdout, p.stderr)


def test_its_lines_come_as_they_are_written():
    p = subprocess.Popen(["bash", "-c", up.ending_with("echo first; sleep 3; echo second")], stdout=subprocess.PIPE,
                         text=True)
    t0 = time.time()
    assert p.stdout.readline() == "first\n" and time.time() - t0 < 2.5
    assert p.stdout.readline() == "second\n"
    assert p.wait(timeout=10) == 0


def test_when_its_output_file_cannot_be_made_the_reason_is_what_it_last_said(tmp_path):
    full = tmp_path / "gone"  # (mktemp's directory: one that does not exist, as /tmp full or gone would)
    p = subprocess.run(["bash", "-c", up.ending_with("echo replaced")], capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "TMPDIR": str(full)})
    assert p.returncode != 0 and "replaced" not in p.stdout
    assert "mktemp" in p.stdout.strip().splitlines()[-1] and str(full) in p.stdout, (p.stdout, p.stderr)
