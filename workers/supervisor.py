"""A small process supervisor for `leadflow up`: runs child processes (the workers), each logging
to its own file, restarts one that exits unexpectedly with a growing delay, and stops them all
gracefully (SIGTERM, a grace period, then SIGKILL).

A child is *ready* once the caller's readiness check says so (for `up`: the worker polls
Temporal). A child that is not ready yet holds no work, so stopping it is a SIGKILL: a worker
busy importing would otherwise only notice SIGTERM once its start-up is done.

It polls its children from the event loop's thread instead of waiting on them in threads: on
Linux a child is started with PR_SET_PDEATHSIG, a signal sent when the *thread* that forked it
ends, so forking from a short-lived executor thread would kill the child with that thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from workers.data_dir import owner_only

PR_SET_PDEATHSIG = 1

log = logging.getLogger("leadflow.supervisor")

ReadyCheck = Callable[[list[int]], Awaitable[Collection[int]]]
"""Given the pids of children not known to be ready, returns those that are ready now."""


@dataclass(frozen=True)
class Backoff:
    """Delay before restarting a child: `initial`, doubling per consecutive failure, at most `cap`.
    A child that stayed up for `reset_after` seconds starts again from `initial`."""

    initial: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The delay after the `failures`-th consecutive unexpected exit (1-based)."""
        return float(min(self.cap, self.initial * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    niceness: int = 0  # steps below the supervisor's CPU priority (lowered_priority)


@dataclass(frozen=True)
class ChildExit:
    """A child exited while it was meant to run; it will be started again after `restart_in`."""

    name: str
    pid: int
    code: int
    uptime: float
    restart_in: float
    log_path: Path

    def describe(self) -> str:
        how = f"code {self.code}"
        if self.code < 0:
            try:
                how += f" ({signal.Signals(-self.code).name})"
            except ValueError:
                pass
        return (
            f"{self.name} (pid {self.pid}) exited with {how} after {self.uptime:.0f} s; "
            f"restarting in {self.restart_in:g} s; log: {self.log_path}"
        )


class ChildFailed(Exception):
    """A child exited before it became ready."""

    def __init__(self, name: str, code: int, log_path: Path) -> None:
        super().__init__(f"{name} exited with code {code} while starting; see {log_path}")
        self.name = name
        self.code = code
        self.log_path = log_path


@dataclass(frozen=True)
class ChildStatus:
    name: str
    pid: int | None
    running: bool
    ready: bool
    restarts: int
    last_exit_code: int | None
    log_path: Path


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ready: bool = False
    failures: int = 0
    restarts: int = 0
    last_exit_code: int | None = None
    restart_at: float | None = None
    exits: list[ChildExit] = field(default_factory=list)


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function that asks Linux to SIGTERM the child when its parent dies, so a
    `kill -9` of the supervisor leaves no child behind. None where prctl does not exist.

    "Its parent" is the *thread* that forks it: call `subprocess.Popen` with it from a thread
    that lives as long as the child should (the event loop's), never from an executor's."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved before fork (from the symbols already loaded: libc's), so that between fork and
    # exec only the call itself runs.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will signal us
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def lowered_priority(niceness: int) -> Callable[[], None] | None:
    """A preexec function that runs a child `niceness` steps below this process's CPU priority
    (`os.nice`: relative to ours, kept across exec and inherited by every thread the program
    starts; raising it needs no privilege). None for 0: the child is left alone.

    The one rule for background processes (Settings.background_niceness): `leadflow up` and
    bench/vs_peer.py run the Temporal dev server and the workers with it, so that under overload
    the API's acknowledgements win the CPU."""
    if niceness <= 0:
        return None

    def preexec() -> None:
        os.nice(niceness)

    return preexec


def chain(*steps: Callable[[], None] | None) -> Callable[[], None] | None:
    """One preexec function running the given ones in order (None when there is none)."""
    run = [step for step in steps if step is not None]
    if not run:
        return None
    if len(run) == 1:
        return run[0]

    def preexec() -> None:
        for step in run:
            step()

    return preexec


class Supervisor:
    """Runs `children` until `stop()`; `run()` restarts those that exit meanwhile.

    Without `ready_check` a child counts as ready once started. Call `start()`, `poll()`,
    `run()` and `stop()` from one thread (the event loop's)."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        ready_check: ReadyCheck | None = None,
        backoff: Backoff | None = None,
        on_exit: Callable[[ChildExit], None] | None = None,
        poll_interval: float = 0.2,
        ready_interval: float = 1.0,
        stop_timeout: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self._children = [_Child(spec) for spec in children]
        self._ready_check = ready_check
        self.backoff = backoff or Backoff()
        self._on_exit = on_exit
        self.poll_interval = poll_interval
        self.ready_interval = ready_interval
        self.stop_timeout = stop_timeout
        self._clock = clock
        self._stopping = False
        self._preexec = die_with_parent()

    # ---- state ------------------------------------------------------------------------------

    def status(self) -> list[ChildStatus]:
        return [
            ChildStatus(
                name=c.spec.name,
                pid=c.process.pid if c.process else None,
                running=c.process is not None and c.process.poll() is None,
                ready=c.ready,
                restarts=c.restarts,
                last_exit_code=c.last_exit_code,
                log_path=c.spec.log_path,
            )
            for c in self._children
        ]

    def pids(self) -> list[int]:
        """Process ids of the children running now."""
        return [s.pid for s in self.status() if s.running and s.pid is not None]

    @property
    def exits(self) -> list[ChildExit]:
        return [e for c in self._children for e in c.exits]

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        for child in self._children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        spec.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(spec.log_path, "ab", opener=owner_only) as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} starting {spec.name}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            child.process = subprocess.Popen(  # noqa: S603 - argv comes from our own caller
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(spec.env) if spec.env is not None else None,
                cwd=spec.cwd,
                # Own process group: a terminal's Ctrl-C reaches the supervisor only, which
                # then stops the children in order.
                process_group=0,
                preexec_fn=chain(self._preexec, lowered_priority(spec.niceness)),
            )
        child.started_at = self._clock()
        child.restart_at = None
        child.ready = self._ready_check is None

    def poll(self) -> list[ChildExit]:
        """Reap children that exited (scheduling their restart) and start those that are due."""
        if self._stopping:
            return []
        now = self._clock()
        seen: list[ChildExit] = []
        for child in self._children:
            process = child.process
            if process is not None and child.restart_at is None:
                code = process.poll()
                if code is None:
                    continue
                uptime = now - child.started_at
                if uptime >= self.backoff.reset_after:
                    child.failures = 0
                child.failures += 1
                child.ready = False
                delay = self.backoff.delay(child.failures)
                child.last_exit_code = code
                child.restart_at = now + delay
                event = ChildExit(
                    name=child.spec.name,
                    pid=process.pid,
                    code=code,
                    uptime=uptime,
                    restart_in=delay,
                    log_path=child.spec.log_path,
                )
                child.exits.append(event)
                seen.append(event)
                if self._on_exit is not None:
                    self._on_exit(event)
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
        return seen

    async def run(self) -> None:
        """Supervise until `stop()` is called."""
        next_check = 0.0
        while not self._stopping:
            self.poll()
            if self._clock() >= next_check:
                next_check = self._clock() + self.ready_interval
                await self._check_ready()
            await asyncio.sleep(self.poll_interval)

    async def _check_ready(self) -> bool:
        """Ask about the running children not known to be ready; whether all are ready now."""
        pending = {
            c.process.pid: c
            for c in self._children
            if c.process is not None and not c.ready and c.process.poll() is None
        }
        if pending and self._ready_check is not None:
            try:
                ready = await self._ready_check(list(pending))
            except Exception as exc:  # e.g. Temporal busy: ask again next time
                log.debug("readiness check failed: %s", exc)
                ready = ()
            for pid in ready:
                if pid in pending:
                    pending[pid].ready = True
        return all(c.ready for c in self._children)

    async def wait_ready(self) -> None:
        """Wait until every child is ready (bound it with `asyncio.timeout`). A child that exits
        meanwhile is `ChildFailed`: a worker that cannot start will not start on the next try
        either."""
        while True:
            for child in self._children:
                code = child.process.poll() if child.process is not None else None
                if code is not None:
                    child.last_exit_code = code
                    raise ChildFailed(child.spec.name, code, child.spec.log_path)
            if await self._check_ready():
                return
            await asyncio.sleep(self.poll_interval)

    async def stop(self) -> None:
        """SIGTERM every ready child (SIGKILL those still starting), wait up to `stop_timeout`,
        SIGKILL the rest; no restarts after."""
        self._stopping = True
        running: list[subprocess.Popen[bytes]] = []
        for child in self._children:
            if child.process is not None and child.process.poll() is None:
                _signal(child.process, signal.SIGTERM if child.ready else signal.SIGKILL)
                running.append(child.process)
        if not await self._exited(running, deadline=self._clock() + self.stop_timeout):
            for process in running:
                if process.poll() is None:
                    _signal(process, signal.SIGKILL)
            await self._exited(running, deadline=None)
        for child in self._children:
            if child.process is not None:
                child.last_exit_code = child.process.returncode

    async def _exited(
        self, processes: Sequence[subprocess.Popen[bytes]], *, deadline: float | None
    ) -> bool:
        """Whether all of `processes` exited (and were reaped) by `deadline` (None: waits)."""
        while True:
            if all(p.poll() is not None for p in processes):
                return True
            if deadline is not None and self._clock() >= deadline:
                return False
            await asyncio.sleep(0.05)


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:  # exited between poll() and the signal
        pass
