"""CampaignWorkflow: one per campaign, id `campaign:{tenant}:{campaign}`.

Walks the recipients frozen at creation (positions 1..total) and, at the campaign's pace and
inside its send window (`workflows.campaign_pacing`), asks one activity per recipient to start
that lead's outreach conversation. The activity decides at send time whether the lead is to be
skipped (do-not-contact, an earlier opt-out, a hard bounce, a conversation already running) and
records the outcome on the recipient; it is idempotent, so a retry or a replay after a worker
restart never sends twice.

Pause, resume, cancel and approve are Updates: a validator refuses what cannot apply (with the
reason), and the accepted update answers once the workflow has written the resulting status to
the database (the workflow is the only writer of the status after creation). The workflow
continues as new every `recipients_per_run` recipients. Its current details (the Temporal UI)
show counts, the pace and what it waits for: positions and reasons only, no contact detail."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.campaign import CampaignActivities
    from models.campaigns import (
        CAMPAIGN_CONTROL_REFUSED,
        CONTROL_IDS_KEPT,
        QUERY_PROGRESS,
        UPDATE_APPROVE,
        UPDATE_CANCEL,
        UPDATE_PAUSE,
        UPDATE_RESUME,
        WORKFLOW_NAME,
        CampaignAction,
        CampaignControl,
        CampaignControlResult,
        CampaignInput,
        CampaignProgress,
        CampaignStatus,
        CampaignStatusUpdate,
        RecipientStatus,
        SendStepInput,
        control_refusal,
    )
    from workflows.campaign_pacing import next_send_at, send_interval

SEND_TIMEOUT = timedelta(minutes=1)
STATUS_TIMEOUT = timedelta(seconds=30)
# A send step retries until the database and Temporal answer again (a pending activity with its
# last failure shows in the UI); its business outcomes (skips) are results, not failures.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=["CampaignNotFound"],
)
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
RECENT_SHOWN = 6


@workflow.defn(name=WORKFLOW_NAME)
class CampaignWorkflow:
    @workflow.init
    def __init__(self, campaign: CampaignInput) -> None:
        self._c = campaign
        self._awaiting = campaign.awaiting_approval
        self._paused = campaign.paused
        self._cancelled = False
        self._finished: CampaignStatus | None = None
        self._next = campaign.next_position
        self._sent = campaign.sent
        self._skipped = campaign.skipped
        self._last_sent_at = campaign.last_sent_at
        self._control_ids = list(campaign.control_ids)
        # The creator (or the previous run) wrote this status; `_persisted` follows each write.
        self._reported = self._status()
        self._persisted = self._reported
        self._next_send_at = None if self._awaiting else workflow.now()
        self._sending: int | None = None
        self._step: str | None = None
        self._recent: list[str] = []

    # -- updates ---------------------------------------------------------------------------

    @workflow.update(name=UPDATE_PAUSE)
    async def pause(self, _: CampaignControl) -> CampaignControlResult:
        """No new message starts; one being sent finishes."""
        if self._first_time():
            self._paused = True
        return await self._settled()

    @pause.validator
    def _validate_pause(self, _: CampaignControl) -> None:
        self._refuse_unless_allowed(CampaignAction.PAUSE)

    @workflow.update(name=UPDATE_RESUME)
    async def resume(self, _: CampaignControl) -> CampaignControlResult:
        if self._first_time():
            self._paused = False
        return await self._settled()

    @resume.validator
    def _validate_resume(self, _: CampaignControl) -> None:
        self._refuse_unless_allowed(CampaignAction.RESUME)

    @workflow.update(name=UPDATE_CANCEL)
    async def cancel(self, _: CampaignControl) -> CampaignControlResult:
        """Nothing more is sent; what was sent stays (its conversations go on)."""
        if self._first_time():
            self._cancelled = True
        return await self._settled()

    @cancel.validator
    def _validate_cancel(self, _: CampaignControl) -> None:
        self._refuse_unless_allowed(CampaignAction.CANCEL)

    @workflow.update(name=UPDATE_APPROVE)
    async def approve(self, _: CampaignControl) -> CampaignControlResult:
        """A held campaign starts sending."""
        if self._first_time():
            self._awaiting = False
        return await self._settled()

    @approve.validator
    def _validate_approve(self, _: CampaignControl) -> None:
        self._refuse_unless_allowed(CampaignAction.APPROVE)

    def _retried(self) -> bool:
        """This update's id was applied by an earlier run (a retry after continue-as-new)."""
        info = workflow.current_update_info()
        return info is not None and info.id in self._control_ids

    def _first_time(self) -> bool:
        if self._retried():
            return False
        info = workflow.current_update_info()
        if info is not None:
            self._control_ids.append(info.id)
            del self._control_ids[:-CONTROL_IDS_KEPT]
        self._show()
        return True

    def _refuse_unless_allowed(self, action: CampaignAction) -> None:
        if self._retried():
            return
        reason = control_refusal(action, self._status())
        if reason is not None:
            raise ApplicationError(reason, type=CAMPAIGN_CONTROL_REFUSED, non_retryable=True)

    async def _settled(self) -> CampaignControlResult:
        """Answer once the database holds the status the campaign is heading for (a later
        control landing meanwhile makes that later status the answer)."""
        await workflow.wait_condition(lambda: self._persisted == self._status())
        return CampaignControlResult(status=self._persisted)

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> CampaignProgress:
        status = self._status()
        return CampaignProgress(
            status=status,
            total=self._c.total,
            next_position=self._next,
            sent=self._sent,
            skipped=self._skipped,
            next_send_at=self._next_send_at if status == CampaignStatus.RUNNING else None,
            run=self._c.run,
        )

    def _status(self) -> CampaignStatus:
        if self._finished is not None:
            return self._finished
        if self._cancelled:
            return CampaignStatus.CANCELLED
        if self._awaiting:
            return CampaignStatus.AWAITING_APPROVAL
        return CampaignStatus.PAUSED if self._paused else CampaignStatus.RUNNING

    # -- the campaign ----------------------------------------------------------------------

    @workflow.run
    async def run(self, campaign: CampaignInput) -> CampaignProgress:
        run_end = min(campaign.total, campaign.next_position + campaign.recipients_per_run - 1)

        def held() -> bool:
            return self._awaiting or self._paused

        def changed() -> bool:
            return self._cancelled or self._status() != self._reported

        while True:
            self._show()
            if self._status() != self._reported:
                await self._report(self._status())
                continue
            if self._cancelled or self._next > run_end:
                break
            if workflow.info().is_continue_as_new_suggested() and self._next > 1:
                break
            if held():
                self._next_send_at = None
                await workflow.wait_condition(lambda: changed() or not held())
                continue
            now = workflow.now()
            due = next_send_at(
                now, self._last_sent_at, campaign.rate_per_hour, campaign.quiet_hours
            )
            self._next_send_at = due
            if due > now:
                self._show()
                try:
                    await workflow.wait_condition(lambda: changed() or held(), timeout=due - now)
                except TimeoutError:
                    pass
                continue
            await self._send(self._next)
            self._next += 1

        if self._cancelled:
            return await self._finish(CampaignStatus.CANCELLED)
        if self._next <= campaign.total:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                campaign.model_copy(
                    update={
                        "next_position": self._next,
                        "awaiting_approval": self._awaiting,
                        "paused": self._paused,
                        "sent": self._sent,
                        "skipped": self._skipped,
                        "last_sent_at": self._last_sent_at,
                        "run": campaign.run + 1,
                        "control_ids": tuple(self._control_ids),
                    }
                )
            )
        return await self._finish(CampaignStatus.COMPLETED)

    async def _send(self, position: int) -> None:
        self._sending = position
        self._show()
        result = await workflow.execute_activity_method(
            CampaignActivities.send_campaign_step,
            SendStepInput(
                tenant_id=self._c.tenant_id, campaign_id=self._c.campaign_id, position=position
            ),
            start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY,
            summary=f"recipient {position} of {self._c.total}",
        )
        self._sending = None
        if result.status == RecipientStatus.SENT:
            self._sent += 1
            self._last_sent_at = workflow.now()
            outcome = "sent"
        else:
            self._skipped += 1
            outcome = f"skipped: {result.reason.value if result.reason else 'unknown'}"
        self._recent = [f"{position} ({outcome})", *self._recent][:RECENT_SHOWN]

    async def _report(self, status: CampaignStatus) -> None:
        """The one writer of the campaign's status after creation."""
        self._reported = status
        self._step = f"writing the campaign's status ({status.value}) to the database"
        self._show()
        await workflow.execute_activity_method(
            CampaignActivities.set_campaign_status,
            CampaignStatusUpdate(
                tenant_id=self._c.tenant_id, campaign_id=self._c.campaign_id, status=status
            ),
            start_to_close_timeout=STATUS_TIMEOUT,
            retry_policy=DATABASE_RETRY,
            summary=f"campaign {self._c.campaign_id} status: {status.value}",
        )
        self._step = None
        self._persisted = status
        self._show()

    async def _finish(self, status: CampaignStatus) -> CampaignProgress:
        self._finished = status
        self._next_send_at = None
        if self._reported != status:  # a cancel was written as it came in
            await self._report(status)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    # -- what the Temporal UI shows --------------------------------------------------------

    def _show(self) -> None:
        """The run's current details (markdown): counts, pace, what it waits for. Positions
        and skip reasons only: no address, no name. Not a command: replays are unchanged."""
        status = self._status()
        total = self._c.total
        done = self._sent + self._skipped
        headline = {
            CampaignStatus.AWAITING_APPROVAL: "Awaiting approval",
            CampaignStatus.RUNNING: "Sending",
            CampaignStatus.PAUSED: "Paused",
            CampaignStatus.CANCELLED: "Cancelled" if self._finished else "Cancelling",
            CampaignStatus.COMPLETED: "Completed",
        }[status]
        interval = send_interval(self._c.rate_per_hour).total_seconds()
        lines = [
            f"**{headline}: {done}/{total} recipients** "
            f"(campaign {self._c.campaign_id}, run {self._c.run})",
            f"- sent {self._sent}, skipped {self._skipped}, queued {max(total - done, 0)}",
            f"- pace: {self._c.rate_per_hour:g}/hour (one every {interval:.0f} s)"
            + (
                f"; quiet {self._c.quiet_hours.start:%H:%M}-{self._c.quiet_hours.end:%H:%M} "
                f"{self._c.quiet_hours.timezone}"
                if self._c.quiet_hours is not None
                and self._c.quiet_hours.start != self._c.quiet_hours.end
                else ""
            ),
            f"- waiting on: {self._waiting_on(status)}",
        ]
        if self._recent:
            lines.append(f"- latest: {', '.join(self._recent)}")
        workflow.set_current_details("\n".join(lines))

    def _waiting_on(self, status: CampaignStatus) -> str:
        if self._step is not None:
            return self._step
        if self._sending is not None:
            return f"the send to recipient {self._sending}"
        if status == CampaignStatus.AWAITING_APPROVAL:
            return (
                "an approval (POST /api/v1/campaigns/{id}/approve or `leadflow campaign approve`)"
            )
        if status == CampaignStatus.PAUSED:
            return "a resume"
        if self._finished is not None:
            return "nothing: the campaign is over"
        if self._next_send_at is not None and self._next_send_at > workflow.now():
            return f"the next send slot at {self._next_send_at:%Y-%m-%d %H:%M:%S} UTC"
        return "the next recipient"
