"""Options a task shows that the run reads, not the task's body: the executor types them
once, from every call of the chain, into the run's `Options` (flow/options.py), and
each step reads them there. A task declares them with `run_options(...)`: invoke shows
them in `--help` and completes them; the body is called without them, so its own
parameters are what it reads."""
from __future__ import annotations

import functools
import inspect

# name: the default invoke shows
RUN_OPTIONS = {
    "verbose": False, "yes": False, "force": None, "new_db": False, "new_archive": False, "message": None,
    "skip_tests": False, "lock_wait": 0, "break_lock": False, "same": False,
}


def run_options(*names: str):
    """Show `names` as options of the task; they go to the run, not to the body."""
    def declare(body):
        sig = inspect.signature(body)
        shown = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=RUN_OPTIONS[n]) for n in names]

        @functools.wraps(body)
        def task_body(c, *args, **kwargs):
            for n in names:
                kwargs.pop(n, None)
            return body(c, *args, **kwargs)

        task_body.__signature__ = sig.replace(parameters=list(sig.parameters.values()) + shown)
        return task_body
    return declare
