"""The plan's reads side by side. The image's decision comes first (while both hosts'
connections open): what it decides (the tag AMPEL_TAG names, a reused image's digest)
is what later facts are read for. Then the local facts (registry, image files, the
test step's mirrors, in that order: one fetch at a time into a mirror) and transit's
facts go on threads of their own, burst's on the calling thread. Only for speed:
every fact is gathered once under its key in the run (`Run.evidence`: a second asker
waits for the first), so the deciders that follow find it read; a read that failed
here is read again by its decider, which raises."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, List

from ..facts.site import stack_sites
from ..remote import readbatch
from ..steps import pull, push, runner, schema, secrets, src, test, up


def local_reads(r) -> List[Callable]:
    """After the image's decision: the registry, the hosts' image files, the mirrors."""
    return [lambda: push.decide_push(r), lambda: pull.decide_pull(r), lambda: test.decide_test(r)]


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
    """Within the block, the plan's reads go on (the image's decision and burst's reads
    are done when it starts). Each host's connection opens with the reads the last plan
    asked of it sent in one command; this plan's reads are kept for the next."""
    sites = stack_sites(r)
    hosts = [site.stack_host for site in sites]
    batches = {h.name: readbatch.load(h.spec.hostname) for h in hosts}
    for h in hosts:
        h.record_reads()
        h.expect(batches[h.name])
    threads = _started([lambda h=h: _open(h, batches[h.name]) for h in hosts])
    _each([lambda: runner.decide(r, "image")])  # (its target: what the reads after it are for)
    lanes = [local_reads(r)] + [host_reads(r, s) for s in sites if s.archive]
    threads += _started([lambda lane=lane: _each(lane) for lane in lanes])
    for site in sites:
        if not site.archive:
            _each(host_reads(r, site))
    try:
        yield
    finally:
        for t in threads:
            t.join()
        for h in hosts:
            h.drop_fetched()  # (served to this plan only: later reads are fresh)
    for h in hosts:  # (what the next plan sends ahead: a run's later reads, some slow, would make it wait)
        readbatch.save(h.spec.hostname, h.recorded_reads())


def _open(host, batch) -> None:
    """The host's connection, then the reads the last plan asked of it, in one command."""
    try:
        host.connection()
    finally:
        host.prefetch(batch)  # (no connection: it serves nothing, and the readers waiting go on)

def _started(reads: List[Callable]) -> list:
    """Each read going on on a thread of its own (the caller joins them)."""
    threads = [threading.Thread(target=_each, args=([read],), daemon=True) for read in reads]
    for t in threads:
        t.start()
    return threads

