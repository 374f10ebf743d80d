"""EraseContactWorkflow: erase one contact everywhere (id `erase:{tenant}:{keyed hash of the
lead id}`, models/workflow_ids.py; older runs `erase:{tenant}:{lead}`).

Order matters, and each step repeats safely, so a crash anywhere and a retry (or a second
request, which joins the running erasure or runs it again) finishes the job:
1. the contact's workflows are terminated and their histories deleted — nothing running can
   write a row or a CRM record back meanwhile;
2. with `crm`, each connected CRM deletes its record (it needs the lead's row to find it); a CRM
   that refuses or stays down is reported, and the local erasure goes on regardless;
3. the rows go, in one transaction.
Inputs and results are ids and counts only: this workflow's history holds nothing personal.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.crm.activities import CrmActivities
    from activities.erasure import ErasureActivities
    from models.erasure import (
        ERASE_WORKFLOW,
        ContactRef,
        CrmErasure,
        EraseContactInput,
        ErasureReport,
    )
    from models.task_queues import CRM

# Temporal and database steps: quick, retried until they work (an erasure must finish).
STEP_TIMEOUT = timedelta(minutes=2)
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
# CRM deletes: bounded, so a CRM that is down does not hold the local erasure back for long.
CRM_TIMEOUT = timedelta(minutes=2)
CRM_DEADLINE = timedelta(minutes=15)
CRM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["CrmAdapterMissing"],
)


def _reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.type}: {cause.message}"[:500]
    return str(cause or exc)[:500]


@workflow.defn(name=ERASE_WORKFLOW)
class EraseContactWorkflow:
    @workflow.run
    async def run(self, input: EraseContactInput) -> ErasureReport:
        ref = ContactRef(tenant_id=input.tenant_id, lead_id=input.lead_id)
        purged = await workflow.execute_activity_method(
            ErasureActivities.purge_contact_workflows,
            ref,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        crm: tuple[CrmErasure, ...] = ()
        crm_error: str | None = None
        if input.crm:
            try:
                result = await workflow.execute_activity_method(
                    CrmActivities.erase_crm_records,
                    ref,
                    task_queue=CRM,
                    start_to_close_timeout=CRM_TIMEOUT,
                    schedule_to_close_timeout=CRM_DEADLINE,
                    retry_policy=CRM_RETRY,
                )
                crm = result.records
            except ActivityError as exc:
                crm_error = _reason(exc)
        rows = await workflow.execute_activity_method(
            ErasureActivities.erase_contact_rows,
            ref,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return ErasureReport(
            tenant_id=input.tenant_id,
            lead_id=input.lead_id,
            lead_found=rows.lead_found,
            workflows=purged,
            crm_requested=input.crm,
            crm=crm,
            crm_error=crm_error,
            rows=rows.counts,
        )
