"""One `leadflow up` per data dir: it holds an exclusive `flock` on `<data dir>/up.lock` for its
whole life, and writes who it is into the file (pid, start time, command) so that a second `up`
on the same data dir is refused with a message naming the first.

Only `up` takes the lock: it alone runs the Temporal dev server, whose SQLite file two servers
must never share. `leadflow worker`, `api` and the other commands pointed at the same data dir
(its SQLite database, its keys) are fine beside a running `up`; that is how `up` itself runs its
workers. The kernel drops the lock when the process ends, however it ends (`kill -9` too), so a
lock is never stale; the text left in the file after a crash is just overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from workers import processes

LOCK_FILE = "up.lock"


class DataDirInUse(Exception):
    """Another process holds the data dir's `up` lock; the message names it."""


def _holder(lock_file: Path) -> str:
    """Who holds the lock, from what it wrote into the file."""
    try:
        info = json.loads(lock_file.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        # Between its flock() and its write: it has not said who it is yet.
        return "another process (it has not written its pid yet)"
    command = info.get("command") or processes.describe(pid)
    return f"pid {pid}, started {info.get('started', '?')}: {command}"


@contextmanager
def hold_up_lock(data_dir: Path) -> Iterator[Path]:
    """Hold the `up` lock of `data_dir` (which must exist) while the block runs; DataDirInUse
    at once if another process holds it."""
    lock_file = data_dir / LOCK_FILE
    # Not inherited by children (Python's default): the lock lives and dies with this process.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(
                f"the data dir {data_dir} is in use by another `leadflow up` "
                f"({_holder(lock_file)}); stop that one first (Ctrl-C in its terminal, or "
                "SIGTERM), or give this one another --data-dir"
            ) from None
        me = {
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield lock_file
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now
    finally:
        os.close(fd)  # releases the lock
