"""One typed, validated view of `c.config.ampel`, built once per run.

invoke owns the layering (collection defaults < invoke.yaml < -f profile <
INVOKE_AMPEL_* < flags); this module only checks the result against the shape of
`defaults.DEFAULTS` and turns it into plain attributes, so a typo in a profile is
one line naming the key instead of a KeyError three steps later.
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from .defaults import DEFAULTS, HOST_DEFAULTS
from .errors import DeployError

_TYPE_NAMES = {bool: "true/false", int: "a whole number", str: "text", list: "a list", dict: "a mapping"}
# Mappings whose keys the operator chooses; their values have a fixed shape.
_FREE_KEYS = {"ampel.hosts": HOST_DEFAULTS}


def cache_dir() -> Path:
    """The tool's cache on this machine (AMPEL_TASKS_CACHE): the repos' mirrors, the reads
    the last plan asked of each host."""
    return Path(os.environ.get("AMPEL_TASKS_CACHE", Path.home() / ".cache" / "ampel-tasks"))


def _check(value: Any, default: Any, key: str) -> None:
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise DeployError(f"config key {key} must be a mapping, got {type(value).__name__} {value!r}")
        shape = _FREE_KEYS.get(key)
        for name, sub in value.items():
            sub_key = f"{key}.{name}"
            if shape is not None:
                _check(sub, shape, sub_key)
            elif name not in default:
                known = ", ".join(sorted(default))
                raise DeployError(f"unknown config key {sub_key}; known keys under {key}: {known}")
            else:
                _check(sub, default[name], sub_key)
        return
    expected = type(default)
    # bool is an int in Python; a port of `true` is still wrong
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if not ok:
        raise DeployError(
            f"config key {key} must be {_TYPE_NAMES.get(expected, expected.__name__)}, "
            f"got {type(value).__name__} {value!r}"
        )


@dataclass(frozen=True)
class HostSettings:
    name: str
    hostname: str
    port: int
    user: str
    roles: List[str]


@dataclass(frozen=True)
class Settings:
    raw: Dict[str, Any] = field(repr=False)
    version_pattern: str
    operator: str
    service_user: str
    ssh_config: str
    known_hosts: str
    timeouts: Dict[str, int]
    hosts: Dict[str, HostSettings]
    source: Dict[str, str]
    image: Dict[str, str]
    registry: Dict[str, Any]
    paths: Dict[str, str]
    image_file: str
    env: Dict[str, str]
    stack: Dict[str, str]
    archive: Dict[str, str]
    commands: Dict[str, str]
    runtime: str
    preamble: List[str]
    secrets: Dict[str, str]
    health: Dict[str, Any]
    hooks: Dict[str, str]
    output: Dict[str, Any]
    tests: Dict[str, str]

    def hosts_with(self, role: str) -> List[HostSettings]:
        return [h for h in self.hosts.values() if role in h.roles]

    @property
    def service_host(self) -> HostSettings:
        hosts = self.hosts_with("service")
        if len(hosts) != 1:
            raise DeployError(
                "exactly one host must have the role 'service' (ampel.hosts.<name>.roles); "
                f"found {len(hosts)}"
            )
        return hosts[0]

    @property
    def archive_host(self) -> Optional[HostSettings]:
        """The host running the archive's stack (role `archive`), or None: a site without one."""
        hosts = self.hosts_with("archive")
        if len(hosts) > 1:
            raise DeployError(f"at most one host may have the role 'archive'; found {len(hosts)}: "
                              + ", ".join(h.name for h in hosts))
        return hosts[0] if hosts else None

    @property
    def source_dir(self) -> Path:
        return Path(os.path.expanduser(self.source["dir"])).resolve()

    @property
    def image_dir(self) -> Path:
        return self.source_dir / self.source["image_dir"]

    @property
    def local_secrets_dir(self) -> Path:
        return Path(os.path.expanduser(self.secrets["local_dir"])).resolve()


def _plain(value: Any) -> Any:
    """invoke's DataProxy -> plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _host(name: str, given: dict) -> HostSettings:
    h = _deep_merge(HOST_DEFAULTS, given)
    if not h["hostname"]:
        raise DeployError(f"config key ampel.hosts.{name}.hostname is empty; expected a host name")
    if not 0 < h["port"] < 65536:
        raise DeployError(f"config key ampel.hosts.{name}.port must be 1-65535, got {h['port']}")
    return HostSettings(name, h["hostname"], h["port"], h["user"], list(h["roles"]))


def build_settings(config: Mapping, runtime_file: str | None = None) -> Settings:
    """Validate the merged invoke config and return the typed view."""
    if runtime_file:
        path = Path(runtime_file)
        if not path.is_file():
            raise DeployError(f"profile {runtime_file} does not exist; pick one of config/*.yaml")
    data = _plain(config.get("ampel", {}) if hasattr(config, "get") else {})
    _check(data, DEFAULTS["ampel"], "ampel")
    merged = _deep_merge(DEFAULTS["ampel"], data)
    hosts = {name: _host(name, h) for name, h in merged["hosts"].items()}
    _tag_pattern(merged["source"]["tag_pattern"])
    if not 0 < merged["registry"]["port"] < 65536:
        raise DeployError(f"config key ampel.registry.port must be 1-65535, got {merged['registry']['port']}")
    return Settings(
        raw=merged, version_pattern=merged["version_pattern"],
        operator=merged["operator"] or getpass.getuser(),
        service_user=merged["service_user"],
        ssh_config=os.path.expanduser(merged["ssh_config"] or "~/.ssh/config"),
        known_hosts=os.path.expanduser(merged["known_hosts"] or "~/.ssh/known_hosts"),
        timeouts=merged["timeouts"], hosts=hosts, source=merged["source"], image=merged["image"],
        registry=merged["registry"], paths=merged["paths"], image_file=merged["image_file"], env=merged["env"],
        stack=merged["stack"], archive=merged["archive"], commands=merged["commands"], runtime=merged["runtime"],
        preamble=_preamble(merged["shell"]["preamble"]),
        secrets=merged["secrets"], health=merged["health"], hooks=merged["hooks"], output=merged["output"],
        tests=merged["tests"],
    )


def _tag_pattern(pattern: str) -> None:
    """The deployment tag must be unique per deployment and unlike any release tag."""
    missing = [p for p in ("{version}", "{n}") if p not in pattern]
    if missing or "/" not in pattern:
        raise DeployError(
            f"config key ampel.source.tag_pattern ({pattern!r}) must contain {{version}}, {{n}} and a '/' "
            "(e.g. deployed/{version}-{n}): each deployment gets its own tag, never one of upstream's release tags")


def _preamble(lines: List[Any]) -> List[str]:
    for i, line in enumerate(lines):
        if not isinstance(line, str) or not line.strip() or "\n" in line:
            raise DeployError(f"config key ampel.shell.preamble[{i}] must be one line of shell, got {line!r}")
    return list(lines)


def _deep_merge(base: Mapping, over: Mapping) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
