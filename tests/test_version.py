"""The version is validated once, before anything runs."""
import pytest

from ampel_tasks.config.errors import DeployError
from ampel_tasks.config.version import validate_version


@pytest.mark.parametrize("good", ["v0.3.5", "v0.4.0", "v10.20.30", "v0.3.5-rc1", "v1.0.0-beta.2"])
def test_accepts_release_versions(good):
    assert validate_version(good) == good


@pytest.mark.parametrize(
    "bad,words",
    [
        ("", "no version given"),
        (None, "no version given"),
        ("0.3.5", "does not match"),
        ("v0.3", "does not match"),
        ("v0.3.5 ", "not allowed"),
        ("v0.3.5;rm -rf /", "not allowed"),
        ("v0.3.5$(id)", "not allowed"),
        ("v0.3.5`id`", "not allowed"),
        ("../v0.3.5", "not allowed"),
        ("v0.3.5/../../x", "not allowed"),
        ("v0.3.5\u00e9", "not allowed"),
        ("v0.3." + "5" * 200, "characters long"),
        ("v00.3.5", "does not match"),
    ],
)
def test_refuses_everything_else(bad, words):
    with pytest.raises(DeployError) as e:
        validate_version(bad)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_pattern_is_configurable():
    assert validate_version("2018.06.01", r"^\d{4}\.\d\d\.\d\d$") == "2018.06.01"
    with pytest.raises(DeployError):
        validate_version("v0.3.5", r"^\d{4}\.\d\d\.\d\d$")
