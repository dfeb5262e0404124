"""The plan's reads on threads: each fact gathered once whichever thread asks first,
and a read that fails ahead is read again, and raised, by the one that needs it."""
import threading
import time

import pytest

from ampel_tasks.operations import readahead
from ampel_tasks.config.errors import DeployError
from ampel_tasks.flow import run as runs
from ampel_tasks.flow.run import Run


def test_a_fact_asked_by_two_threads_at_once_is_gathered_once():
    r, calls, got = Run({}), [], []

    def gather():
        calls.append(threading.current_thread().name)
        time.sleep(0.3)  # (the second asker arrives while the first reads)
        return {"copies": 3}

    threads = [threading.Thread(target=lambda: got.append(r.evidence("src evidence", gather))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and got == [{"copies": 3}, {"copies": 3}]


def test_a_fact_is_gathered_again_after_a_step_it_depends_on_changed_something():
    r, calls = Run({}), []
    r.evidence("tag evidence", lambda: calls.append(1), after=("src",))
    r.changed.add("src")
    r.evidence("tag evidence", lambda: calls.append(2), after=("src",))
    assert calls == [1, 2]


def test_a_read_that_fails_ahead_is_raised_by_the_one_that_needs_it():
    r, tries = Run({}), []

    def unreachable():
        tries.append(1)
        raise DeployError("transit (transit.example) did not complete an SSH login")

    later = []
    readahead._each([lambda: r.evidence("up evidence transit", unreachable), lambda: later.append("schema read")])
    assert later == ["schema read"], "the lane went on past the failed read"
    with pytest.raises(DeployError, match="did not complete an SSH login"):
        r.evidence("up evidence transit", unreachable)
    assert len(tries) == 2


def test_a_read_started_aside_returns_its_value_or_raises_on_the_asking_thread():
    begun = time.time()
    slow = runs.started(lambda: time.sleep(0.3) or "schema 3.0")
    assert time.time() - begun < 0.2, "started() does not wait"
    assert slow.result() == "schema 3.0"
    failed = runs.started(lambda: (_ for _ in ()).throw(DeployError("transit refuses the read user")))
    with pytest.raises(DeployError, match="refuses the read user"):
        failed.result()
