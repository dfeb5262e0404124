"""Disk space before a pull: what `singularity pull` (2.x) needs on each host,
against what each filesystem it writes to has free.

It writes the compressed layers it lacks into $SINGULARITY_CACHEDIR/docker, unpacks
them in ${SINGULARITY_TMPDIR:-/tmp} and writes the image file (about the size of
the layers) beside the cache. A pull that cannot fit is refused by the plan,
before the deploy lock is taken or any byte moves, naming the filesystem and the
numbers.
"""
from __future__ import annotations

import shlex
from typing import Dict, List, Optional, Tuple

from ..remote.registrypush import mib


def df_command(paths: List[str]) -> str:
    """`df` of each path, or of its nearest existing parent (a directory the pull
    would create), as `@@df PATH` blocks; also the layers already cached."""
    parts = []
    for p in paths:
        q = p if p.startswith("${") else shlex.quote(p)
        parts.append(f'd={q}; while [ ! -e "$d" ]; do d=$(dirname "$d"); done; echo {shlex.quote("@@df " + p)}; '
                     'df -PB1 "$d" | tail -n 1')
    return "; ".join(parts)


TMP_DIR = "${SINGULARITY_TMPDIR:-/tmp}"


def fact_command(cache_dir: str) -> str:
    """One command: free space where the pull writes, and the layers already cached."""
    return (df_command([cache_dir, TMP_DIR]) + f"; echo @@cached; ls {shlex.quote(cache_dir)}/docker 2>/dev/null; true")


def parse_fact(text: str) -> tuple:
    """(df, cached digests) from fact_command's output (pure)."""
    head, _, cached = text.partition("@@cached")
    digests = {name.split(".")[0] for name in cached.split() if name.startswith("sha256:")}
    return parse_df(head), digests


def parse_df(text: str) -> Dict[str, Tuple[str, int]]:
    """{path: (mount point, bytes free)} from df_command's output (pure)."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("@@df "):
            current = line[5:].strip()
        elif current and line.strip():
            fields = line.split()
            if len(fields) >= 6 and fields[3].isdigit():
                out[current] = (fields[5], int(fields[3]))
            current = None
    return out


def needs(layers: List[Tuple[str, int]], cached: set, unpacked: int, cache_dir: str, tmp_dir: str,
          df: Dict[str, Tuple[str, int]]) -> Dict[str, dict]:
    """{mount point: {need, free, parts}} of the filesystems a pull writes to (pure)."""
    missing = sum(size for digest, size in layers if digest not in cached)
    image_file = sum(size for _, size in layers)
    out: Dict[str, dict] = {}
    for path, amount, what in ((cache_dir, missing, "layers"), (cache_dir, image_file, "image file"),
                               (tmp_dir, unpacked, "unpacked tree")):
        if path not in df or not amount:
            continue
        mount, free = df[path]
        entry = out.setdefault(mount, {"need": 0, "free": free, "parts": [], "paths": set()})
        entry["need"] += amount
        entry["parts"].append(f"{mib(amount)} MiB {what}")
        entry["paths"].add(path)
    return out


def problems(host: str, per_mount: Dict[str, dict]) -> List[str]:
    """One sentence per filesystem that is too small (pure)."""
    out = []
    for mount, e in sorted(per_mount.items()):
        if e["need"] > e["free"]:
            where = ", ".join(sorted(e["paths"]))
            out.append(f"on {host}: {where} (filesystem {mount}) has {mib(e['free'])} MiB free; the pull needs "
                       f"{mib(e['need'])} MiB there ({', '.join(e['parts'])}); free space first (`invoke prune`)")
    return out


def layer_sizes(manifest: Optional[dict]) -> List[Tuple[str, int]]:
    """[(digest, size)] of an image manifest's config and layers (pure)."""
    if not manifest:
        return []
    blobs = [manifest.get("config") or {}] + list(manifest.get("layers") or [])
    return [(b["digest"], int(b.get("size") or 0)) for b in blobs if b.get("digest")]
