"""`ampel-deploy`: invoke's Program on this collection, usable from any directory.

Project defaults (invoke.yaml) are looked for from the current directory upwards,
then beside the installed package's source tree, so `ampel-deploy -f
config/sandbox.yaml deploy ...` behaves like `invoke` run from the repo.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from invoke import Config, Program

from . import ns
from .config.errors import DeployError, debug_enabled, describe
from .flow.executor import ChainExecutor


def _project_dir() -> str | None:
    here = Path.cwd()
    for d in (here, *here.parents):
        if (d / "invoke.yaml").is_file() and (d / "ampel_tasks").is_dir():
            return str(d)
    src = Path(__file__).resolve().parent.parent
    return str(src) if (src / "invoke.yaml").is_file() else None


class AmpelConfig(Config):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("project_location", _project_dir())
        super().__init__(*args, **kwargs)


program = Program(
    name="ampel-deploy",
    binary="ampel-deploy",
    binary_names=["ampel-deploy"],
    namespace=ns,
    config_class=AmpelConfig,
    executor_class=ChainExecutor,
    version="0.1.0",
)


def main(argv=None):
    try:
        program.run(argv)
    except DeployError as exc:  # outside the executor, e.g. while loading config
        print(exc.message, file=sys.stderr)
        sys.exit(exc.code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
    except Exception as exc:
        if debug_enabled():
            raise
        print(f"error: {describe(exc)}", file=sys.stderr)
        sys.exit(1)
