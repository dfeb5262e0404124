"""dryrun.env: read with python-dotenv, edited line by line so that comments and
every line we do not change stay byte for byte."""
from __future__ import annotations

import difflib
import io
import re
import shlex
from typing import Dict, List, Mapping

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from ..config.errors import DeployError

_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]*$")


def read(text: str) -> Dict[str, str]:
    """Values as python-dotenv reads them (no interpolation, as deploy/up exports them)."""
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^*?\[\s]*$")


def problems(text: str) -> List[str]:
    """What deploy/up would trip over (pure): it runs `env $(sed -e 's!#.*!!' FILE |
    xargs echo) singularity-stack ...`, so every word left after cutting at `#`
    must be NAME=VALUE; the first one that is not becomes the command env runs,
    after singularity-stack has stopped nothing yet but deploy/up goes on."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        body, cut, _ = line.partition("#")
        if not body.strip():
            continue
        try:
            words = shlex.split(body)
        except ValueError:
            out.append(f"line {n} has an unmatched quote (xargs refuses it)")
            continue
        bad = [w for w in words if not _ASSIGNMENT.match(w)]
        if bad:
            out.append(f"line {n}: `{bad[0][:40]}` is not NAME=VALUE (a value with a space, a glob character "
                       "or `export` included); deploy/up would hand it to env as a command")
        elif cut and not body[-1:].isspace():
            out.append(f"line {n}: deploy/up cuts the value of {words[-1].split('=')[0]} at its `#`")
    return out


def _format(key: str, value: str) -> str:
    if "\n" in value or "\x00" in value:
        raise DeployError(f"value for {key} contains a line break; refusing to write it to the env file")
    if _PLAIN.match(value):
        return f"{key}={value}"
    return "{}='{}'".format(key, value.replace("\\", "\\\\").replace("'", "\\'"))


def update(text: str, changes: Mapping[str, str]) -> str:
    """Return `text` with each key of `changes` set; untouched lines stay as they were.

    A key that is missing is appended at the end.
    """
    out = []
    seen = set()
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        if binding.key in changes and binding.key not in seen and not binding.error:
            seen.add(binding.key)
            ending = "\n" if original.endswith("\n") else ""
            # blank lines before the binding belong to it in python-dotenv's parse
            lines = original.splitlines(keepends=True)
            i = 0
            while i < len(lines) - 1 and not lines[i].strip():
                i += 1
            out.append("".join(lines[:i]))
            line = "".join(lines[i:]).rstrip("\n")
            # keep a trailing comment on the same line, if any
            comment = ""
            m = re.search(r"\s+#[^'\"]*$", line)
            if m and read(line[: m.start()] + "\n").get(binding.key) == binding.value:
                comment = line[m.start():]
            out.append(_format(binding.key, changes[binding.key]) + comment + ending)
        else:
            out.append(original)
    tail = [k for k in changes if k not in seen]
    if tail:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.extend(_format(k, changes[k]) + "\n" for k in tail)
    return "".join(out)


def diff(old: str, new: str, path: str, redact_keys=()) -> str:
    """A unified diff of an env file edit; values of `redact_keys` are masked."""

    before, after = read(old), read(new)

    def mask(text: str, mark: bool) -> list:
        lines = []
        for line in text.splitlines(keepends=True):
            key = line.split("=", 1)[0].replace("export ", "").strip()
            if key in redact_keys:
                changed = mark and before.get(key) != after.get(key)
                line = f"{key}=*****{' (changed)' if changed else ''}\n"
            lines.append(line)
        return lines

    return "".join(difflib.unified_diff(mask(old, False), mask(new, True), f"{path}", f"{path} (new)"))


VAR = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def expand(value, env: Dict[str, str], where: str, missing: List[str]):
    """singularity-stack's expansion: $VAR and ${VAR}, again on the result; an
    unknown variable is noted (it would be a KeyError after `rm`)."""
    if isinstance(value, list):
        return [expand(v, env, where, missing) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, env, f"{where}.{k}", missing) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    for _ in range(20):
        names = [m.group(1).strip("{}") for m in VAR.finditer(value)]
        unknown = [n for n in names if n not in env]
        if unknown:
            missing.extend(f"${n} (in {where})" for n in unknown)
            return value
        new = VAR.sub(lambda m: env[m.group(1).strip("{}")], value)
        if new == value:
            break
        value = new
    return value
