"""Activities of EraseContactWorkflow: stop and delete the contact's workflows, delete its rows.

They take ids only (`ContactRef`) and answer counts: the erasure's own history holds nothing
about the person. Both repeat safely (`models.erasure`)."""

from __future__ import annotations

from temporalio import activity

from models.db import Database
from models.erasure import (
    ContactRef,
    RowsErased,
    WorkflowsPurged,
    contact_scope,
    contact_workflow_ids,
    erase_contact_rows,
    purge_workflows,
)


class ErasureActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn
    async def purge_contact_workflows(self, input: ContactRef) -> WorkflowsPurged:
        """Terminate the contact's conversations and CRM sync and delete their histories. The
        ids come from the database (the conversation row's id is its workflow id), so this
        runs before the rows go; a lead already erased has nothing left to find."""
        async with self._db.session() as session:
            scope = await contact_scope(session, tenant_id=input.tenant_id, lead_id=input.lead_id)
        if scope is None:
            return WorkflowsPurged()
        return await purge_workflows(activity.client(), contact_workflow_ids(scope))

    @activity.defn
    async def erase_contact_rows(self, input: ContactRef) -> RowsErased:
        """Delete the rows. The workflows are purged once more first: a message that arrived
        since the first purge (or the CRM step) may have started the conversation again, and
        its ids are only known while the rows exist."""
        async with self._db.session() as session:
            scope = await contact_scope(session, tenant_id=input.tenant_id, lead_id=input.lead_id)
        if scope is not None:
            await purge_workflows(activity.client(), contact_workflow_ids(scope))
        async with self._db.session() as session:
            return await erase_contact_rows(
                session, tenant_id=input.tenant_id, lead_id=input.lead_id
            )
