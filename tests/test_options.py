"""The options a chain shares: typed once from every call's options."""
import pytest

from ampel_tasks.flow.options import Options, typed


def test_a_chains_options_are_the_first_given_typed():
    calls = [{"version": "v0.3.5", "dry": False}, {"new_db": True, "message": ""},
             {"force": ["up", "pull"], "lock_wait": "30", "message": "fix the stream"}, {"message": "later"}]
    assert typed(calls) == Options(force=frozenset({"up", "pull"}), new_db=True, message="fix the stream",
                                   lock_wait=30.0)


def test_nothing_typed_is_the_defaults_and_the_value_cannot_be_changed():
    options = typed([{"version": "v0.3.5", "json": True}])  # (a task's own option is its body's)
    assert options == Options()
    with pytest.raises(AttributeError):
        options.new_db = True


def test_options_declared_for_the_run_reach_its_options_and_not_the_body():
    """A task declaring `run_options`: invoke parses them from the command line, the
    executor types them into the run's Options, and the body is called without them."""
    from invoke import Collection, Program, task

    from ampel_tasks.config.defaults import DEFAULTS
    from ampel_tasks.flow import run as runs
    from ampel_tasks.flow.executor import ChainExecutor
    from ampel_tasks.tasks.runoptions import run_options

    seen = {}

    @task(iterable=["force"])
    @run_options("new_db", "message", "force")
    def probe(c, dry=False):
        seen["body"] = {"dry": dry}
        seen["options"] = runs.start(c).options

    ns = Collection(probe)
    ns.configure(DEFAULTS)
    program = Program(namespace=ns, executor_class=ChainExecutor, name="t", binary="t")
    program.run(["t", "probe", "--new-db", "--message", "fix", "--force", "up", "--dry"], exit=False)
    assert seen["body"] == {"dry": True}
    assert seen["options"] == Options(new_db=True, message="fix", force=frozenset({"up"}))
