"""The image recipe in deploy/docker-images/devel: which repos the Dockerfile
clones through which deploy key, and the byte-preserving edits `keys` makes."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List

from ..config.errors import DeployError

CLONE = re.compile(
    r"git clone\s+(?:-\S+\s+)*git@(?P<alias>[A-Za-z0-9_.-]+):(?P<org>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?\s+(?P<dest>/\S+)"
)


@dataclass(frozen=True)
class CloneLine:
    alias: str
    org: str
    repo: str
    dest: str

    @property
    def directory(self) -> str:
        """The directory it makes under /Ampel: the name of the host copy."""
        return self.dest.rstrip("/").rsplit("/", 1)[-1]


def files(image_dir: Path):
    dockerfile = image_dir / "Dockerfile"
    env = image_dir / "environment.yml"
    for f in (dockerfile, env):
        if not f.is_file():
            raise DeployError(f"{f} is missing; ampel.source.dir must point at an Ampel-core checkout")
    return dockerfile, env


def clone_lines(text: str) -> List[CloneLine]:
    """Every `git clone git@<alias>:<org>/<repo>.git /Ampel/<dir>` that is not commented out."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        out += [CloneLine(**m.groupdict()) for m in CLONE.finditer(line)]
    return out


def key_alias(host_alias: str, pattern: str) -> str:
    """The deploy key's name from a clone line's host: github-ampel -> ampel for the
    pattern github-{alias} (the recipe derives the Host entry from the key's name)."""
    prefix, _, suffix = pattern.partition("{alias}")
    if not host_alias.startswith(prefix) or not host_alias.endswith(suffix) or len(host_alias) <= len(prefix + suffix):
        raise DeployError(f"clone host {host_alias} does not follow ampel.source.host_alias ({pattern})")
    return host_alias[len(prefix):len(host_alias) - len(suffix)]


def recipe_hash(image_dir: Path) -> str:
    """Hash of Dockerfile + environment.yml: a changed recipe means a new image."""
    h = hashlib.sha256()
    for f in files(image_dir):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def add_clone_line(text: str, line: str, dest: str) -> str:
    """Insert `line` after the last existing clone line (keeping every other byte)."""
    if any(c.dest.rstrip("/") == dest for c in clone_lines(text)):
        return text
    lines = text.splitlines(keepends=True)
    last = max((i for i, l in enumerate(lines) if CLONE.search(l)), default=None)
    if last is None:
        raise DeployError("the Dockerfile has no `git clone git@<alias>:<org>/<repo>.git /Ampel/<dir>` line to follow")
    prev = lines[last]
    indent = re.match(r"\s*", prev).group(0)
    prefix = "RUN " if prev.lstrip().startswith("RUN ") else ""
    new = f"{indent}{prefix}{line}\n"
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, new)
    return "".join(lines)


def add_pip_editable(text: str, path: str) -> str:
    """Add the `- -e` / `- <path>` pair to the pip: section of environment.yml."""
    lines = text.splitlines(keepends=True)
    items = [l.strip() for l in lines]
    for i, item in enumerate(items[:-1]):
        if item == "- -e" and items[i + 1] == f"- {path}":
            return text
    pip_at = next((i for i, l in enumerate(lines) if re.match(r"\s*-\s*pip:\s*$", l)), None)
    if pip_at is None:
        raise DeployError("environment.yml has no `- pip:` section to add the repo to")
    pip_indent = len(lines[pip_at]) - len(lines[pip_at].lstrip())
    end = pip_at + 1
    item_indent = None
    while end < len(lines):
        l = lines[end]
        ind = len(l) - len(l.lstrip())
        if l.strip() and ind <= pip_indent:
            break
        if l.strip().startswith("- "):
            item_indent = ind
        end += 1
    while end > pip_at + 1 and not lines[end - 1].strip():
        end -= 1
    ind = " " * (item_indent if item_indent is not None else pip_indent + 2)
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines[end:end] = [f"{ind}- -e\n", f"{ind}- {path}\n"]
    return "".join(lines)
