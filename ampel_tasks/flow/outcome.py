"""What a run aims at and what it did, typed: the deployment target the steps act for
(which image tag AMPEL_TAG names, which tree AMPEL_SRC is, the digest a reused image
already has) and what the run's manifest and hooks record. Nothing of it travels
under a string key."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class Target:
    # AMPEL_TAG: this version's own tag, or the running image's when image reuses it
    # (decide_image), or a rollback target's
    image_tag: Optional[str] = None
    reused_digest: Optional[str] = None  # the registry digest of the image reused as it is
    ampel_src: Optional[str] = None  # a rollback's (or `up --same`'s) tree, not this version's own


@dataclass
class Outcome:
    started: Optional[str] = None  # when the run began (its log and manifest bear it)
    plan: List[dict] = field(default_factory=list)  # the decisions as printed (the hooks' AMPEL_PLAN)
    locked: bool = False  # this run holds the deploy lock
    tests: Optional[dict] = None  # the test step's result, for the manifest
    image_id: Optional[str] = None  # the image the tests ran in
    new_db: bool = False  # db started a new live database
    archive: Optional[dict] = None  # transit's archive after up: schema version, size, path
    archive_backups: List[dict] = field(default_factory=list)  # backups taken before migrations
    schema_deferred: bool = False  # the archive did not run at schema's turn: migrated after transit's start
