"""Changes of one host that do not depend on one another, run side by side in one
command (readbatch's script): one round trip, and the slowest sets the time. Each job
is a list of named steps run in order, stopping at the first that fails, which it
names last on its stderr (`failed_step`); each job keeps its own output and exit
status. Under --dry each step is printed as it would run."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from . import readbatch
from .processes import Result

FAILED = "@@ampel-failed "
Steps = Sequence[Tuple[str, str]]  # [(name, command)]


def change(host, jobs: Sequence[Steps], *, user: Optional[str], show: str) -> List[Result]:
    """Run `jobs` on `host` at once (as `user`): their results, in order. One whose
    result did not come back (the connection cut) is exit 255 here."""
    if host.dry:
        return [[host.change(cmd, user=user) for _, cmd in steps][-1] for steps in jobs if steps]
    res = host.change(readbatch.script([chain(steps) for steps in jobs]), user=user, warn=True, show=show)
    got = readbatch.parse(res.stdout)
    lost = Result(res.stdout[-200:], res.stderr or "no result came back", 255)
    return [got.get(i, lost) for i in range(len(jobs))]


def chain(steps: Steps) -> str:
    """One command of named steps (pure): each runs (in a subshell: an `exit` in it
    ends that step) when the one before succeeded."""
    return "\n".join(f"( {cmd}\n) || {{ echo '{FAILED}{name}' >&2; exit 1; }}" for name, cmd in steps)


def failed_step(result: Result) -> Tuple[str, str]:
    """(the step that failed, its last line of stderr) of a job's result (pure)."""
    lines = [l.strip() for l in result.stderr.strip().splitlines() if l.strip()]
    if lines and lines[-1].startswith(FAILED):
        return lines[-1][len(FAILED):], (lines[-2] if len(lines) > 1 else "(no output)")
    return "", lines[-1] if lines else "(no output)"
