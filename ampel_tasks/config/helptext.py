"""Help texts of the options that several tasks share."""

VERSION_HELP = "version to deploy, e.g. v0.3.5 (reaches every step of the chain)"
DRY_HELP = "print every command and file edit, change nothing (same as invoke -R/--dry)"
VERBOSE_HELP = ("print every line (build output, the hosts' own output) instead of one per step; "
                "the run log has them anyway")
NEW_ARCHIVE_HELP = ("let transit's stack start an archive in a new or empty ARCHIVE_PATH (a new site); without it "
                    "that is refused, since the archive would hold none of the alerts archived so far")
SKIP_TESTS_HELP = "deploy without running the repos' unit tests (recorded in the manifest)"
LOCK_HELP = {
    "lock_wait": "wait up to SECONDS for another deploy's lock instead of failing at once",
    "break_lock": "break a lock left by a dead run (its holder is shown first)",
}

# the options every step task has (invoke copies a task's help: one dict serves them all)
STEP_HELP = {"version": VERSION_HELP, "dry": DRY_HELP, "verbose": VERBOSE_HELP}
