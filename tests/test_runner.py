"""The one runner of a step: run or skip printed from the decision, --force where the
table and the part let it reach, the deploy lock before the first part that acts on a
host (never for a step on this machine), the part handed to the step's act with the
decision printed, each part decided when it is reached."""
from dataclasses import replace
from types import SimpleNamespace

import pytest

from ampel_tasks.facts.site import Target
from ampel_tasks.flow import runrecord
from ampel_tasks.flow.plan import Decision, Part
from ampel_tasks.flow.run import Run
from ampel_tasks.steps import runner


@pytest.fixture
def r(monkeypatch):
    run, locks = Run({}), []
    monkeypatch.setattr(runrecord, "lock", lambda r: locks.append(len(r.rows)))
    run.locks = locks
    return run


def step_module(monkeypatch, name, **hooks):
    mod = SimpleNamespace(**hooks)
    real = runner.owner
    monkeypatch.setattr(runner, "owner", lambda n: mod if n == name else real(n))
    return mod


def test_a_skip_is_printed_with_its_reason_and_nothing_is_acted_or_locked(r, monkeypatch, capsys):
    acted, skipped = [], []
    step_module(monkeypatch, "db", decide_db=lambda r: Decision("db", "skip", "dryrun.env already has it"),
                act=acted.append, skipped=lambda r, p: skipped.append(p.label))
    runner.run(r, "db")
    assert "==> db: skip (dryrun.env already has it)" in capsys.readouterr().out
    assert acted == [] and skipped == ["db"] and r.locks == []


def test_a_part_that_runs_takes_the_lock_first_and_its_act_gets_the_decision_printed(r, monkeypatch, capsys):
    d = Decision("db", "run", "set AMPEL_TAG in dryrun.env")
    got = []
    step_module(monkeypatch, "db", decide_db=lambda r: d, act=lambda r, part: got.append((part.decision, r.locks[:])))
    runner.run(r, "db")
    assert "==> db: set AMPEL_TAG in dryrun.env" in capsys.readouterr().out
    assert got == [(d, [0])]


def test_a_step_on_this_machine_takes_no_lock(r, monkeypatch):
    got = []
    step_module(monkeypatch, "push", decide_push=lambda r: Decision("push", "run", "registry does not have it"),
                act=lambda r, part: got.append(part.label))
    runner.run(r, "push")
    assert got == ["push"] and r.locks == []


def test_force_runs_a_skip_unless_the_table_or_the_part_says_it_cannot_reach(r, monkeypatch, capsys):
    got = []
    parts = [Part(Decision("up", "skip", "same inputs"), "up transit", "transit", forceable=False),
             Part(Decision("up", "skip", "same inputs"), "up burst", "burst")]
    step_module(monkeypatch, "up", parts=lambda r: parts, act=lambda r, part: got.append(part.host))
    r.options = replace(r.options, force=frozenset({"up", "src"}))
    runner.run(r, "up")
    out = capsys.readouterr().out
    assert got == ["burst"]
    assert "==> up transit: skip (same inputs (--force cannot override this))" in out
    src = [Part(Decision("src", "skip", "copies at the commits wanted"), "src", "burst")]
    step_module(monkeypatch, "src", parts=lambda r: src, act=lambda r, part: got.append("src"))
    runner.run(r, "src")  # (the table: an existing AMPEL_SRC is never overwritten)
    assert got == ["burst"] and "(--force cannot override this)" in capsys.readouterr().out


def test_each_part_is_decided_when_it_is_reached_and_a_host_part_gets_its_summary_row(r, monkeypatch):
    def parts(r):
        yield Part(Decision("up", "run", "transit.yml changed"), "up transit", "transit")
        # burst's decision after transit's act: what it changed is seen
        yield Part(Decision("up", "run" if "schema" in r.changed else "skip", "inputs"), "up burst", "burst")

    step_module(monkeypatch, "up", parts=parts, act=lambda r, part: r.changed.add("schema") or None)
    runner.run(r, "up")
    assert [(row[0], row[1], row[2]) for row in r.rows] == [("up", "transit", "changed"), ("up", "burst", "changed")]


def test_a_step_acting_together_gets_only_its_running_parts_at_once(r, monkeypatch):
    got = []
    parts = [Part(Decision("pull", "skip", "has it"), "pull transit", "transit"),
             Part(Decision("pull", "run", "missing"), "pull burst", "burst")]
    step_module(monkeypatch, "pull", parts=lambda r: parts, act_together=lambda r, ps: got.append([p.host for p in ps]))
    runner.run(r, "pull")
    assert got == [["burst"]] and r.rows[0][:3] == ("pull", "transit", "skipped")


def test_an_act_can_have_the_runner_run_a_step_right_after_it(r, monkeypatch):
    order = []

    def up_act(r, part):
        order.append("up transit")
        part.then = "schema"

    step_module(monkeypatch, "up", parts=lambda r: [Part(Decision("up", "run", "new"), "up transit", "transit")],
                act=up_act)
    real = runner.owner
    schema = SimpleNamespace(parts=lambda r: [Part(Decision("schema", "run", "1 pending"), "schema transit", "transit")],
                             act=lambda r, part: order.append("schema transit"))
    monkeypatch.setattr(runner, "owner", lambda n: schema if n == "schema" else real(n))
    runner.run(r, "up")
    assert order == ["up transit", "schema transit"]


def test_the_image_decision_fixes_the_runs_target(r, monkeypatch):
    reuse = Target(image_tag="v0.3.4", reused_digest="sha256:" + "a" * 64)
    step_module(monkeypatch, "image", decide_image=lambda r: Decision("image", "skip", "reused", target=reuse))
    assert r.target == Target()
    runner.decide(r, "image")
    assert r.target == reuse


def test_the_manifests_read_of_the_host_started_beside_the_gate_is_used_once_and_a_failed_one_read_again(
        r, monkeypatch):
    import threading

    reads, release = [], threading.Event()

    def read(site):
        reads.append(threading.current_thread() is threading.main_thread())
        if len(reads) == 1:
            release.wait(5)  # (still reading while the gate runs)
            return {"sources": {"ampel-core": "1" * 40}}
        raise RuntimeError("ssh: lost")

    monkeypatch.setattr(runrecord, "_recorded", read)
    runrecord.read_beside(r, "burst")
    release.set()
    assert runrecord._recorded_for(r, "burst") == {"sources": {"ampel-core": "1" * 40}}
    assert reads == [False] and r.outcome.recorded is None
    runrecord.read_beside(r, "burst")  # a read ahead that fails: read again where the manifest is written
    monkeypatch.setattr(runrecord, "_recorded", lambda site: reads.append("again") or {"sources": {}})
    r.outcome.recorded.exception()
    assert runrecord._recorded_for(r, "burst") == {"sources": {}} and reads[-1] == "again"
