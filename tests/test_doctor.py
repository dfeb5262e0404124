"""doctor's judgements (pure)."""
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


def test_space_wants_three_times_the_largest_image_and_at_least_a_gibibyte():
    line = "/dev/sda1 10000000 9000000 2000000 82% /data"
    assert doctor.space(line, 1_000_000) == (2_000_000, 3_000_000)
    assert doctor.space(line, 10) == (2_000_000, 1 << 20)
    assert doctor.space("", 0) == (0, 1 << 20)


def test_a_failed_check_says_its_fix():
    assert doctor.Check("burst: sudo", False, "sudo -n -u ampel: a password is required", "a sudoers rule").line() == \
        "FAIL  burst: sudo: sudo -n -u ampel: a password is required; fix: a sudoers rule"
    assert doctor.Check("docker", True, "answers", "start it").line() == "ok    docker: answers"
