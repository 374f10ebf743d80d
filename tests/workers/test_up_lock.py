"""The data dir's `up` lock (workers/up_lock.py): held by one process at a time, refused with the
holder's pid, start time and command, released when the holder exits — also on SIGKILL.
The whole `up` refusing a second `up` is tests/workers/test_up_supervised.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workers.up_lock import LOCK_FILE, DataDirInUse, hold_up_lock

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _holder_process(data_dir: Path) -> subprocess.Popen[str]:
    """Another process holding the lock until it is killed; returns once it holds it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from workers.up_lock import hold_up_lock
        with hold_up_lock(Path({str(data_dir)!r})):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "up", "--data-dir", str(data_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "held\n"
    return proc


def test_one_holder_at_a_time_and_the_refusal_names_it(tmp_path: Path) -> None:
    holder = _holder_process(tmp_path)
    try:
        with pytest.raises(DataDirInUse) as refused, hold_up_lock(tmp_path):
            pytest.fail("a second holder got the lock")
        message = str(refused.value)
        assert f"the data dir {tmp_path} is in use by another `leadflow up`" in message
        assert f"pid {holder.pid}, started " in message
        started = re.search(r"started (\S+):", message)
        assert started, message
        when = datetime.fromisoformat(started.group(1))
        assert timedelta(0) <= datetime.now(UTC) - when < timedelta(minutes=5)
        assert f"up --data-dir {tmp_path}" in message  # its command line
        assert "--data-dir" in message.rsplit(";", 1)[1]  # and what to do instead
        # The refused one did not overwrite what the holder wrote.
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL released it (the kernel drops a dead process's flock): the next one gets it.
    with hold_up_lock(tmp_path) as lock_file:
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: it names nobody


def test_the_lock_is_not_inherited_by_children(tmp_path: Path) -> None:
    """A child of `up` (a worker, the dev server) that outlived it must not keep the data dir
    locked."""
    with hold_up_lock(tmp_path):
        child = subprocess.Popen(["sleep", "30"])
    try:
        with hold_up_lock(tmp_path):
            pass
    finally:
        child.kill()
        child.wait()


def test_a_holder_that_has_not_written_yet_is_still_refused(tmp_path: Path) -> None:
    import fcntl

    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DataDirInUse, match="another process \\(it has not written its pid"):
            with hold_up_lock(tmp_path):
                pass
    finally:
        os.close(fd)


def test_a_missing_data_dir_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), hold_up_lock(tmp_path / "nope"):
        pass
