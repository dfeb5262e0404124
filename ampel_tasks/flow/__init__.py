"""The flow of one run: the executor that chains the tasks, the run and its typed
options, target and outcome, the plan's decisions, the lock and the record a run
leaves, the hooks."""
