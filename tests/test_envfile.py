"""dryrun.env edits keep every other byte, as the runbook's hand edit would."""
from ampel_tasks.facts import envfile

ORIGINAL = """# Ampel "dryrun" configuration
AMPEL_TAG=v0.3.0
MONGO_PATH=/data/ampel/mongo/live/v0.3.0   # the live database

# one AlertProcessor per partition
NUM_STREAMS=16
GROUP_NAME=ampel-v0.3.0
CATALOG_PORT='27018'
"""


def test_changes_only_the_named_values():
    new = envfile.update(ORIGINAL, {"MONGO_PATH": "/data/ampel/mongo/live/v0.3.5", "GROUP_NAME": "ampel-v0.3.5"})
    old_lines, new_lines = ORIGINAL.splitlines(True), new.splitlines(True)
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
    assert changed == [2, 6]
    assert new_lines[2] == "MONGO_PATH=/data/ampel/mongo/live/v0.3.5   # the live database\n"
    assert envfile.read(new)["GROUP_NAME"] == "ampel-v0.3.5"
    assert envfile.read(new)["CATALOG_PORT"] == "27018"


def test_unchanged_values_give_identical_text():
    assert envfile.update(ORIGINAL, {"NUM_STREAMS": "16"}) == ORIGINAL


def test_missing_key_is_appended_and_odd_values_quoted():
    new = envfile.update(ORIGINAL, {"AMPEL_SRC": "/scratch/my ampel"})
    assert new.startswith(ORIGINAL)
    assert envfile.read(new)["AMPEL_SRC"] == "/scratch/my ampel"


def test_diff_masks_redacted_keys():
    new = envfile.update(ORIGINAL, {"GROUP_NAME": "s3cr3t-group"})
    d = envfile.diff(ORIGINAL, new, "dryrun.env", redact_keys={"GROUP_NAME"})
    assert "s3cr3t-group" not in d and "+GROUP_NAME=***** (changed)" in d


def test_what_deploy_up_would_hand_to_env_as_a_command_is_found():
    text = ("# comment\nAMPEL_TAG=v0.3.5\nGOOD=a # trailing comment\n\nTHIS LINE IS NOT AN ASSIGNMENT\n"
            "export X=1\nSPACED='a b'\nHASH=ab#c\nOPEN='x\nGLOB=/data/*\n")
    found = envfile.problems(text)
    assert [f.split(":")[0] for f in found] == ["line 5", "line 6", "line 7", "line 8", "line 9 has an unmatched quote (xargs refuses it)", "line 10"]
    assert "`THIS` is not NAME=VALUE" in found[0] and "`export` " in found[1]
    assert "cuts the value of HASH at its `#`" in found[3]
    assert envfile.problems("A=1\nB=$A/x  # fine\n") == []
