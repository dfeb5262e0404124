"""What the operator typed that the steps of a chain share: one frozen value, made once
by the executor from every call's options (`invoke deploy --new-db` reaches `db`)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import FrozenSet, Iterable, Mapping


@dataclass(frozen=True)
class Options:
    force: FrozenSet[str] = frozenset()  # steps run though the plan skips them
    new_db: bool = False  # a new live database for this version
    new_archive: bool = False  # transit's ARCHIVE_PATH may be new or empty
    skip_tests: bool = False  # the test step skipped (recorded in the manifest)
    message: str = ""  # tag's commit message for the operator's own changes
    lock_wait: float = 0.0  # seconds to wait for the deploy lock
    break_lock: bool = False  # take a lock whose holder is gone
    same: bool = False  # `up --same`: the recorded version again
    verbose: bool = False  # every line of the hosts' output printed


def typed(calls: Iterable[Mapping[str, object]]) -> Options:
    """The options of a chain's calls (pure): for each, the first value given."""
    given = {}
    for kwargs in calls:
        for key, value in kwargs.items():
            if value not in (None, False, "", (), []):
                given.setdefault(key, value)
    known = {f.name for f in fields(Options)}
    values = {k: v for k, v in given.items() if k in known}
    if "force" in values:
        values["force"] = frozenset(values["force"]) if isinstance(values["force"], (list, tuple)) else frozenset()
    if "lock_wait" in values:
        values["lock_wait"] = float(values["lock_wait"])
    values.update({k: bool(values[k]) for k in ("new_db", "new_archive", "skip_tests", "break_lock", "same", "verbose")
                   if k in values})
    return Options(**values)
