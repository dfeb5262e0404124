"""What a run did, typed: what its manifest and hooks record (the deployment target it
acts for: facts/site.py's `Target`). Nothing of it travels under a string key."""
from __future__ import annotations

from dataclasses import dataclass, field
from concurrent.futures import Future
from typing import List, Optional


@dataclass
class Outcome:
    started: Optional[str] = None  # when the run began (its log and manifest bear it)
    plan: List[dict] = field(default_factory=list)  # the decisions as printed (the hooks' AMPEL_PLAN)
    locked: bool = False  # this run holds the deploy lock
    tests: Optional[dict] = None  # the test step's result, for the manifest
    image_id: Optional[str] = None  # the image the tests ran in
    built_image: Optional[str] = None  # the id of the image built or tagged for this version here
    pushed_digest: Optional[str] = None  # the digest the registry serves for this version (push)
    new_db: bool = False  # db started a new live database
    archive: Optional[dict] = None  # transit's archive after up: schema version, size, path
    archive_backups: List[dict] = field(default_factory=list)  # backups taken before migrations
    schema_deferred: bool = False  # the archive did not run at schema's turn: migrated after transit's start
    # what the manifest keeps of the service host, read beside the health gate (runrecord.read_beside)
    recorded: Optional[Future] = None
