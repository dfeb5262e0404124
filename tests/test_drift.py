"""status's drift: the manifest vs what the service host holds now (pure parts)."""
from ampel_tasks.facts import drift

ENV, IMAGE = "/home/ampel/Ampel-v0.3/ampel-core/deploy/production/dryrun.env", "/data/ampel/singularity/ampel-v0.3.5.simg"
A, B = "a" * 40, "b" * 40
OUTPUT = f"""@@repo ampel-core {B} master git@github-ampel:AmpelProject/Ampel-core.git
 M deploy/production/dryrun.env
@@repo ampel-base {A} master git@github-ampel-base:AmpelProject/Ampel-base.git
@@sha {"e" * 64} {ENV}
@@sha  {IMAGE}
"""
MANIFEST = {"sources": {"ampel-core": A, "ampel-base": A, "ampel-contrib-hu": A},
            "env_sha256": "d" * 64, "image_file_sha256": "f" * 64}


def test_every_difference_since_the_deploy_is_named():
    facts = drift.parse(OUTPUT)
    assert drift.drift(MANIFEST, facts, ENV, IMAGE) == [
        "host copy ampel-contrib-hu is gone",
        f"host copy ampel-core moved from {A[:10]} to {B[:10]} since the deploy",
        "host copy ampel-core has uncommitted changes in deploy/production/dryrun.env",
        f"dryrun.env {ENV} changed since the deploy",
        f"image file {IMAGE} is gone",
    ]


def test_nothing_changed_is_no_drift():
    facts = drift.parse(f"@@repo ampel-base {A} master o\n@@sha {'d' * 64} {ENV}\n@@sha {'f' * 64} {IMAGE}\n")
    assert drift.drift({**MANIFEST, "sources": {"ampel-base": A}}, facts, ENV, IMAGE) == []


def test_down_means_no_service_runs_at_all():
    services = {"mongo": 1, "alertprocessor": 16}
    assert drift.stack_down(["mongo: not running", "mongo: port 27017 does not answer", "alertprocessor: not running"],
                            services)
    assert not drift.stack_down(["alertprocessor: not running"], services), "one service down is not a reboot"
    assert not drift.stack_down([], services)
