"""MailboxReaderWorkflow: one per tenant with a mailbox (id `mailbox:{tenant}`, models/mailbox.py).

The workflow decides, its activity acts (activities/mailbox.py). A loop:
- read: the activity reads the mails after the cursor and, with nothing new and a server that
  has IDLE, waits there (up to IDLE_SECONDS, under IMAP's 29 minutes) and reads what arrives;
  the workflow keeps the cursor it answers and loops at once;
- a server without IDLE: the workflow sleeps `poll_seconds` (from the settings) between looks;
- login refused or a folder/host that cannot work: no retry loop; the status says why and the
  reader waits for new settings (the `settings_changed` signal) or CONFIG_RETRY;
- server unreachable: a few quick activity retries, then the workflow backs off (up to
  MAX_BACKOFF) and says so in its status;
- `settings_changed` cancels a wait (and an activity in IDLE) and reads with the new settings;
  `stop`, or settings without an enabled imap block, end the run cleanly;
- continue-as-new after `looks_per_run` looks (or when Temporal suggests it), cursor and counts
  carried over.
Only counts, the cursor and short reasons pass through history, never a mail or a password."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.mailbox import (
        ERROR_LOGIN_REFUSED,
        ERROR_MISCONFIGURED,
        MailboxActivities,
    )
    from models.mailbox import (
        MAILBOX_WORKFLOW,
        QUERY_STATUS,
        SIGNAL_SETTINGS_CHANGED,
        SIGNAL_STOP,
        MailboxCounts,
        MailboxCursor,
        MailboxReaderInput,
        MailboxStatus,
        ReaderState,
        ReadMailboxInput,
        ReadMailboxResult,
        SettingsChanged,
        StopReader,
    )

IDLE_SECONDS = 25 * 60.0  # one IDLE, re-issued by the next look (RFC 2177: before 29 minutes)
READ_TIMEOUT = timedelta(seconds=IDLE_SECONDS) + timedelta(minutes=10)
# The activity beats every 5 s, also while idling; the SDK sends one at most every 0.8 of this.
# A dead worker's look is retried after it; a busy worker's late beat is not a failure.
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=3,  # then the workflow backs off, saying "unreachable" in its status
    non_retryable_error_types=[ERROR_LOGIN_REFUSED, ERROR_MISCONFIGURED],
)
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=15)
CONFIG_RETRY = timedelta(hours=1)  # a refused login is tried again this often without new settings
BATCH = 50
RECENT_IGNORED = 5


def _reason(exc: BaseException) -> tuple[str | None, str]:
    cause: BaseException | None = exc
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message[:300]
    return None, str(cause or exc)[:300]


def backoff(failures: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to 15 min, after `failures` failed looks in a row."""
    seconds = FIRST_BACKOFF.total_seconds() * 2 ** max(0, failures - 1)
    return min(MAX_BACKOFF, timedelta(seconds=seconds))


@workflow.defn(name=MAILBOX_WORKFLOW)
class MailboxReaderWorkflow:
    def __init__(self) -> None:
        self._tenant_id = ""
        self._state = ReaderState.STARTING
        self._connected = False
        self._idle_supported: bool | None = None
        self._cursor: MailboxCursor | None = None
        self._counts = MailboxCounts()
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._last_checked_at: datetime | None = None
        self._recent_ignored: tuple[str, ...] = ()
        self._run = 1
        self._resyncs = 0
        self._changed = False
        self._stop: str | None = None

    # -- signals and query ------------------------------------------------------------------

    @workflow.signal(name=SIGNAL_SETTINGS_CHANGED)
    def settings_changed(self, _: SettingsChanged) -> None:
        # The latest settings win: a mailbox removed and added again before this run saw the
        # stop keeps reading (signals arrive in the order they were sent).
        self._changed = True
        self._stop = None

    @workflow.signal(name=SIGNAL_STOP)
    def stop(self, request: StopReader) -> None:
        self._stop = request.reason

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> MailboxStatus:
        return MailboxStatus(
            tenant_id=self._tenant_id,
            state=self._state,
            connected=self._connected,
            idle_supported=self._idle_supported,
            cursor=self._cursor,
            counts=self._counts,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            last_checked_at=self._last_checked_at,
            recent_ignored=self._recent_ignored,
            run=self._run,
            resyncs=self._resyncs,
        )

    # -- the loop -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: MailboxReaderInput) -> MailboxStatus:
        self._tenant_id = input.tenant_id
        self._cursor = input.cursor
        self._counts = input.counts
        self._run = input.run
        since = input.since or workflow.now()
        failures = 0
        if input.login_refused is not None:
            # Shown until the next look; a run ends every `looks_per_run` hour-long waits at the
            # earliest, so a fresh login attempt per run costs nothing.
            self._failed(ReaderState.LOGIN_REFUSED, input.login_refused)
        for _ in range(input.looks_per_run):
            if self._stop is not None:
                return self._stopped(self._stop)
            self._changed = False
            self._show()
            try:
                result = await self._look(since)
            except _Interrupted:
                continue  # new settings (look again now) or a stop (the loop's first check)
            except ActivityError as exc:
                kind, message = _reason(exc)
                if kind in (ERROR_LOGIN_REFUSED, ERROR_MISCONFIGURED):
                    state = (
                        ReaderState.LOGIN_REFUSED
                        if kind == ERROR_LOGIN_REFUSED
                        else ReaderState.MISCONFIGURED
                    )
                    self._failed(state, message)
                    await self._wait(CONFIG_RETRY)
                else:
                    failures += 1
                    self._failed(ReaderState.UNREACHABLE, message)
                    await self._wait(backoff(failures))
                continue
            failures = 0
            if not result.configured:
                return self._stopped("imap settings removed or disabled")
            self._took(result)
            if result.more or result.resynced or result.counts.read:
                continue  # read on at once: the batch was full, or a push woke the read
            if not result.idle_supported:
                self._state = ReaderState.POLLING
                self._show()
                await self._wait(timedelta(seconds=result.poll_seconds))
            if workflow.info().is_continue_as_new_suggested():
                break
        if self._stop is not None:
            return self._stopped(self._stop)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            MailboxReaderInput(
                tenant_id=self._tenant_id,
                cursor=self._cursor,
                since=since,
                counts=self._counts,
                run=self._run + 1,
                looks_per_run=input.looks_per_run,
                login_refused=self._last_error
                if self._state == ReaderState.LOGIN_REFUSED
                else None,
            )
        )

    async def _look(self, since: datetime) -> ReadMailboxResult:
        """One activity call, cancelled by new settings or a stop (it may sit in IDLE)."""
        handle = workflow.start_activity_method(
            MailboxActivities.read_mailbox,
            ReadMailboxInput(
                tenant_id=self._tenant_id,
                cursor=self._cursor,
                since=since,
                wait_seconds=IDLE_SECONDS if self._idle_supported is not False else 0,
                batch=BATCH,
            ),
            start_to_close_timeout=READ_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=READ_RETRY,
            summary="read the mailbox (IDLE while nothing is new)",
        )
        await workflow.wait_condition(
            lambda: handle.done() or self._changed or self._stop is not None
        )
        if not handle.done():
            handle.cancel()
            try:
                await handle
            except (ActivityError, CancelledError):
                pass
            raise _Interrupted
        return handle.result()

    async def _wait(self, timeout: timedelta) -> None:  # noqa: ASYNC109 (a workflow timer)
        """Sleep, woken early by new settings or a stop."""
        try:
            await workflow.wait_condition(
                lambda: self._changed or self._stop is not None, timeout=timeout
            )
        except TimeoutError:
            pass

    # -- state --------------------------------------------------------------------------------

    def _took(self, result: ReadMailboxResult) -> None:
        self._connected = True
        self._state = ReaderState.READING
        self._idle_supported = result.idle_supported
        self._cursor = result.cursor
        self._counts = self._counts + result.counts
        self._last_checked_at = workflow.now()
        if result.resynced:
            self._resyncs += 1
        if result.ignored:
            self._recent_ignored = (*self._recent_ignored, *result.ignored)[-RECENT_IGNORED:]

    def _failed(self, state: ReaderState, message: str) -> None:
        self._connected = False
        self._state = state
        self._last_error = message
        self._last_error_at = workflow.now()
        self._show()

    def _stopped(self, reason: str) -> MailboxStatus:
        self._state = ReaderState.STOPPED
        self._connected = False
        self._show()
        workflow.set_current_details(f"**Stopped**: {reason}\n{workflow.get_current_details()}")
        return self.status()

    def _show(self) -> None:
        """The Temporal UI's view: state, cursor and counts (no addresses, no mail)."""
        c = self._counts
        lines = [f"**{self._state.value}**" + (" (connected)" if self._connected else "")]
        if self._idle_supported is not None:
            lines.append(f"- waits with {'IDLE' if self._idle_supported else 'polling'}")
        if self._cursor is not None:
            lines.append(
                f"- cursor: UIDVALIDITY {self._cursor.uidvalidity}, last UID "
                f"{self._cursor.last_uid}"
            )
        lines.append(
            f"- mails read {c.read}: {c.routed} to conversations, {c.ignored} ignored, "
            f"{c.duplicates} duplicates"
        )
        if self._last_error:
            lines.append(f"- last error: {self._last_error[:200]}")
        lines.append(f"- run {self._run}, resyncs {self._resyncs}")
        workflow.set_current_details("\n".join(lines))


class _Interrupted(Exception):
    """A look cancelled by new settings or a stop."""
