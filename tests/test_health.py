"""Reading singularity-stack's output and deciding health, without hosts."""
from ampel_tasks import health, stacklist

RUNBOOK_TABLE = """Stack                          Services                       Replicas Instance
============================== ============================== ======= ========
burst                          alertprocessor                 16      a9404f1e
                               catalog                                af186630
                               followup                               f8b8ce10
                               mongo                                  ba08f91e
                               stats                                  e49305fc
                               t2-controller                          992d0449
                               t3-controller                          39cf18b4
------------------------------ ------------------------------ ------- --------
"""

DOC = {"services": {
    "catalog": {"ports": ["${CATALOG_PORT}:${CATALOG_PORT}"]},
    "mongo": {"ports": ["27017:27017"]},
    "alertprocessor": {"deploy": {"replicas": "${NUM_STREAMS}"}},
    "stats": {}, "followup": {}, "t2-controller": {}, "t3-controller": {},
}}
ENV = {"NUM_STREAMS": "16", "CATALOG_PORT": "27018"}


def test_parses_the_runbooks_table():
    got = stacklist.parse_list(RUNBOOK_TABLE)["burst"]
    assert got["alertprocessor"] == {"replicas": 16, "instance": "a9404f1e"}
    assert got["catalog"] == {"replicas": 1, "instance": "af186630"}
    assert len(got) == 7


def test_healthy_stack_has_no_problems():
    want = health.expected(DOC, ENV)
    assert want["alertprocessor"] == (16, []) and want["catalog"] == (1, [27018])
    listed = stacklist.parse_list(RUNBOOK_TABLE)["burst"]
    waiting, fatal = health.check(want, listed, {27017: True, 27018: True}, [], ["ERROR", "Traceback"])
    assert waiting == [] and fatal == []


def test_missing_replica_and_dead_port_wait():
    want = health.expected(DOC, ENV)
    listed = stacklist.parse_list(RUNBOOK_TABLE.replace(" 16      a9404f1e", " 15      a9404f1e"))["burst"]
    waiting, fatal = health.check(want, listed, {27017: False, 27018: True}, [], ["ERROR"])
    assert "alertprocessor: 15 of 16 replicas running" in waiting
    assert "mongo: port 27017 does not answer" in waiting
    assert fatal == []


def test_error_lines_and_restarts_are_fatal():
    want = health.expected(DOC, ENV)
    listed = stacklist.parse_list(RUNBOOK_TABLE)["burst"]
    lines = [
        ("2018-06-01 12:00:00.000", "alertprocessor", 3, "stdout", "ERROR cannot reach the database"),
        ("2018-06-01 12:00:01.000", "stats", 0, "nanny", "exited with code 1; restarting in 2 s"),
        ("2018-06-01 12:00:02.000", "followup", 0, "stdout", "all fine"),
    ]
    _, fatal = health.check(want, listed, {27017: True, 27018: True}, lines, ["ERROR", "Traceback"])
    assert len(fatal) == 2 and "alertprocessor:3" in fatal[0] and "restarted" in fatal[1]


def test_log_line_format():
    line = "2018-06-01 12:00:00.123 alertprocessor:7 stdout \u23b8 AlertProcessor 7 processed 14 alerts"
    assert stacklist.parse_log_line(line) == ("2018-06-01 12:00:00.123", "alertprocessor", 7, "stdout",
                                              "AlertProcessor 7 processed 14 alerts")
