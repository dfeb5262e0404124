"""Who holds a TCP port on this machine (the registry's, before it is started)."""
from __future__ import annotations

import os
import socket


def port_holder(port: int) -> str:
    """Who listens on a local TCP port: 'pid N (name)' or a plain description."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if int(parts[1].split(":")[1], 16) == port and parts[3] == "0A":
                        inodes.add(parts[9])
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = open(f"/proc/{pid}/comm").read().strip()
                    return f"pid {pid} ({name})"
        except OSError:
            continue
    return "another process"


def port_free(address: str, port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        return True
    except OSError:
        return False
    finally:
        s.close()
