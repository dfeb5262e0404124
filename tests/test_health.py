"""Reading what singularity-stack 0.2.2 and Singularity 2.x print, and deciding
health, without hosts. The samples are the runbook's own transcript and the
formats of AMPEL-FACTS.md."""
from ampel_tasks.facts import health, stacklist
from runbook_transcript import RUNBOOK_TABLE

INSTANCE_LIST = """DAEMON NAME      PID      CONTAINER IMAGE
15116b11         20657    /data/ampel/singularity/ampel-v0.3.5.simg
a9404f1e         20648    /data/ampel/singularity/ampel-v0.3.5.simg
af186630         20620    /data/ampel/singularity/mongo-3.6.simg

"""

DOC = {"services": {
    "catalog": {"ports": ["$CATALOG_PORT:$CATALOG_PORT"]},
    "mongo": {"ports": ["27017:27017"]},
    "stats": {},
    "alertprocessor": {"deploy": {"replicas": "$NUM_STREAMS"}},
    "followup": {}, "t2-controller": {}, "t3-controller": {},
}}
ENV = {"NUM_STREAMS": "16", "CATALOG_PORT": "27018"}


def all_live():
    want = health.expected(DOC, ENV)
    return want, {svc: reps for svc, (reps, _) in want.items()}


def test_instance_names_are_the_runbooks():
    for svc, row in stacklist.parse_list(RUNBOOK_TABLE)["burst"].items():
        assert stacklist.instance_name("burst", svc, 0) == row["instance"]
    assert stacklist.instance_name("burst", "alertprocessor", 0) == "a9404f1e"
    assert stacklist.instance_name("burst", "alertprocessor", 15) == "36535acb"


def test_parses_the_runbooks_table_as_configured_counts():
    got = stacklist.parse_list(RUNBOOK_TABLE)["burst"]
    assert got["alertprocessor"] == {"replicas": 16, "instance": "a9404f1e"}
    assert got["catalog"] == {"replicas": 1, "instance": "af186630"}
    assert list(got) == sorted(got) and len(got) == 7


def test_live_instances_come_from_instance_list():
    live = stacklist.parse_instances(INSTANCE_LIST)
    assert live["a9404f1e"] == {"pid": 20648, "image": "/data/ampel/singularity/ampel-v0.3.5.simg"}
    assert "DAEMON" not in live and len(live) == 3
    want = health.expected(DOC, ENV)
    counts = stacklist.live_counts("burst", want, live)
    assert counts["alertprocessor"] == 2 and counts["catalog"] == 1 and counts["mongo"] == 0


def test_healthy_stack_has_no_problems():
    want, live = all_live()
    assert want["alertprocessor"] == (16, []) and want["catalog"] == (1, [27018])
    waiting, fatal = health.check(want, live, {27017: True, 27018: True}, [], ["ERROR", "Traceback"])
    assert waiting == [] and fatal == []


def test_missing_replica_and_dead_port_wait():
    want, live = all_live()
    live["alertprocessor"] = 15
    waiting, fatal = health.check(want, live, {27017: False, 27018: True}, [], ["ERROR"])
    assert "alertprocessor: 15 of 16 replicas running" in waiting
    assert "mongo: port 27017 does not answer" in waiting
    assert fatal == []


def test_error_lines_and_the_nannys_lines_are_fatal():
    want, live = all_live()
    lines = [
        stacklist.LogLine("alertprocessor", 3, "stdout", "ERROR cannot reach the database"),
        stacklist.LogLine("stats", 0, "stdout", "sleeping 10.0 before restart"),
        stacklist.LogLine("followup", 0, "stdout", "f8b8ce10 instance is gone!"),
        stacklist.LogLine("t2-controller", 0, "stdout", "failed permanently with status 1"),
        stacklist.LogLine("t3-controller", 0, "stdout", "all fine, sleeping 10.0 before restart is not ours"),
    ]
    _, fatal = health.check(want, live, {27017: True, 27018: True}, lines, ["ERROR", "Traceback"])
    assert len(fatal) == 4
    assert fatal[0].startswith("alertprocessor:3 stdout: ERROR")
    assert "restarted" in fatal[1] and "instance is gone" in fatal[2] and "status 1" in fatal[3]


def test_log_line_of_0_2_2():
    line = "(alertprocessor:7 stdout) AlertProcessor 0.3.5 processed 14 alerts"
    assert stacklist.parse_log_line(line) == stacklist.LogLine("alertprocessor", 7, "stdout",
                                                               "AlertProcessor 0.3.5 processed 14 alerts")
    padded = "(mongo         :0 stderr) exception in initAndListen"
    assert stacklist.parse_log_line(padded) == stacklist.LogLine("mongo", 0, "stderr", "exception in initAndListen")


def test_log_line_of_later_releases():
    line = "2018-08-01 12:00:00.123 alertprocessor:7 stdout  \u23b8 AlertProcessor 7 processed 14 alerts"
    assert stacklist.parse_log_line(line) == stacklist.LogLine(
        "alertprocessor", 7, "stdout", "AlertProcessor 7 processed 14 alerts", "2018-08-01 12:00:00.123")
    assert stacklist.parse_log_line("just a line") is None


def test_new_bytes_are_split_at_the_last_complete_line():
    lines, used = stacklist.split_new_text(b"one\ntwo\nthr", at_eof_limit=False)
    assert lines == ["one", "two"] and used == 8
    lines, used = stacklist.split_new_text(b"x" * 10, at_eof_limit=True)
    assert lines == ["x" * 10] and used == 10
