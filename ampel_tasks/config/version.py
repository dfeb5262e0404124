"""The version being deployed: validated once (site.fill quotes it wherever it meets a shell)."""
from __future__ import annotations

import re

from .errors import DeployError

DEFAULT_PATTERN = r"^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z]+(\.[0-9A-Za-z]+)*)?$"
MAX_LENGTH = 64
# Whatever pattern an operator configures, these never reach a shell or a path.
_NEVER = re.compile(r"[^A-Za-z0-9._+-]|\.\.|^[.-]")


def validate_version(value, pattern: str = DEFAULT_PATTERN) -> str:
    """Return `value` if it is a version we may deploy, else raise DeployError."""
    if value is None or value == "":
        raise DeployError("no version given; pass --version, e.g. --version v0.3.5")
    if not isinstance(value, str):
        raise DeployError(f"version must be text, got {value!r}")
    shown = value if len(value) <= 40 else value[:37] + "..."
    if len(value) > MAX_LENGTH:
        raise DeployError(
            f"version {shown!r} is {len(value)} characters long; at most {MAX_LENGTH} are allowed"
        )
    if not value.isascii() or _NEVER.search(value):
        raise DeployError(
            f"version {shown!r} contains characters that are not allowed; "
            "expected something like v0.3.5 (letters, digits, '.', '-', '+')"
        )
    if not re.fullmatch(pattern, value):
        raise DeployError(
            f"version {shown!r} does not match ampel.version_pattern ({pattern}); "
            "expected something like v0.3.5 or v0.4.0-rc1"
        )
    return value


def minor_series(version: str) -> str:
    """The release series a version belongs to: v0.3.6 -> v0.3 (the site kept one
    AMPEL_SRC tree per series: /home/ampel/Ampel-v0.3)."""
    m = re.match(r"^(v?\d+\.\d+)", version)
    return m.group(1) if m else version
