"""Bad input on a deployed site: each one `error:` line, exit 1, no traceback, and
nothing changed on any host (every file's checksum, mode and owner before and after)."""
from pathlib import Path

import pytest

from conftest import tool
from sandboxsite import burst, live_instances, tree_digest

pytestmark = pytest.mark.sandbox
ENV = "home/ampel/Ampel-v0.3/ampel-core/deploy/production/dryrun.env"
STACK = "home/ampel/Ampel-v0.3/ampel-core/deploy/production/burst.yml"


def trees(sandbox) -> dict:
    return {h: tree_digest(Path(sandbox["host"][h]["root"])) for h in ("burst", "transit")}


def append(line):
    return lambda text: text + line


# (what the operator got wrong, the file it is in and how, the command, what the error says)
CASES = [
    ("a line that is no assignment", ENV, append("THIS LINE IS NOT AN ASSIGNMENT\n"),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "`THIS` is not NAME=VALUE"),
    ("export in the env file", ENV, append("export DEBUG=1\n"),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "`export` is not NAME=VALUE"),
    ("an unmatched quote", ENV, append("BROKER='kafka:9092\n"),
     ["plan", "--version", "v0.3.5-bad"], "has an unmatched quote"),
    ("a value with a space", ENV, append("GREETING=hello world\n"),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "`world` is not NAME=VALUE"),
    ("a variable that references an undefined one", ENV,
     lambda t: t.replace("CATSHTM_PATH=/data/ampel/catalogs/catsHTM2", "CATSHTM_PATH=$CATALOG_ROOT/catsHTM2"),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "$CATALOG_ROOT (in the stack file.services.alertprocessor"),
    ("a key the stack needs is missing", ENV,
     lambda t: "".join(l for l in t.splitlines(True) if not l.startswith("CATALOG_PORT=")),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "$CATALOG_PORT (in the stack file"),
    ("a stack file that is not YAML", STACK, append("services: [oops\n"),
     ["deploy", "--version", "v0.3.5-bad", "--yes"], "burst.yml on burst is not valid YAML at line"),
    ("an unknown service", None, None, ["logs", "nosuch", "--no-follow"], "nosuch"),
    ("an unknown rollback target", None, None, ["rollback", "--to", "v9.9.9", "--yes"],
     "no deployment of v9.9.9 is recorded"),
    ("a version that is no version", None, None, ["deploy", "--version", "v0.3.5;rm -rf /", "--yes"], "version"),
    ("an unknown step to force", None, None, ["deploy", "--version", "v0.3.5", "--force", "everything"],
     "--force everything: not a step"),
]


def test_bad_input_is_one_error_line_and_changes_nothing_on_any_host(deployed):
    sandbox = deployed
    running = live_instances(sandbox)
    before = trees(sandbox)
    failures = []
    for what, path, edit, args, expected in CASES:
        f = burst(sandbox, path) if path else None
        original = f.read_bytes() if f else None
        try:
            if f:
                f.write_text(edit(original.decode()))
            p = tool(*args, timeout=300)
        finally:
            if f:
                f.write_bytes(original)
        errors = [l for l in p.stderr.splitlines() if l.startswith("error: ")]
        if p.returncode != 1 or len(errors) != 1 or "Traceback" in p.stderr or expected not in errors[0]:
            failures.append(f"{what}: exit {p.returncode}, stderr {p.stderr[-600:]!r}")
            continue
        after = trees(sandbox)
        if after != before:
            changed = sorted(k for h in after for k in set(after[h]) ^ set(before[h]) |
                             {k for k in after[h] if before[h].get(k) != after[h][k]})
            failures.append(f"{what}: changed on the hosts: {changed[:5]}")
            before = after
    assert not failures, "\n".join(failures)
    assert live_instances(sandbox) == running, "the running stack was not touched"
