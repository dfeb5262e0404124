"""Changes run side by side in one command (sidebyside.py), in a real shell: each
job's steps in order, the first failing one named, the jobs at once."""
import subprocess

from ampel_tasks.remote import sidebyside
from ampel_tasks.remote.processes import Result
from ampel_tasks.remote import readbatch


class LocalHost:
    """A host whose commands run in this machine's shell (and, dry, are only kept)."""

    def __init__(self, dry=False):
        self.dry, self.sent = dry, []

    def change(self, cmd, user=None, warn=False, show=None):
        self.sent.append(show or cmd)
        if self.dry:
            return Result("", "", 0)
        p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
        return Result(p.stdout, p.stderr, p.returncode)


def test_jobs_run_at_once_in_one_command_each_its_steps_in_order(tmp_path):
    """The first job waits for a file the last one makes: one after the other, it would fail."""
    wait = f"for i in $(seq 50); do [ -e {tmp_path}/2 ] && break; sleep 0.1; done; [ -e {tmp_path}/2 ]"
    jobs = [[("a", f"{wait} && echo one > {tmp_path}/1"), ("b", f"cat {tmp_path}/1")],
            [("a", f"touch {tmp_path}/2"), ("b", "echo two")]]
    host = LocalHost()
    got = sidebyside.change(host, jobs, user=None, show="2 jobs")
    assert host.sent == ["2 jobs"]
    assert [(r.ok, r.stdout) for r in got] == [(True, "one\n"), (True, "two\n")]


def test_a_failing_step_stops_its_job_alone_and_is_named_with_its_last_line(tmp_path):
    jobs = [[("commit", "true"), ("push", "echo 'remote: rejected' >&2; exit 3"), ("after", f"touch {tmp_path}/x")],
            [("push", f"touch {tmp_path}/y")]]
    got = sidebyside.change(LocalHost(), jobs, user=None, show="2 jobs")
    assert not got[0].ok and sidebyside.failed_step(got[0]) == ("push", "remote: rejected")
    assert not (tmp_path / "x").exists() and got[1].ok and (tmp_path / "y").exists()


def test_dry_prints_each_step_as_it_would_run_and_runs_nothing():
    host = LocalHost(dry=True)
    got = sidebyside.change(host, [[("tag", "git tag x"), ("push", "git push o x")]], user=None, show="1 job")
    assert host.sent == ["git tag x", "git push o x"] and [r.ok for r in got] == [True]


def test_a_result_that_never_came_back_is_a_failure():
    cut = readbatch.script(["true"]).split("\n")[0]  # (the script's first line alone: no result line)
    host = LocalHost()
    host.change = lambda cmd, **kw: Result(subprocess.run(["bash", "-c", cut], capture_output=True, text=True).stdout,
                                           "Connection closed", 255)
    got = sidebyside.change(host, [[("push", "true")]], user=None, show="1 job")
    assert got[0].exited == 255 and "Connection closed" in got[0].stderr
