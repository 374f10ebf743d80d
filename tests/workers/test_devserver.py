"""Finding and stopping a Temporal dev server left running on a data dir, and naming what holds
a port (workers/devserver.py, workers/processes.py). The processes here only *look* like dev
servers — their command line is what `up` reads — so these run in a second; the real dev server
left behind by an older `up` is tests/workers/test_up_supervised.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers import processes
from workers.devserver import (
    PID_FILE,
    DevServerError,
    leftover_dev_servers,
    port_problem,
    running_up,
    serves_data_dir,
    stop_leftover,
)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _lookalike(
    procs: list[subprocess.Popen[bytes]],
    db: str,
    *,
    cwd: Path,
    ignore_term: bool = False,
    name: str = "temporal",
) -> subprocess.Popen[bytes]:
    """A process whose command line is `temporal server start-dev --db-filename <db> …`: a
    shell (run under that name) blocked until killed, on a FIFO nobody writes to (a builtin:
    a shell that forked a `sleep` would show a second process with the same command line for
    a moment, which a real dev server never does)."""
    never = cwd / "never.fifo"
    if not never.exists():
        os.mkfifo(never)
    script = ("trap '' TERM; " if ignore_term else "") + f"read line < {never}"
    proc = subprocess.Popen(
        [name, "-c", script, "server", "start-dev", "--ip", "127.0.0.1", "--db-filename", db],
        executable="/bin/sh",
        cwd=cwd,
        start_new_session=True,
    )
    procs.append(proc)
    # Until the shell has exec'd (before that the child's command line is still ours) and, if
    # asked, ignores SIGTERM.
    while (processes.cmdline(proc.pid) or [""])[0] != name or (
        ignore_term and not _ignores(proc.pid, signal.SIGTERM)
    ):
        assert proc.poll() is None
    return proc


def _ignores(pid: int, sig: signal.Signals) -> bool:
    """Whether the process ignores `sig` (the SigIgn mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_a_dev_server_named_by_the_pid_file_or_found_in_proc_is_a_leftover(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    named = _lookalike(started, str(data_dir / "temporal.sqlite"), cwd=tmp_path)
    (data_dir / PID_FILE).write_text(f"{named.pid}\n")
    # An older `up` wrote no pid file; this one runs from the checkout with a relative path.
    unnamed = _lookalike(started, "state/temporal.sqlite", cwd=tmp_path)
    elsewhere = _lookalike(started, str(other / "temporal.sqlite"), cwd=tmp_path)
    not_temporal = _lookalike(
        started, str(data_dir / "temporal.sqlite"), cwd=tmp_path, name="nottemporal"
    )

    assert leftover_dev_servers(data_dir) == [named.pid, unnamed.pid]
    assert leftover_dev_servers(other) == [elsewhere.pid]
    assert not serves_data_dir(not_temporal.pid, data_dir)

    stop_leftover(named.pid)
    stop_leftover(unnamed.pid)
    assert named.wait(timeout=5) == -signal.SIGTERM
    assert unnamed.wait(timeout=5) == -signal.SIGTERM
    assert leftover_dev_servers(data_dir) == []
    assert elsewhere.poll() is None and not_temporal.poll() is None


def test_a_pid_file_naming_another_process_is_ignored(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """The pid was reused by something else after the dev server died: it is left alone."""
    sleeper = subprocess.Popen(["sleep", "30"])
    started.append(sleeper)
    (tmp_path / PID_FILE).write_text(f"{sleeper.pid}\n")
    assert leftover_dev_servers(tmp_path) == []
    (tmp_path / PID_FILE).write_text("not a pid\n")
    assert leftover_dev_servers(tmp_path) == []
    assert sleeper.poll() is None


def test_a_leftover_that_ignores_sigterm_is_killed(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    stubborn = _lookalike(
        started, str(tmp_path / "temporal.sqlite"), cwd=tmp_path, ignore_term=True
    )
    stop_leftover(stubborn.pid, grace=0.5)
    assert stubborn.wait(timeout=5) == -signal.SIGKILL


def test_stopping_a_leftover_that_is_gone_is_no_error(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    gone = _lookalike(started, str(tmp_path / "temporal.sqlite"), cwd=tmp_path)
    gone.kill()
    gone.wait()
    stop_leftover(gone.pid)


@pytest.mark.skipif(os.getuid() == 0, reason="root may signal anyone")
def test_a_leftover_of_another_user_is_an_error_that_names_it() -> None:
    with pytest.raises(DevServerError, match=r"cannot stop pid 1 .*another user"):
        stop_leftover(1)


def test_a_busy_port_is_named_with_its_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        problem = port_problem("127.0.0.1", port, what="Temporal", option="--temporal-port")
        assert problem is not None
        assert problem.startswith(f"port 127.0.0.1:{port} for Temporal is already in use by ")
        assert f"by pid {os.getpid()} (" in problem  # this very process, with its command
        assert problem.endswith("; pick another with --temporal-port")
    assert port_problem("127.0.0.1", port, what="Temporal") is None


def test_a_leftover_whose_parent_is_a_running_older_up_is_named_not_stopped(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """An older `up` took no lock: its dev server is on the data dir while it still runs. The
    parent's command line is that of the console script (`python …/leadflow up`)."""
    db = tmp_path / "temporal.sqlite"
    never = tmp_path / "never.fifo"
    os.mkfifo(never)
    older_up = tmp_path / "leadflow"
    older_up.write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(\n"
        f"    ['temporal', '-c', 'read line < {never}', 'server', 'start-dev',\n"
        f"     '--db-filename', {str(db)!r}],\n"
        "    executable='/bin/sh')\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    up = subprocess.Popen(
        [sys.executable, str(older_up), "up", "--data-dir", str(tmp_path)], stdout=subprocess.PIPE
    )
    started.append(up)
    assert up.stdout is not None
    server = int(up.stdout.readline())
    try:
        while (processes.cmdline(server) or [""])[0] != "temporal":
            assert up.poll() is None
        assert leftover_dev_servers(tmp_path) == [server]
        assert running_up(server) == up.pid
        assert f"pid {up.pid} (" in processes.describe(up.pid)
    finally:
        os.kill(server, signal.SIGKILL)
    # Orphaned (a crashed `up`): no `up` runs it any more.
    lone = _lookalike(started, str(db), cwd=tmp_path)
    assert running_up(lone.pid) is None  # its parent is this test, not an `up`
