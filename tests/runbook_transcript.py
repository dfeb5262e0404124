"""The runbook's own transcript of `deploy/up dryrun` on burst (runbook.rst, "Deploy
Ampel"), the facts the stand-ins and the parsers are held to."""

# the order of the instances stopped, then the rest
RUNBOOK_STOPPED = """39cf18b4 992d0449 e49305fc ba08f91e f8b8ce10 af186630 a9404f1e a03a6a85 3dfcfabb 1a40fc58
15116b11 18ee48b0 90cd2739 97b8d0c0 db9e6bc3 7e5e6d7c c22ef49f a87f8253 3e8914d5 f1652941 eac9a825 36535acb""".split()
RUNBOOK_MONGO = {"ba08f91e", "af186630"}
RUNBOOK_REST = """not clearing anything
connection refused on burst.zeuthen.desy.de:27018, retry after 1 s
connection refused on burst.zeuthen.desy.de:27018, retry after 2 s
connected to burst.zeuthen.desy.de:27018
connection refused on burst.zeuthen.desy.de:27017, retry after 1 s
connection refused on burst.zeuthen.desy.de:27017, retry after 2 s
connected to burst.zeuthen.desy.de:27017
Stack                          Services                       Replicas Instance
============================== ============================== ======= ========
burst                          alertprocessor                 16      a9404f1e
                               catalog                                af186630
                               followup                               f8b8ce10
                               mongo                                  ba08f91e
                               stats                                  e49305fc
                               t2-controller                          992d0449
                               t3-controller                          39cf18b4
------------------------------ ------------------------------ ------- --------""".splitlines()
RUNBOOK_TABLE = "\n".join(RUNBOOK_REST[-10:]) + "\n"
