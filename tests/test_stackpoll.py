"""One poll of the stack (facts/stackpoll.py): the command sent to the service host and
the parser of what it prints, on a literal command and a literal captured output."""
from ampel_tasks.facts import stackpoll

LOG = "/home/{user}/.singularity-stack/logs/{instance}.{source}"

OUTPUT = """@@PS
  101     1 Ss    40 /usr/bin/python3 /usr/local/bin/singularity-stack deploy
  120   101 S     39 singularity-stack nanny ampel-alertprocessor-1
  121   120 Sl    39 python3 /Ampel/alertprocessor.py
@@FD
/proc/120/fd/1 /home/ampel/.singularity-stack/logs/ampel-alertprocessor-1.stdout
/proc/121/fd/1 /home/ampel/.singularity-stack/logs/ampel-alertprocessor-1.stdout
@@PORTS
27017 ok
8080 no
@@F ampel-alertprocessor-1 stdout 4096
processed 120 alerts
processed 240 alerts

@@F ampel-alertprocessor-1 stderr 0

"""


def test_the_poll_command_reads_processes_ports_and_each_file_past_its_offset():
    cmd = stackpoll.command("ampel", LOG, [27017], {("ampel-alertprocessor-1", "stdout"): 100}, 65536)
    assert cmd.startswith("echo @@PS; ps -u ampel -o pid=,ppid=,stat=,etimes=,args= | grep -v -F @@; echo @@FD; ")
    assert "; echo @@PORTS; (timeout 2 bash -c '</dev/tcp/127.0.0.1/27017' 2>/dev/null && echo 27017 ok || echo 27017 no); " in cmd
    assert cmd.endswith(
        "n=$(stat -c %s /home/ampel/.singularity-stack/logs/ampel-alertprocessor-1.stdout 2>/dev/null || echo 0); "
        "echo \"@@F ampel-alertprocessor-1 stdout $n\"; if [ \"$n\" -gt 100 ]; then tail -c +101 "
        "/home/ampel/.singularity-stack/logs/ampel-alertprocessor-1.stdout | head -c 65536; fi; echo")


def test_the_polls_output_is_parsed_into_replicas_ports_and_file_tails():
    got = stackpoll.parse(OUTPUT, "ampel", LOG)
    assert got.ports == {27017: True, 8080: False}
    assert [(f.instance, f.source, f.size, f.text) for f in got.files] == [
        ("ampel-alertprocessor-1", "stdout", 4096, "processed 120 alerts\nprocessed 240 alerts\n"),
        ("ampel-alertprocessor-1", "stderr", 0, ""),
    ]
    assert list(got.replicas) == ["ampel-alertprocessor-1"]
