"""What deploy/up would trip over after it has stopped the running stack, found before."""
import yaml

from ampel_tasks.facts import preflight

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


SS = """LISTEN 0      4096         0.0.0.0:27017      0.0.0.0:*    users:(("mongod",pid=412,fd=11))
LISTEN 0      5            0.0.0.0:27018      0.0.0.0:*
LISTEN 0      5            0.0.0.0:8080       0.0.0.0:*    users:(("python3",pid=977,fd=3))
LISTEN 0      128             [::]:22            [::]:*
"""
PS = ("    1     0 4026531836\n  400     1 4026531836\n  405   400 4026532001\n  300   1 4026531836\n"
      "  412   300 4026532001\n  977     1 4026531836\n")


def test_listeners_name_their_processes_where_visible():
    held = preflight.listeners(SS)
    assert held[27017] == [("mongod", 412)] and held[27018] == [] and held[22] == []


def test_a_port_held_outside_the_running_stack_is_named_and_the_stacks_own_is_not():
    stack = preflight.descendants(PS, [400], host_ns="4026531836")
    # 412 was started by a nanny (300) but joined the instance's PID namespace
    assert stack == {400, 405, 412}
    wanted = {27017: "mongo", 27018: "catalog", 8080: "stats", 9999: "t2"}
    assert preflight.foreign_ports(wanted, preflight.listeners(SS), stack) == [
        "port 8080 (of stats) is held by python3 (pid 977), which is not part of the running stack",
        "port 27018 (of catalog) is held by another user's process",
    ]


def test_a_secret_group_or_others_may_read_and_a_missing_file_are_named():
    stat_text = ("600 /home/ampel/dryrun/secrets/a.txt\n640 /home/ampel/dryrun/secrets/b.txt\n"
                 "missing /home/ampel/dryrun/secrets/c.txt\n644 /data/ampel/singularity/mongo-3.6.simg\n"
                 "missing /data/ampel/catalogs\n")
    files = [("image file", "/data/ampel/singularity/mongo-3.6.simg"), ("bind source of catalog", "/data/ampel/catalogs")]
    secrets = {"a": "secrets/a.txt", "b": "secrets/b.txt", "c": "secrets/c.txt"}
    assert preflight.file_problems(stat_text, files, secrets, "/home/ampel/dryrun") == [
        "bind source of catalog /data/ampel/catalogs does not exist",
        "secret b (/home/ampel/dryrun/secrets/b.txt) has mode 640; singularity-stack refuses a secret readable by "
        "group or others",
        "secret c (/home/ampel/dryrun/secrets/c.txt) does not exist",
    ]

