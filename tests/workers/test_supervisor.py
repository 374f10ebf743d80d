"""The supervisor `leadflow up` runs its worker processes with, on trivial child commands (sh):
logs per child, restart with backoff after an unexpected exit, reset of the backoff after a
long enough run, graceful stop with SIGKILL for a child that ignores SIGTERM, children that do
not outlive a SIGKILLed supervisor, and a start that fails when a child dies before it is ready.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from workers.supervisor import Backoff, ChildExit, ChildFailed, ChildSpec, Supervisor

pytestmark = pytest.mark.timeout(60)

FAST = Backoff(initial=0.05, cap=0.2, reset_after=30)


def _spec(tmp_path: Path, name: str, script: str, **env: str) -> ChildSpec:
    return ChildSpec(
        name=name,
        argv=["sh", "-c", script],
        log_path=tmp_path / "logs" / f"{name}.log",
        env={**os.environ, **env},
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _contains(path: Path, text: str) -> Callable[[], bool]:
    return lambda: text in path.read_text()


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff()
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_child_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Supervisor([_spec(tmp_path, "w", "true"), _spec(tmp_path, "w", "true")])


async def test_children_run_with_their_environment_and_log_to_their_own_file(
    tmp_path: Path,
) -> None:
    specs = [
        _spec(tmp_path, f"w{i}", 'echo "hello from $WHO"; exec sleep 30', WHO=f"w{i}")
        for i in (1, 2)
    ]
    supervisor = Supervisor(specs, backoff=FAST)
    supervisor.start()
    try:
        pids = supervisor.pids()
        assert len(set(pids)) == 2 and all(_alive(pid) for pid in pids)
        for i in (1, 2):
            log = tmp_path / "logs" / f"w{i}.log"
            await _until(_contains(log, f"hello from w{i}"))
            assert f"starting w{i}: sh -c" in log.read_text()
        # Their own process group: a terminal's Ctrl-C reaches the supervisor alone.
        assert all(os.getpgid(pid) == pid for pid in pids)
    finally:
        await supervisor.stop()
    assert not any(_alive(pid) for pid in pids)
    assert [s.last_exit_code for s in supervisor.status()] == [-signal.SIGTERM] * 2


async def test_a_child_that_dies_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    events: list[ChildExit] = []
    crashing = _spec(tmp_path, "crashy", "echo up; exit 3")
    steady = _spec(tmp_path, "steady", "exec sleep 30")
    supervisor = Supervisor(
        [crashing, steady], backoff=FAST, on_exit=events.append, poll_interval=0.01
    )
    supervisor.start()
    steady_pid = supervisor.status()[1].pid
    runner = asyncio.create_task(supervisor.run())
    try:
        await _until(lambda: len(events) >= 5)
    finally:
        await supervisor.stop()
        await runner
    assert {e.name for e in events} == {"crashy"}
    assert all(e.code == 3 for e in events)
    assert [e.restart_in for e in events[:5]] == [0.05, 0.1, 0.2, 0.2, 0.2]
    crashy, steady_status = supervisor.status()
    assert crashy.restarts >= 4 and crashy.last_exit_code == 3
    assert steady_status.restarts == 0 and steady_status.pid == steady_pid
    assert events[0].describe() == (
        f"crashy (pid {events[0].pid}) exited with code 3 after {events[0].uptime:.0f} s; "
        "restarting in 0.05 s; "
        f"log: {crashing.log_path}"
    )
    assert crashing.log_path.read_text().count("up\n") >= 5


async def test_a_killed_child_is_named_by_its_signal_and_restarted(tmp_path: Path) -> None:
    events: list[ChildExit] = []
    supervisor = Supervisor(
        [_spec(tmp_path, "w1", "exec sleep 30")],
        backoff=FAST,
        on_exit=events.append,
        poll_interval=0.01,
    )
    supervisor.start()
    runner = asyncio.create_task(supervisor.run())
    try:
        (first,) = supervisor.pids()
        os.kill(first, signal.SIGKILL)
        await _until(lambda: bool(supervisor.pids()) and supervisor.pids() != [first])
    finally:
        await supervisor.stop()
        await runner
    (event,) = events
    assert event.pid == first and event.code == -signal.SIGKILL
    assert "exited with code -9 (SIGKILL)" in event.describe()
    assert supervisor.status()[0].restarts == 1


async def test_the_backoff_starts_over_after_a_child_stayed_up(tmp_path: Path) -> None:
    events: list[ChildExit] = []
    backoff = Backoff(initial=0.05, cap=1, reset_after=0.3)
    supervisor = Supervisor(
        [_spec(tmp_path, "w1", "sleep 0.4; exit 1")],
        backoff=backoff,
        on_exit=events.append,
        poll_interval=0.01,
    )
    supervisor.start()
    runner = asyncio.create_task(supervisor.run())
    try:
        await _until(lambda: len(events) >= 3)
    finally:
        await supervisor.stop()
        await runner
    assert [e.restart_in for e in events[:3]] == [0.05, 0.05, 0.05]
    assert all(e.uptime >= 0.3 for e in events)


async def test_no_restart_after_stop(tmp_path: Path) -> None:
    events: list[ChildExit] = []
    supervisor = Supervisor(
        [_spec(tmp_path, "w1", "exit 1")],
        backoff=Backoff(initial=0.2, cap=0.2),
        on_exit=events.append,
        poll_interval=0.01,
    )
    supervisor.start()
    runner = asyncio.create_task(supervisor.run())
    await _until(lambda: len(events) == 1)
    await supervisor.stop()  # while the restart is pending
    await runner
    await asyncio.sleep(0.3)
    supervisor.poll()
    assert supervisor.pids() == [] and supervisor.status()[0].restarts == 0


async def test_stop_is_graceful_then_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    graceful = _spec(
        tmp_path, "graceful", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.05; done"
    )
    stubborn = ChildSpec(
        name="stubborn",
        argv=[
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('sleeping', 'now', flush=True); time.sleep(60)",
        ],
        log_path=tmp_path / "logs" / "stubborn.log",
    )
    supervisor = Supervisor([graceful, stubborn], stop_timeout=0.5)
    supervisor.start()
    await _until(lambda: "sleeping now" in stubborn.log_path.read_text())
    pids = supervisor.pids()
    started = time.monotonic()
    await supervisor.stop()
    took = time.monotonic() - started
    assert 0.5 <= took < 5
    assert [s.last_exit_code for s in supervisor.status()] == [0, -signal.SIGKILL]
    assert "bye" in graceful.log_path.read_text()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    """`kill -9` of the supervising process: its children get SIGTERM from the kernel."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from workers.supervisor import ChildSpec, Supervisor

        async def main() -> None:
            supervisor = Supervisor(
                [ChildSpec("w1", ["sleep", "60"], Path({str(tmp_path / "w1.log")!r}))]
            )
            supervisor.start()
            Path({str(pid_file)!r}).write_text(str(supervisor.pids()[0]))
            await supervisor.run()

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None, "the supervising process died"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert _alive(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child), "the child outlived its SIGKILLed supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


async def test_wait_ready_fails_when_a_child_dies_while_starting(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "w1", "echo 'cannot reach Temporal' >&2; exit 1")

    async def never(_pids: list[int]) -> set[int]:
        return set()

    supervisor = Supervisor([spec], ready_check=never, poll_interval=0.01)
    supervisor.start()
    with pytest.raises(ChildFailed) as failed:
        await asyncio.wait_for(supervisor.wait_ready(), timeout=10)
    assert failed.value.name == "w1" and failed.value.code == 1
    assert str(failed.value) == f"w1 exited with code 1 while starting; see {spec.log_path}"
    assert "cannot reach Temporal" in spec.log_path.read_text()
    await supervisor.stop()


async def test_wait_ready_returns_once_every_child_is_ready(tmp_path: Path) -> None:
    """Each child is asked about until it is ready; a failing check is asked again."""
    specs = [
        _spec(tmp_path, f"w{i}", f"sleep 0.{i}; touch {tmp_path}/ready-$$; exec sleep 30")
        for i in (1, 3)
    ]
    asked: list[list[int]] = []
    answered: set[int] = set()

    async def ready(pids: list[int]) -> set[int]:
        assert not answered & set(pids), "asked again about a child that is ready"
        asked.append(pids)
        if len(asked) == 2:
            raise RuntimeError("Temporal is busy")
        answered.update(pid for pid in pids if (tmp_path / f"ready-{pid}").exists())
        return answered & set(pids)

    supervisor = Supervisor(specs, ready_check=ready, poll_interval=0.01)
    supervisor.start()
    try:
        assert [s.ready for s in supervisor.status()] == [False, False]
        await asyncio.wait_for(supervisor.wait_ready(), timeout=10)
        assert [s.ready for s in supervisor.status()] == [True, True]
        assert asked[0] == supervisor.pids() and len(asked) >= 3
    finally:
        await supervisor.stop()


async def test_a_restarted_child_is_ready_again_once_the_check_says_so(tmp_path: Path) -> None:
    async def ready(pids: list[int]) -> set[int]:
        return set(pids)

    supervisor = Supervisor(
        [_spec(tmp_path, "w1", "exec sleep 30")],
        ready_check=ready,
        backoff=FAST,
        poll_interval=0.01,
        ready_interval=0.05,
    )
    supervisor.start()
    await supervisor.wait_ready()
    runner = asyncio.create_task(supervisor.run())
    try:
        (first,) = supervisor.pids()
        os.kill(first, signal.SIGKILL)
        await _until(lambda: supervisor.pids() not in ([], [first]))
        await _until(lambda: supervisor.status()[0].ready)
    finally:
        await supervisor.stop()
        await runner


async def test_stop_kills_a_child_that_is_still_starting_at_once(tmp_path: Path) -> None:
    """Still starting, it holds no work: no need to wait for it to notice SIGTERM."""
    starting = ChildSpec(
        name="starting",
        argv=[
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('importing', 'things', flush=True); time.sleep(60)",
        ],
        log_path=tmp_path / "starting.log",
    )

    async def never(_pids: list[int]) -> set[int]:
        return set()

    supervisor = Supervisor([starting], ready_check=never, stop_timeout=30)
    supervisor.start()
    await _until(_contains(starting.log_path, "importing things"))
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 5
    assert supervisor.status()[0].last_exit_code == -signal.SIGKILL


def _niceness(pid: int) -> int:
    """Field 19 of /proc/<pid>/stat: the process's nice value."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def test_children_run_below_the_supervisors_cpu_priority_and_0_leaves_them_alone(
    tmp_path: Path,
) -> None:
    """`leadflow up` runs its workers niced (Settings.background_niceness): under overload the
    API in the supervisor's own process gets the CPU first. A restarted child is niced too."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert ours <= 14, "the test needs room to nice its children by 5"
    niced = ChildSpec(
        name="niced",
        argv=["sh", "-c", "exec sleep 30"],
        log_path=tmp_path / "niced.log",
        niceness=5,
    )
    plain = ChildSpec(
        name="plain", argv=["sh", "-c", "exec sleep 30"], log_path=tmp_path / "plain.log"
    )
    supervisor = Supervisor([niced, plain], backoff=FAST)
    supervisor.start()
    try:
        niced_pid, plain_pid = supervisor.pids()
        assert _niceness(niced_pid) == ours + 5 == os.getpriority(os.PRIO_PROCESS, niced_pid)
        assert _niceness(plain_pid) == ours
        assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # the supervisor itself is untouched

        os.kill(niced_pid, signal.SIGKILL)
        await _until(lambda: supervisor.poll() == [] and supervisor.status()[0].restarts == 1)
        restarted = supervisor.status()[0].pid
        assert restarted is not None and restarted != niced_pid
        assert _niceness(restarted) == ours + 5
    finally:
        await supervisor.stop()


def test_lowered_priority_is_relative_and_0_is_no_preexec() -> None:
    from workers.supervisor import lowered_priority

    assert lowered_priority(0) is None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpriority(os.PRIO_PROCESS, 0))"],
        preexec_fn=lowered_priority(3),
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(out.stdout) == min(19, ours + 3)
