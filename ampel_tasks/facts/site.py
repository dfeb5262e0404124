"""Where things are for one version: paths on the hosts and filled command templates.

Templates come from the config (`ampel.commands`, `ampel.image_file`, ...); every
value put into a command is shell-quoted here, so a path with a space or a
version string can never become shell syntax.
"""
from __future__ import annotations

import posixpath
import shlex
import string
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

from . import envfile
from ..config.errors import DeployError
from ..config.version import minor_series


@dataclass(frozen=True)
class Target:
    """What a deployment is made of besides its version: where it is not the version's own,
    the image's decision (a reuse), a rollback or the running deployment says so."""
    # AMPEL_TAG: this version's own tag, or the running image's when image reuses it
    # (decide_image), or a rollback target's
    image_tag: Optional[str] = None
    reused_digest: Optional[str] = None  # the registry digest of the image reused as it is
    ampel_src: Optional[str] = None  # a rollback's (or the running deployment's) tree, not this version's own


def fill(template: str, where: str, **values) -> str:
    """Fill a command template, quoting every value for the shell."""
    try:
        return template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})
    except KeyError as exc:
        raise DeployError(f"template {where} uses {{{exc.args[0]}}}, which is not known; known: {', '.join(sorted(values))}") from None


def fill_path(template: str, where: str, **values) -> str:
    """Fill a path template (no shell quoting: the result is quoted where it is used)."""
    try:
        return string.Formatter().vformat(template, (), values)
    except KeyError as exc:
        raise DeployError(f"template {where} uses {{{exc.args[0]}}}, which is not known; known: {', '.join(sorted(values))}") from None


# singularity-stack names instances by 8 hex digits; Singularity 2.4 fails when the
# image file's name and the instance name together exceed 32 characters
INSTANCE_NAME_LENGTH = 8
NAME_LIMIT = 32


def check_instance_name_length(image_file: str, runtime: str) -> None:
    if runtime.startswith("singularity 2") and len(image_file) + INSTANCE_NAME_LENGTH > NAME_LIMIT:
        raise DeployError(
            f"image file name {image_file} ({len(image_file)} characters) plus an instance name "
            f"({INSTANCE_NAME_LENGTH}) exceeds Singularity 2.x's limit of {NAME_LIMIT}; singularity-stack would "
            "refuse to start it. Shorten ampel.image_file or the version")


class Site:
    """One stack host's view of a version: burst's (the service host, default) or, with
    `archive=True`, transit's (the host with the role `archive`, which runs the archive's
    stack from its own AMPEL_SRC, dryrun.env and secrets at the same paths)."""

    def __init__(self, run, archive: bool = False):
        self.run = run
        self.s = run.settings
        self.archive = archive
        if archive and self.s.archive_host is None:
            raise DeployError("no host has the role 'archive' (ampel.hosts.<name>.roles)")

    @property
    def version(self) -> str:
        return self.run.require_version()

    @cached_property
    def local_env(self) -> dict:
        """The operator's checkout's dryrun.env: where AMPEL_SRC comes from when not configured."""
        path = self.s.source_dir / self.s.source["env_file"]
        if not path.is_file():
            return {}
        return envfile.read(path.read_text())

    @cached_property
    def ampel_src(self) -> str:
        if self.run.target.ampel_src:  # a rollback: the tree the target deployment ran from
            return self.run.target.ampel_src
        template = self.s.paths["ampel_src"]
        if not template:
            template = self.local_env.get("AMPEL_SRC", "")
            if not template and self.run.dry:
                self.run.cant_read("AMPEL_SRC (shown as $AMPEL_SRC): not configured and no local dryrun.env")
                return "$AMPEL_SRC"
            if not template:
                raise DeployError(
                    "AMPEL_SRC is not known: set ampel.paths.ampel_src or AMPEL_SRC in "
                    f"{self.s.source_dir / self.s.source['env_file']}"
                )
        return fill_path(template, "ampel.paths.ampel_src", version=self.version, minor=minor_series(self.version))

    @property
    def src_owner(self) -> str:
        return self.s.paths["ampel_src_owner"] or self.s.operator

    @property
    def src_user(self):
        """The user git runs as in AMPEL_SRC: None for the operator's own login."""
        return None if self.src_owner == self.s.operator else self.src_owner

    @property
    def core_dir(self) -> str:
        return posixpath.join(self.ampel_src, "ampel-core")

    @property
    def env_file(self) -> str:
        return posixpath.join(self.core_dir, self.s.source["env_file"])

    @property
    def schema_marker(self) -> str:
        return posixpath.join(self.core_dir, self.s.source["schema_marker"])

    @property
    def stack_file(self) -> str:
        rel = self.s.archive["stack_file"] if self.archive else self.s.source["stack_file"]
        return posixpath.join(self.core_dir, rel)

    @property
    def stack_name(self) -> str:
        """The stack deploy/up starts there (singularity-stack names instances after it)."""
        return self.s.archive["stack"] if self.archive else self.s.stack["name"]

    @property
    def up_script(self) -> str:
        return posixpath.join(self.core_dir, self.s.source["up_script"])

    @property
    def image_tag(self) -> str:
        """The image this deployment runs: the version's own when `image` builds or
        finds one for it, else the running deployment's (a code-only release reuses
        it as it is, AMPEL_TAG unchanged)."""
        return self.run.target.image_tag or self.version

    @property
    def image_file(self) -> str:
        name = fill_path(self.s.image_file, "ampel.image_file", version=self.image_tag)
        check_instance_name_length(name, self.s.runtime)
        return name

    def on(self, key: str) -> str:
        """ampel.paths.<key> (the same on every host)."""
        return self.s.paths[key]

    def singularity_dir(self) -> str:
        return self.on("singularity_dir")

    @property
    def image_path(self) -> str:
        return posixpath.join(self.singularity_dir(), self.image_file)

    @property
    def dryrun_dir(self) -> str:
        return self.on("dryrun_dir")

    @property
    def mongo_path(self) -> str:
        return fill_path(self.s.env["mongo_path"], "ampel.env.mongo_path",
                         mongo_live_dir=self.on("mongo_live_dir"), version=self.version)

    @property
    def group_name(self) -> str:
        return fill_path(self.s.env["group_name"], "ampel.env.group_name", version=self.version)

    @property
    def image_ref(self) -> str:
        return f"{self.s.image['name']}:{self.image_tag}"

    @property
    def registry(self) -> str:
        return f"localhost:{self.s.registry['port']}"

    @property
    def pushed_ref(self) -> str:
        return f"{self.registry}/{self.s.image['name']}:{self.image_tag}"

    def command(self, name: str, **values) -> str:
        return fill(self.s.commands[name], f"ampel.commands.{name}", **values)

    @property
    def service_host(self):
        return self.run.host(self.s.service_host.name)

    @property
    def stack_host(self):
        """Where this Site's stack runs: the service host, or the archive host."""
        return self.run.host(self.s.archive_host.name) if self.archive else self.service_host

    @property
    def pull_hosts(self):
        return [self.run.host(h.name) for h in self.s.hosts_with("pull")]

    def stack_doc(self, text=None):
        """The stack file (burst.yml, transit.yml) from AMPEL_SRC on its host (or its
        `text`, already read), parsed; None if absent."""
        import yaml

        text = self.stack_host.read_file(self.stack_file, user=self.src_user) if text is None else text
        if text is None:
            return None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise DeployError(f"{self.stack_file} on {self.stack_host.name} is not valid YAML"
                              f"{where} ({getattr(exc, 'problem', None) or str(exc).splitlines()[0]})") from None


def stack_sites(run) -> list:
    """Every stack host's Site in the order they come up: the archive's (transit)
    first, since burst's writers connect to it; then burst's."""
    return ([Site(run, archive=True)] if run.settings.archive_host is not None else []) + [Site(run)]
