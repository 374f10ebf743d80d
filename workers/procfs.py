"""What Linux's /proc says about other processes: their command line, whether they still run,
and who listens on a TCP port. `leadflow up` uses it to name what holds its data dir or a port,
and to recognise a Temporal dev server left running on its data dir. Elsewhere (no /proc) every
answer is "unknown" (None / empty), never an error."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def pids() -> Iterator[int]:
    """Every process id visible here."""
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.isdigit():
            yield int(entry.name)


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, None if it is gone (or a zombie: its argv is empty) or not readable."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return [arg.decode(errors="replace") for arg in raw.rstrip(b"\0").split(b"\0")]


def cwd(pid: int) -> Path | None:
    """The process's working directory (what its relative paths mean), None if unknown."""
    try:
        return Path(os.readlink(PROC / str(pid) / "cwd"))
    except OSError:
        return None


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (an exited child its parent did not reap yet
    holds no port, file lock or CPU any more)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def parent(pid: int) -> int | None:
    """The process's parent pid, None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def describe(pid: int) -> str:
    """`pid 123 (temporal server start-dev …)`, or just `pid 123` when its command is unknown."""
    args = cmdline(pid)
    if not args:
        return f"pid {pid}"
    command = shlex.join(args)
    if len(command) > 200:
        command = command[:199] + "…"
    return f"pid {pid} ({command})"


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP `port` (IPv4 and IPv6, any address)."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def listener(port: int) -> int | None:
    """The process listening on TCP `port`, if it is one this user may look into."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not inodes:
        return None
    for pid in pids():
        try:
            fds = list((PROC / str(pid) / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None
