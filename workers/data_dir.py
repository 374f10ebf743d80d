"""The data dir holds the database, Temporal's history, logs and the secret key: its files are
readable by their owner only. Processes of leadflow create files with umask 077, the dir is
0700, and files an older version left readable are tightened on start."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_files() -> None:
    """Files this process (and the processes it starts) creates: owner only."""
    os.umask(PRIVATE_UMASK)


def owner_only(path: str, flags: int) -> int:
    """An `open(opener=...)` creating the file readable by its owner only, whatever the umask
    (logs hold what leads wrote)."""
    return os.open(path, flags, 0o600)


def private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) or tighten it and what is in it to its owner; returns it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    uid = os.getuid()
    for item in (path, *path.rglob("*")):
        try:
            info = item.lstat()
        except FileNotFoundError:  # removed meanwhile (a SQLite journal)
            continue
        if info.st_uid != uid or item.is_symlink() or not info.st_mode & 0o077:
            continue
        item.chmod(info.st_mode & 0o700)
    return path
