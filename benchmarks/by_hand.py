"""The tool vs a plain shell script running the same commands on the hosts.

The tool's no-op deploy of the running version records every command it sends
to burst and transit (AMPEL_TASKS_RECORD); a shell script then sends exactly
those, in the same order, over one OpenSSH master connection per host, as a
careful operator's script would. The ratio (tool / script) is what the tool's
decisions, its local reads (engine, registry, git mirrors) and Python cost over
the bare commands. Needs the sandbox with a deployed version (`scripts/demo`).

    python3 benchmarks/by_hand.py [--repeats 5] [--version v0.3.5]
"""
import json
import os
import re
import shlex
import tempfile
from pathlib import Path

from _common import arguments, interleaved, report, spread, timed

SSH_CONFIG = "/var/lib/ampel-sandbox/ssh_config"


def script(records: list, work: str) -> str:
    """A shell script that sends the recorded commands, one master per host."""
    hosts = sorted({r["host"] for r in records})
    lines = ["set -u", f"cfg={shlex.quote(SSH_CONFIG)}"]
    for h in hosts:
        lines.append(f"ssh -F $cfg -M -S {work}/{h}.sock -o ControlPersist=60 -f -N {h}")
    for r in records:
        stdin = "</dev/null" if not r["stdin"] else "<<<''"
        lines.append(f"ssh -F $cfg -S {work}/{r['host']}.sock -T {r['host']} -- {shlex.quote(r['command'])} "
                     f">/dev/null 2>&1 {stdin} || true")
    lines += [f"ssh -F $cfg -S {work}/{h}.sock -O exit {h} 2>/dev/null" for h in hosts]
    return "\n".join(lines) + "\n"


def main():
    args = arguments(__doc__, repeats=5, version=(str, "v0.3.5", "the running version"))
    work = tempfile.mkdtemp(prefix="by-hand-")
    record = Path(work, "commands.jsonl")
    deploy = ["invoke", "-f", "config/sandbox.yaml", "deploy", "--version", args.version, "--yes"]

    def tool():
        record.unlink(missing_ok=True)
        os.environ["AMPEL_TASKS_RECORD"] = str(record)
        try:
            return timed(deploy)[0]
        finally:
            del os.environ["AMPEL_TASKS_RECORD"]

    tool()  # the commands a no-op deploy sends, for the first script
    sh = Path(work, "by-hand.sh")

    def by_hand():
        records = [json.loads(line) for line in record.read_text().splitlines()]
        sh.write_text(script(records, work))
        return timed(["bash", str(sh)])[0]

    pairs = interleaved(tool, by_hand, args.repeats)
    report("by_hand", {
        "commands_on_hosts": len(record.read_text().splitlines()),
        "tool_noop_deploy_s": spread(a for a, _ in pairs),
        "same_commands_by_script_s": spread(b for _, b in pairs),
        "ratio_tool_to_script": spread(a / b for a, b in pairs),
        "profile": profile(deploy),
    })


TRACE = re.compile(r"^trace: \[(\w+)\] ([\d.]+)s exit -?\d+: (.*)$")
AHEAD = re.compile(r"^trace: \[(\w+)\] read ahead, exit -?\d+: ")


def profile(deploy: list) -> dict:
    """Where one no-op deploy's time goes: the whole run, Python's start (bare `invoke
    --version`), and per host the commands sent and their seconds, and the reads answered
    from the batch sent ahead (AMPEL_TASKS_TRACE); the hosts' commands run side by side
    with the local reads, so the parts overlap."""
    start = timed(["invoke", "--version"])[0]
    os.environ["AMPEL_TASKS_TRACE"] = "1"
    try:
        wall, p = timed(deploy)
    finally:
        del os.environ["AMPEL_TASKS_TRACE"]
    hosts, slowest = {}, []
    for line in p.stderr.splitlines():
        ahead = AHEAD.match(line)
        if ahead:
            h = hosts.setdefault(ahead.group(1), {"commands": 0, "seconds": 0.0})
            h["read_ahead"] = h.get("read_ahead", 0) + 1
        m = TRACE.match(line)
        if m:
            host, seconds, command = m.group(1), float(m.group(2)), m.group(3)
            h = hosts.setdefault(host, {"commands": 0, "seconds": 0.0})
            h["commands"] += 1
            h["seconds"] = round(h["seconds"] + seconds, 3)
            slowest.append((seconds, host, command[:90]))
    slowest.sort(reverse=True)
    return {"wall_s": round(wall, 3), "python_start_s": round(start, 3), "hosts": hosts,
            "slowest": [{"host": h, "seconds": s, "command": c} for s, h, c in slowest[:5]]}


if __name__ == "__main__":
    main()
