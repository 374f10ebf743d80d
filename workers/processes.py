"""What `leadflow up` asks of other processes, through psutil: their command line, working
directory, parent, whether they still run, and who listens on a TCP port. It names what holds
its data dir or a port, and recognises a Temporal dev server left running on its data dir. A
process that is gone or belongs to another user is "unknown" (None / empty), never an error."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import psutil

# psutil's errors for a process that is gone, a zombie, or not ours to look into.
_UNKNOWN = (psutil.Error, OSError)


def pids() -> Iterator[int]:
    """Every process id visible here."""
    yield from psutil.pids()


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, None if it is gone (or a zombie: its argv is empty) or not readable."""
    try:
        args = psutil.Process(pid).cmdline()
    except _UNKNOWN:
        return None
    return args or None


def cwd(pid: int) -> Path | None:
    """The process's working directory (what its relative paths mean), None if unknown."""
    try:
        return Path(psutil.Process(pid).cwd())
    except _UNKNOWN:
        return None


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (an exited child its parent did not reap yet
    holds no port, file lock or CPU any more)."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except _UNKNOWN:
        return False


def parent(pid: int) -> int | None:
    """The process's parent pid, None if it is gone."""
    try:
        ppid: int = psutil.Process(pid).ppid()
    except _UNKNOWN:
        return None
    return ppid


def describe(pid: int) -> str:
    """`pid 123 (temporal server start-dev …)`, or just `pid 123` when its command is unknown."""
    args = cmdline(pid)
    if not args:
        return f"pid {pid}"
    command = shlex.join(args)
    if len(command) > 200:
        command = command[:199] + "…"
    return f"pid {pid} ({command})"


def listener(port: int) -> int | None:
    """The process listening on TCP `port`, if it is one this user may look into."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except _UNKNOWN:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is not None:
                pid: int = conn.pid
                return pid
    return None
