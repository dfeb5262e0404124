"""ampel-tasks: the AMPEL deployment runbook as invoke tasks.

`ns` is the collection `invoke` (through tasks.py) and `ampel-deploy` run; its tasks
(`ampel_tasks/tasks/`) import the modules doing their work only when they run, so
`invoke --list` and tab completion stay fast.
"""
from .config.errors import install_excepthook
from .tasks import ns

install_excepthook()

__all__ = ["ns"]
