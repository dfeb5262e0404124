"""The plan's reads side by side: the local facts (git remotes and mirrors, the
engine, the registry) and each stack host's facts, each on a thread of its own. Only
for speed: every fact is gathered once under its key in the
run (`Run.evidence`: a second asker waits for the first), so the deciders that follow
find it read; a read that failed here is read again by its decider, which raises."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, List

from ..facts.site import stack_sites
from ..steps import image, pull, push, schema, secrets, src, test, up


def local_reads(r) -> List[Callable]:
    return [lambda: image.decide_image(r), lambda: push.decide_push(r), lambda: pull.decide_pull(r),
            lambda: test.decide_test(r)]


def host_reads(r, site) -> List[Callable]:
    """What the plan reads on one stack host (the schema is transit's)."""
    reads = [lambda: src.src_evidence(r, site), lambda: secrets.secrets_evidence(r, site)]
    if site.archive:
        return reads + [lambda: up.archive_evidence(r, site), lambda: schema.schema_evidence(r, site)]
    return reads + [lambda: up.service_health(r, site)]


def _each(reads: List[Callable]) -> None:
    for read in reads:
        try:
            read()
        except Exception:  # its decider reads it again and says what is wrong
            pass


@contextmanager
def reading(r):
    """Within the block, the plan's reads go on, each on a thread of its own (a host's
    reads share its one connection, as sessions of it)."""
    reads = local_reads(r) + [read for site in stack_sites(r) for read in host_reads(r, site)]
    threads = [threading.Thread(target=_each, args=([read],), daemon=True) for read in reads]
    for t in threads:
        t.start()
    yield
    for t in threads:
        t.join()


def started(read: Callable) -> Future:
    """`read()` going on on a thread of its own; `.result()` waits for it (and raises
    what it raised, on the asking thread)."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(read)
    finally:
        pool.shutdown(wait=False)
