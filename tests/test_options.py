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
