"""The process verdict (replicas.py) on captured output of its one command: what
runs is the nanny and its live child, never the instance listing."""
import getpass
import subprocess
import time

from ampel_tasks.facts import replicas

LOG = "/var/tmp/{user}.singularity.{instance}.{source}"

# burst in the sandbox, v0.3.5 deployed (abridged to three replicas): the nannies
# (forks of `singularity-stack deploy`, their parent init), each with its child
# `singularity run instance://...` (here the stand-in's nsenter) and the service
# below it; an instance's own process (singularity-instance: ...) writes nowhere.
HEALTHY = """@@PS
   4101       1 Ss       41 singularity-instance: ampel [af186630]
   4120       1 Ss       40 /usr/bin/python3 /usr/bin/singularity-stack deploy -c /home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml burst
   4125    4120 S        40 /usr/bin/nsenter -t 4102 -U -m -p -r -w --preserve-credentials -- mongod --port 27018
   4126    4125 Sl       40 mongod --port 27018
   4301       1 Ss       35 /usr/bin/python3 /usr/bin/singularity-stack deploy -c /home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml burst
   4307    4301 S        35 /usr/bin/nsenter -t 4290 -U -m -p -r -w --preserve-credentials -- ampel-alertprocessor --broker b --group g
   4308    4307 S        35 python3 /usr/local/bin/ampel-alertprocessor --broker b --group g
   4401       1 Ss       30 /usr/bin/python3 /usr/bin/singularity-stack deploy -c /home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml burst
   4409    4401 S         2 /usr/bin/nsenter -t 4390 -U -m -p -r -w --preserve-credentials -- ampel-alertprocessor --broker b --group g
   4410    4409 S         2 python3 /usr/local/bin/ampel-alertprocessor --broker b --group g
   5000    4999 S+        0 ps -u ampel -o pid=,ppid=,stat=,etimes=,args=
@@FD
/proc/4120/fd/1 /var/tmp/ampel.singularity.af186630.stdout
/proc/4125/fd/1 /var/tmp/ampel.singularity.af186630.stdout
/proc/4126/fd/1 /var/tmp/ampel.singularity.af186630.stdout
/proc/4301/fd/1 /var/tmp/ampel.singularity.a9404f1e.stdout
/proc/4307/fd/1 /var/tmp/ampel.singularity.a9404f1e.stdout
/proc/4308/fd/1 /var/tmp/ampel.singularity.a9404f1e.stdout
/proc/4401/fd/1 /var/tmp/ampel.singularity.36535acb.stdout
/proc/4409/fd/1 /var/tmp/ampel.singularity.36535acb.stdout
/proc/4410/fd/1 /var/tmp/ampel.singularity.36535acb.stdout
"""

INSTANCES = {"af186630": ("catalog", 0), "a9404f1e": ("alertprocessor", 0), "36535acb": ("alertprocessor", 15)}


def snap(text):
    return replicas.parse(text, "ampel", LOG)


def test_the_command_reads_processes_and_their_replica_files_in_one_go():
    cmd = replicas.command("ampel", LOG)
    assert cmd.startswith("echo @@PS; ps -u ampel -o pid=,ppid=,stat=,etimes=,args= | grep -v -F @@; echo @@FD; ")
    assert "-lname '/var/tmp/ampel.singularity.*.stdout'" in cmd


def test_each_replica_is_its_nanny_and_the_nannys_live_child():
    got = snap(HEALTHY)
    assert got == {
        "af186630": replicas.Replica(4120, 40, 4125, 40),
        "a9404f1e": replicas.Replica(4301, 35, 4307, 35),
        "36535acb": replicas.Replica(4401, 30, 4409, 2),
    }
    assert replicas.live_counts(INSTANCES, got) == {"catalog": 1, "alertprocessor": 2}


def test_a_nanny_between_restarts_has_no_child_and_a_zombie_or_its_check_is_none():
    text = (HEALTHY.replace("   4409    4401 S         2", "   4409    4401 Z         2")
            .replace("   4307    4301 S        35 /usr/bin/nsenter -t 4290 -U -m -p -r -w --preserve-credentials -- "
                     "ampel-alertprocessor --broker b --group g",
                     "   4307    4301 S         0 /bin/sh /usr/bin/singularity instance.list a9404f1e"))
    got = snap(text)
    assert got["36535acb"].child is None and got["a9404f1e"].child is None
    assert got["af186630"].child == 4125


def test_an_instance_without_its_nanny_is_not_a_replica():
    """2.x: the instance outlives the service; only a writer of the replica file counts."""
    text = "\n".join(l for l in HEALTHY.splitlines() if "4120" not in l and "4125" not in l and "4126" not in l)
    assert "af186630" not in snap(text)


def watch_after(*texts):
    w = replicas.Watch(INSTANCES)
    for t in texts:
        w.feed(snap(t))
    return w


def test_a_crash_loop_is_counted_per_replica_by_its_processes():
    dead = HEALTHY.replace("   4409    4401 S         2", "   9409    4499 S         2")  # gone from 4401
    again = HEALTHY.replace("4409", "4509").replace("4410", "4510")                     # a new child
    w = watch_after(HEALTHY, dead, again)
    assert w.failures() == ["alertprocessor (1 of 2 replicas, 1 restart)"]
    # replaced between two reads, unseen dead: a changed child pid is a restart too
    w = watch_after(HEALTHY, again, HEALTHY)
    assert w.failures() == ["alertprocessor (1 of 2 replicas, 2 restarts)"]


def test_a_young_nanny_without_its_first_child_is_starting_not_dead():
    young = HEALTHY.replace("   4401       1 Ss       30", "   4401       1 Ss        1").replace(
        "   4409    4401 S", "   4409    4499 S")
    w = watch_after(young)
    assert w.failures() == []
    old = young.replace("   4401       1 Ss        1", "   4401       1 Ss        3")
    w.feed(snap(old))
    assert w.failures() == ["alertprocessor (1 of 2 replicas, 1 restart)"]


def test_a_nanny_that_goes_fails_and_one_never_seen_only_waits():
    gone = "\n".join(l for l in HEALTHY.splitlines() if "4120" not in l)
    assert watch_after(HEALTHY, gone).failures() == ["catalog (1 of 1 replicas: the nanny is gone)"]
    assert watch_after(gone, gone).failures() == []


def test_the_stable_window_counts_the_childs_own_age():
    w = watch_after(HEALTHY)
    assert w.running(snap(HEALTHY), 5) == {"catalog": (1, 1), "alertprocessor": (1, 2)}
    assert w.running(snap(HEALTHY), 1) == {"catalog": (1, 1), "alertprocessor": (2, 2)}


def test_one_read_sees_a_crash_loop_between_restarts_by_a_child_younger_than_its_nanny():
    # replica 15's service started 28 s after its nanny: the nanny started it again
    assert replicas.restarted(INSTANCES, snap(HEALTHY)) == ["alertprocessor: 1 of 2 replicas restarted in the last 60 s"]
    # the nanny's first child (started with it), or a restart long ago, is no sign
    first = HEALTHY.replace("   4409    4401 S         2", "   4409    4401 S        29")
    assert replicas.restarted(INSTANCES, snap(first)) == []
    assert replicas.restarted(INSTANCES, snap(HEALTHY), within=1) == []


def test_a_fork_of_the_nanny_not_yet_a_program_of_its_own_is_not_its_child():
    """The nanny forks to run `singularity instance.list` (and its service): until the
    fork execs, it has the nanny's own command line. A read in that instant must not
    take it for the service (the next read would count a restart)."""
    fork = HEALTHY.replace(
        "   4409    4401 S         2 /usr/bin/nsenter -t 4390 -U -m -p -r -w --preserve-credentials -- ampel-alertprocessor --broker b --group g",
        "   4409    4401 S         0 /usr/bin/python3 /usr/bin/singularity-stack deploy -c "
        "/home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml burst")
    fork = fork.replace("   4410    4409 S         2 python3 /usr/local/bin/ampel-alertprocessor --broker b --group g\n", "")
    fork = fork.replace("   4401       1 Ss       30", "   4401       1 Ss        0")  # (a nanny just started)
    assert snap(fork)["36535acb"].child is None
    w = watch_after(fork, HEALTHY, HEALTHY)
    assert w.failures() == []


# the start section of a read of burst in the sandbox (/proc/uptime, CLK_TCK, then each
# process's start tick), for the nanny 4120, its child and service, and 4401's child
# just started; `ps etimes` whole seconds (procps 3.3 rounds them up) give way to it
STARTS = """@@START
71654.70 91302.93
100
4120 7163371
4125 7163374
4126 7163377
4409 7165400
"""


def test_ages_come_from_the_start_ticks_where_the_read_has_them():
    got = snap(HEALTHY + STARTS)
    assert got["af186630"] == replicas.Replica(4120, 20.99, 4125, 20.96)
    assert got["36535acb"].child_age == 0.7  # etimes said 2
    assert got["a9404f1e"] == replicas.Replica(4301, 35, 4307, 35)  # no tick read: etimes
    assert snap(HEALTHY + "@@START\ngarbled\n")["36535acb"].child_age == 2


def test_the_read_gives_a_process_its_age_in_hundredths_whatever_its_name(tmp_path):
    """The command itself, in a real shell: a process writing to a replica file, its
    name holding `) ` as a command's name may, is aged from its start tick."""
    log = str(tmp_path / "{user}.{instance}.{source}")
    prog = tmp_path / "a) b"
    prog.symlink_to("/bin/sleep")
    out = open(log.format(user=getpass.getuser(), instance="i0", source="stdout"), "w")
    p = subprocess.Popen([str(prog), "30"], stdout=out)
    try:
        time.sleep(0.3)
        text = subprocess.run(["sh", "-c", replicas.command(getpass.getuser(), log)],
                              capture_output=True, text=True).stdout
        nanny = replicas.parse(text, getpass.getuser(), log)["i0"]
        assert nanny.nanny == p.pid and 0.25 <= nanny.nanny_age < 1.5, nanny
    finally:
        p.kill()
        out.close()
