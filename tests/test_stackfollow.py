"""The gate's reads of a stack being replaced (stackfollow.py), on captured output of
its one command: the old stack's replicas and files are left out, the new ones read
from their start."""
from types import SimpleNamespace

import pytest

from ampel_tasks.facts import stackfollow
from ampel_tasks.remote.hosts import Result

LOG = "/var/tmp/{user}.singularity.{instance}.{source}"
STACK = "/usr/bin/python3 /usr/bin/singularity-stack deploy -c /home/ampel/burst.yml burst"
# burst.catalog.0 and burst.alertprocessor.0 (stackpoll's output, no ports)
CATALOG, AP = "af186630", "a9404f1e"


def poll_output(procs, writers, files=()):
    ps = "".join(f"{pid:>7} {ppid:>7} S {age:>8} {args}\n" for pid, ppid, age, args in procs)
    fds = "".join(f"/proc/{pid}/fd/1 /var/tmp/ampel.singularity.{inst}.stdout\n" for pid, inst in writers)
    tails = "".join(f"@@F {inst} stdout {len(text)}\n{text}\n" for inst, text in files)
    return f"@@PS\n{ps}@@FD\n{fds}@@PORTS\n{tails}"


class Host:
    def __init__(self, outputs):
        self.outputs, self.commands = list(outputs), []

    def read(self, cmd, **options):
        assert options["fresh"], "a poll is never answered from the reads sent ahead"
        self.commands.append(cmd)
        return Result(self.outputs.pop(0), "", 0)


def poller(host):
    settings = SimpleNamespace(service_user="ampel", paths={"replica_log": LOG}, health={"max_bytes": 65536})
    site = SimpleNamespace(stack_name="burst", stack_host=host)
    want = {"catalog": (1, []), "alertprocessor": (1, [])}
    return stackfollow.Poller(SimpleNamespace(settings=settings), site, want, read_logs=True, new_only=True)


def test_the_old_stacks_replicas_and_what_their_ended_nannies_left_do_not_count():
    old = [(100, 1, 30, STACK), (101, 100, 30, "nsenter -- mongod"), (200, 1, 30, STACK), (201, 200, 2, "nsenter -- ampel-alertprocessor")]
    host = Host([
        # before deploy/up: the old stack, its files full of what it said
        poll_output(old, [(100, CATALOG), (101, CATALOG), (200, AP), (201, AP)]),
        # the old nannies ended by the tool: their services live on, heading the files' writers;
        # catalog's new nanny (as young as a stack deployed seconds before) started
        poll_output([(101, 1, 31, "nsenter -- mongod"), (201, 1, 3, "nsenter -- ampel-alertprocessor"),
                     (300, 1, 1, STACK), (301, 300, 0, "nsenter -- mongod")],
                    [(101, CATALOG), (201, AP), (300, CATALOG), (301, CATALOG)]),
        # the next read asks for catalog's new file from its start
        poll_output([(300, 1, 1, STACK), (301, 300, 1, "nsenter -- mongod")], [(300, CATALOG), (301, CATALOG)],
                    [(CATALOG, "MongoDB starting\n")]),
    ])
    p = poller(host)
    first = p.observe()
    assert first.replicas == {} and first.lines == [] and "tail -c" not in host.commands[0]
    second = p.observe()
    assert list(second.replicas) == [CATALOG] and second.replicas[CATALOG].nanny == 300
    third = p.observe()
    assert f"tail -c +1 /var/tmp/ampel.singularity.{CATALOG}.stdout" in host.commands[2]
    assert AP not in host.commands[2]  # (the old alertprocessor's file is not read)
    assert [l.msg for l in third.lines] == ["MongoDB starting"]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # (a thread's traceback)
def test_the_follower_reads_once_before_the_block_and_a_failed_read_ends_it_quietly(capfd):
    import time

    old = [(100, 1, 30, STACK), (101, 100, 30, "nsenter -- mongod")]
    host = Host([poll_output(old, [(100, CATALOG), (101, CATALOG)])] * 2)  # (a third read fails)
    follow = stackfollow.Follow(poller(host))
    with follow:
        assert host.commands, "the old stack is read before the block starts"
        time.sleep(3 * stackfollow.WHILE_UP)
    assert not follow._thread.is_alive()
    assert len(follow.taken()) == 2 and follow.taken() == []
    assert "Traceback" not in capfd.readouterr().err
