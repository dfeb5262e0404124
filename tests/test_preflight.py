"""What deploy/up would trip over after it has stopped the running stack, found before."""
import yaml

from ampel_tasks import preflight

STACK = yaml.safe_load("""
version: '3.4'
services:
  mongo:
    image: mongo:3.6
    volumes:
      - $MONGO_PATH:/data/db
      - $MONGO_INITDB_PATH:/docker-entrypoint-initdb.d
    secrets: [mongo-root-password]
  alertprocessor:
    image: ampel:$AMPEL_TAG
    command: ["ampel-alertprocessor", "--group", "$GROUP_NAME"]
    volumes:
      - type: volume
        source: $AMPEL_SRC
        target: /Ampel
    secrets: [mongo-root-password, archive-write-password]
secrets:
  mongo-root-password: {file: secrets/mongo-root-password.txt}
""")
ENV = {"AMPEL_TAG": "v0.3.5", "AMPEL_SRC": "/home/ampel/Ampel-v0.3", "MONGO_PATH": "/data/ampel/mongo/live/v0.3.5",
       "MONGO_INITDB_PATH": "$AMPEL_SRC/ampel-core/deploy/production/initdb/mongo", "GROUP_NAME": "ampel-v0.3.5",
       "SINGULARITY_CACHEDIR": "/data/ampel/singularity"}


def test_everything_deploy_up_needs_is_named():
    missing, files, secrets = preflight.needs(STACK, ENV)
    assert missing == ["secret archive-write-password (used by alertprocessor, not declared)"]
    assert ("image file", "/data/ampel/singularity/ampel-v0.3.5.simg") in files
    assert ("image file", "/data/ampel/singularity/mongo-3.6.simg") in files
    # nested references expand as singularity-stack expands them
    assert ("bind source of mongo", "/home/ampel/Ampel-v0.3/ampel-core/deploy/production/initdb/mongo") in files
    assert secrets == {"mongo-root-password": "secrets/mongo-root-password.txt"}


def test_a_variable_the_env_file_lacks_is_found_with_where_it_is_used():
    env = dict(ENV)
    del env["GROUP_NAME"]
    missing, _, _ = preflight.needs(STACK, env)
    assert "$GROUP_NAME (in the stack file.services.alertprocessor.command)" in missing


def test_image_file_names_follow_singularity_stack():
    assert preflight.image_file("ampel:v0.3.5") == "ampel-v0.3.5.simg"
    assert preflight.image_file("library/postgres:10.3") == "postgres-10.3.simg"
    assert preflight.image_file("go-graphite") == "go-graphite.simg"
