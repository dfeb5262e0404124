"""The tasks over the whole site, their work: plan and deploy (with the plan's reads side
by side), status and history, rollback, prune, doctor, keys."""
