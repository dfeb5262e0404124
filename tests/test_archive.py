"""transit's archive and stack, decided from captured output: which database and
secrets transit.yml gives the archive, what a probe and a read of transit say, when
transit's stack must restart, and the plan's line per host."""
import hashlib
import sys
from pathlib import Path

import pytest
import yaml

from ampel_tasks.facts import archive, health, stackinputs
from ampel_tasks.config.errors import DeployError
from ampel_tasks.flow.plan import Decision, per_host
from ampel_tasks.operations.status import archive_line
from ampel_tasks.steps.secrets import differing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))
import fixtures  # noqa: E402  (the sandbox's transit.yml and burst.yml, in v0.3.5's shape)

ENV = {"ARCHIVE_PORT": "5432", "ARCHIVE_PATH": "/data/ampel/archive/dryrun", "GRAPHITE_PORT": "2003",
       "ARCHIVE_INITDB_PATH": "/home/ampel/Ampel-v0.3/ampel-core/deploy/production/initdb/archive"}


def transit():
    return archive.describe(yaml.safe_load(fixtures.TRANSIT_YML), ENV, "transit", "archive", "transit.yml")


def test_the_archive_is_described_by_transit_yml_and_dryrun_env():
    a = transit()
    assert (a.instance, a.database, a.port, a.path) == ("280e9712", "ztfarchive", 5432, "/data/ampel/archive/dryrun")
    assert (a.read_user, a.read_secret) == ("ampel-readonly", "archive-read-password")
    assert (a.write_user, a.write_secret) == ("ampel-client", "archive-write-password")


def test_a_stack_file_without_the_archive_or_its_variables_is_one_line():
    with pytest.raises(DeployError, match="has no service archive"):
        archive.describe({"services": {"graphite": {}}}, ENV, "transit", "archive", "transit.yml")
    with pytest.raises(DeployError, match=r"\$ARCHIVE_PATH .* is not defined by dryrun.env"):
        archive.describe(yaml.safe_load(fixtures.TRANSIT_YML), {"ARCHIVE_PORT": "5432", "GRAPHITE_PORT": "1"},
                         "transit", "archive", "transit.yml")


def test_the_probe_reads_version_and_size_or_psqls_own_error():
    assert archive.parse_probe(True, "version=3.0\nbytes=9135715\n") == archive.Answer(True, "3.0", 9135715)
    refused = ('psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
               'authentication failed for user "ampel-readonly"\n')
    answer = archive.parse_probe(False, refused)
    assert not answer.ok and answer.error.endswith('failed for user "ampel-readonly"')
    line = archive.login_problem(transit(), answer, "transit")
    assert "refuses ampel-readonly's password: secret archive-read-password is not the password" in line
    down = archive.parse_probe(False, 'psql: error: connection to server at "127.0.0.1", port 5432 failed: '
                                      "Connection refused\n")
    assert "does not answer a query as ampel-readonly on port 5432" in archive.login_problem(transit(), down, "transit")


def test_the_probe_never_puts_the_password_on_a_command_line():
    cmd = archive.with_password("secrets/archive-read-password.txt", archive.probe_psql(transit()))
    assert cmd.startswith('PGPASSWORD="$(cat secrets/archive-read-password.txt)" ')
    assert "psql -h 127.0.0.1 -p 5432 -U ampel-readonly -d ztfarchive -AtX -v ON_ERROR_STOP=1" in cmd


@pytest.mark.parametrize("text,state", [("state=cluster\nbytes=41234567\nfree=9000000000\n", "cluster"),
                                        ("state=empty\nbytes=4096\nfree=9000000000\n", "empty"),
                                        ("state=missing\nbytes=\nfree=9000000000\n", "missing")])
def test_what_archive_path_holds(text, state):
    assert archive.parse_path(text).state == state


def test_a_writers_refused_login_names_its_secret():
    doc = yaml.safe_load(fixtures.burst_yml())
    line = ('ERROR: cannot open the archive at transit:5432 as ampel-client: connection to server at "transit" '
            '(10.77.2.2), port 5432 failed: FATAL:  password authentication failed for user "ampel-client"')
    assert health.refused_secret(line, doc) == ("the archive refuses ampel-client's password: secret "
                                                "archive-write-password is not the password that user was created with")
    assert health.refused_secret("AlertProcessor 0.3.5 processed 14 alerts", doc) is None


READ = """@@SECRETS
archive-read-password 1f2e
archive-root-password 3c4d
@@IMAGES
/data/ampel/singularity/postgres-10.3.simg 118243328 1765000000
/data/ampel/singularity/graphite-1.1.3.simg 30000000 1765000001
@@RECORD
{"stack file": {"name": "transit.yml", "sha256": "ab"}, "env": {}, "secrets": {}, "images": {}}
@@PATH
state=cluster
bytes=41234567
free=9000000000
"""


def test_one_read_of_transit_parsed():
    secrets, images, record, path = stackinputs.parse_read(READ)
    assert secrets == {"archive-read-password": "1f2e", "archive-root-password": "3c4d"}
    assert images == {"postgres-10.3.simg": "118243328 1765000000", "graphite-1.1.3.simg": "30000000 1765000001"}
    assert record["stack file"]["sha256"] == "ab" and path == archive.PathState("cluster", 41234567, 9000000000)
    assert stackinputs.parse_read(READ.replace('{"stack', 'not json {"stack'))[2] is None


def test_transit_restarts_for_what_its_stack_runs_from_and_nothing_else():
    text = fixtures.TRANSIT_YML
    env = dict(ENV, AMPEL_TAG="v0.3.5", MONGO_PATH="/data/ampel/mongo/live/v0.3.5")
    base = stackinputs.fingerprint("transit.yml", text, env, {"archive-root-password": "1"}, {"p.simg": "1 2"})
    assert base["stack file"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert set(base["env"]) == {"ARCHIVE_PORT", "ARCHIVE_PATH", "ARCHIVE_INITDB_PATH", "GRAPHITE_PORT"}
    # burst's values (a new version, a new live database) are not transit's business
    other = stackinputs.fingerprint("transit.yml", text, dict(env, AMPEL_TAG="v0.3.6", MONGO_PATH="/x"),
                                    {"archive-root-password": "1"}, {"p.simg": "1 2"})
    assert stackinputs.changes(base, other) == []
    changed = stackinputs.fingerprint("transit.yml", text + "# edited\n", dict(env, ARCHIVE_PORT="5433"),
                                      {"archive-root-password": "2"}, {"p.simg": "1 3"})
    assert stackinputs.changes(base, changed) == ["transit.yml", "ARCHIVE_PORT", "secret archive-root-password",
                                                  "image file p.simg"]


def inputs(state):
    return stackinputs.Inputs({}, None, [], ["archive"], transit(), archive.PathState(state, 0, 0), {})


def test_a_new_or_empty_archive_path_is_refused_unless_asked_for():
    with pytest.raises(DeployError, match="does not exist: the archive would start empty there.*--new-archive"):
        stackinputs.refuse_new_archive(inputs("missing"), "transit", False)
    with pytest.raises(DeployError, match="is empty: the archive would start empty"):
        stackinputs.refuse_new_archive(inputs("empty"), "transit", False)
    stackinputs.refuse_new_archive(inputs("empty"), "transit", True)
    stackinputs.refuse_new_archive(inputs("cluster"), "transit", False)
    with pytest.raises(DeployError, match="holds files but no PostgreSQL cluster"):
        stackinputs.refuse_new_archive(inputs("other"), "transit", True)


def test_the_plan_has_a_line_per_host():
    d = per_host("up", {"transit": Decision("up", "skip", "same inputs"), "burst": Decision("up", "run", "v0.3.6")})
    assert d.action == "run" and [(h, x.action) for h, x in d.hosts.items()] == [("transit", "skip"), ("burst", "run")]
    assert d.as_json()["hosts"][1] == {"host": "burst", "action": "run", "reason": "v0.3.6"}
    assert per_host("up", {"transit": None, "burst": Decision("up", "skip", "runs")}) is None
    unknown = per_host("up", {"transit": None, "burst": Decision("up", "run", "v0.3.6")})
    assert unknown.action == "run" and unknown.hosts["transit"].action == "maybe"
    one = Decision("up", "skip", "runs")
    assert per_host("up", {"burst": one}) is one


def ev(wanted, local=None, remote=None):
    return {"wanted": wanted, "local": local or {}, "remote": remote or {}}


def test_a_secret_both_hosts_use_must_hold_one_value():
    w = {"archive-write-password": "secrets/archive-write-password.txt"}
    # the operator's copy goes to both: one value, whatever the hosts hold now
    assert differing({"transit": ev(w, {"archive-write-password": b"x"}, {w["archive-write-password"]: "1"}),
                      "burst": ev(w, {"archive-write-password": b"x"}, {w["archive-write-password"]: "2"})}) == []
    # no operator's copy, and the hosts differ
    assert differing({"transit": ev(w, remote={w["archive-write-password"]: "1"}),
                      "burst": ev(w, remote={w["archive-write-password"]: "2"})}) == ["archive-write-password"]


def test_the_archive_in_one_status_line():
    ok = {"host": "transit", "path": "/data/ampel/archive/dryrun", "answers": True, "version": "3.0",
          "bytes": 41234567, "free": 9 * 2**30, "problem": ""}
    assert archive_line(ok).startswith("archive on transit (/data/ampel/archive/dryrun): answers, schema 3.0, ")
    down = dict(ok, answers=False, problem="the archive on transit does not answer a query as ampel-readonly")
    assert archive_line(down).endswith("does not answer: the archive on transit does not answer a query as "
                                       "ampel-readonly")
