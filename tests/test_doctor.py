"""doctor's judgements."""
import pytest

from ampel_tasks.operations import doctor


@pytest.mark.parametrize("configured, reported, ok", [
    ("singularity 2.x", "2.6.1-dist", True),
    ("singularity 2.x", "singularity version 3.8.7", False),
    ("singularity 3.x", "singularity version 3.8.7", True),
    ("apptainer 1.x", "apptainer version 1.2.5", True),
    ("singularity 3.x", "apptainer version 1.2.5", False),
    ("singularity 2.x", "bash: singularity: command not found", False),
])
def test_the_runtime_must_fit_the_profiles_command_forms(configured, reported, ok):
    assert doctor.runtime_matches(configured, reported) is ok


@pytest.mark.parametrize("free_mib, ok", [(5000, True), (1000, False)])
def test_doctors_space_check_is_the_plans_own_estimate(monkeypatch, free_mib, ok):
    """doctor and the plan's refusal before a pull cannot disagree: one estimate (the
    layers missing from the cache, the image file, the unpacked tree) against the df
    of each filesystem the pull writes to."""
    from invoke import Config

    from ampel_tasks.config.defaults import DEFAULTS
    from ampel_tasks.facts import state
    from ampel_tasks.facts.site import Site
    from ampel_tasks.flow.run import Run
    from ampel_tasks.remote.hosts import Result
    from ampel_tasks.steps import pull

    config = Config()
    config.load_collection(DEFAULTS)
    r = Run(config)
    monkeypatch.setattr(state, "adopt_running", lambda r: r.set_version("v0.3.5"))
    monkeypatch.setattr(pull, "_image_bytes", lambda r, site: ([("sha256:aa", 600 << 20)], 700 << 20))
    df = (f"@@df /data/ampel/singularity\n/dev/sdb1 1 1 {free_mib << 20} 50% /data\n"
          f"@@df ${{SINGULARITY_TMPDIR:-/tmp}}\n/dev/sda1 1 1 {8 << 30} 10% /\n@@cached\n")
    host = type("Host", (), {"name": "burst", "fact": lambda self, cmd, user=None: Result(df, "", 0)})()
    check = doctor.space_check(r, host)
    refused = pull.space_problems(r, Site(r), [host])
    assert check.ok is ok and (not refused) is ok
    assert f"{float(free_mib)} MiB free in /data/ampel/singularity, 1200.0 MiB wanted for a pull" in check.detail


def test_a_failed_check_says_its_fix():
    assert doctor.Check("burst: sudo", False, "sudo -n -u ampel: a password is required", "a sudoers rule").line() == \
        "FAIL  burst: sudo: sudo -n -u ampel: a password is required; fix: a sudoers rule"
    assert doctor.Check("docker", True, "answers", "start it").line() == "ok    docker: answers"
