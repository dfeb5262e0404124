"""AMPEL deployment tasks: `invoke --list`, then e.g. `invoke deploy --version v0.3.5`."""
from ampel_tasks import ns  # noqa: F401
