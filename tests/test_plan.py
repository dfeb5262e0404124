"""Plan decisions as pure functions over recorded evidence."""
from ampel_tasks.facts import build
from ampel_tasks.flow.plan import Decision, combine


def d(step, action, reason="r"):
    return Decision(step, action, reason)


def test_everything_up_to_date_skips_every_step():
    own = {s: d(s, "skip") for s in ["image", "test", "push", "pull", "src", "db", "tag", "secrets", "up"]}
    assert [x.action for x in combine(own)] == ["skip"] * 9


def test_a_new_image_is_tested_pushed_pulled_and_run():
    own = {s: d(s, "skip") for s in ["test", "push", "pull", "src", "db", "tag", "secrets", "up"]}
    own["image"] = d("image", "run", "repo added")
    got = {x.step: x.action for x in combine(own)}
    assert got == {"image": "run", "test": "run", "push": "run", "pull": "run", "src": "skip", "db": "skip",
                   "tag": "skip", "secrets": "skip", "up": "run"}


def test_the_same_image_pushed_again_makes_pull_and_up_only_maybe():
    """A push again changes no digest: the hosts' files may well stay, and then the
    stack is not redeployed."""
    own = {s: d(s, "skip") for s in ["image", "test", "push", "pull", "src", "db", "tag", "secrets", "up"]}
    got = {x.step: x.action for x in combine(own, forced={"push"})}
    assert (got["push"], got["pull"], got["up"]) == ("run", "maybe", "maybe")


def test_moved_sources_redeploy_but_only_make_the_steps_reading_them_look_again():
    own = {s: d(s, "skip") for s in ["image", "test", "push", "pull", "db", "tag", "secrets", "up"]}
    own["src"] = d("src", "run", "ampel-core moves to v0.3.6")
    got = combine(own)
    assert {x.step: x.action for x in got if x.step in ("db", "tag", "secrets", "up")} == {
        "db": "maybe", "tag": "maybe", "secrets": "maybe", "up": "run"}
    assert got[-1].reason.startswith("src brings something new")


def test_unknown_evidence_is_maybe_never_skip():
    own = {"src": d("src", "run"), "db": None, "secrets": None}
    got = combine(own)
    assert [(x.step, x.action) for x in got] == [("src", "run"), ("db", "maybe"), ("secrets", "maybe")]
    assert "before src runs" in got[1].reason


def test_force_runs_a_skipped_step_but_never_overwrites_sources():
    got = combine({"secrets": d("secrets", "skip"), "src": d("src", "skip")}, forced={"secrets", "src"})
    assert [(x.step, x.action) for x in got] == [("src", "skip"), ("secrets", "run")]
    assert "--force" in got[1].reason


def _repo(name, commit):
    return build.Repo(name, f"git@github-{name}:AmpelProject/{name}.git", None, commit)


def _labels(repos, recipe="h1"):
    return build.labels_for("v0.3.4", recipe, repos, "org.ampelproject", "2018-06-01T00:00:00Z")


def test_image_necessary_if_runbook_conditions():
    old = [_repo("ampel-core", "a" * 40), _repo("ampel-base", "b" * 40)]
    no_diff = lambda repo, old_commit: []  # noqa: E731
    assert build.decide(None, "h1", old, "org.ampelproject", no_diff)[0] is True
    # a repo added to the Dockerfile
    added = old + [_repo("ampel-contrib-foo", "c" * 40)]
    need, why = build.decide(_labels(old), "h1", added, "org.ampelproject", no_diff)
    assert need and "ampel-contrib-foo" in why
    # the recipe changed
    need, why = build.decide(_labels(old), "h2", old, "org.ampelproject", no_diff)
    assert need and "Dockerfile" in why
    # dependencies changed in one repo
    moved = [_repo("ampel-core", "a" * 40), _repo("ampel-base", "d" * 40)]
    need, why = build.decide(_labels(old), "h1", moved, "org.ampelproject", lambda r, o: ["setup.py"])
    assert need and "ampel-base: setup.py changed" in why
    # only code changed: reuse
    need, why = build.decide(_labels(old), "h1", moved, "org.ampelproject", no_diff)
    assert not need and "only code changed" in why
    # nothing changed
    need, why = build.decide(_labels(old), "h1", old, "org.ampelproject", no_diff)
    assert not need and "same recipe and same commits" in why


def test_a_rollback_across_a_new_database_says_what_it_means():
    from ampel_tasks.operations.rollback import across_data

    old = {"version": "v0.3.8", "started": "2018-07-01T10:00:00Z", "result": "ok",
           "env": {"MONGO_PATH": "/data/ampel/mongo/live/v0.3.3", "GROUP_NAME": "ampel-v0.3.3"}}
    new = {"version": "v0.4.0", "started": "2018-07-02T10:00:00Z", "result": "ok", "new_db": True,
           "env": {"MONGO_PATH": "/data/ampel/mongo/live/v0.4.0", "GROUP_NAME": "ampel-v0.4.0"}}
    failed = dict(new, version="v0.4.1", started="2018-07-03T10:00:00Z", result="failed: x")
    lines = across_data([failed, new, old], old)
    assert len(lines) == 1 and lines[0].startswith("v0.4.0 started a new live database (/data/ampel/mongo/live/v0.4.0")
    assert "resumes group ampel-v0.3.3 from its old offsets into /data/ampel/mongo/live/v0.3.3" in lines[0]
    assert across_data([new, old], new) == []
