"""CRM sync activities: one class built once per worker with its dependencies injected.

Credentials never travel through Temporal: activities receive connection views and load the
credentials from the database by integration id. Every write is guarded by an idempotency
record (lead + version + CRM) and leaves echo markers so the CRM's webhook about our own
write is recognised and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
import pybreaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.crm.base import (
    CIRCUIT_OPEN,
    NON_RETRYABLE_TYPES,
    RATE_LIMITED,
    AdapterFactory,
    Connection,
    CrmAdapter,
    mapped_values,
)
from models.crm import (
    BUILTIN_INTEGRATION_ID,
    CompensationAction,
    ConnectionCheckInput,
    ConnectionCheckResult,
    CrmCompensationInput,
    CrmCompensationResult,
    CrmConnectionView,
    CrmKind,
    CrmNoteInput,
    CrmNoteResult,
    CrmReadInput,
    CrmReadResult,
    CrmSyncPlan,
    CrmWriteInput,
    CrmWriteResult,
    LoadSyncPlanInput,
    RecordSyncInput,
    RequestCrmSyncInput,
    RequestCrmSyncResult,
    SyncMode,
    request_crm_sync,
)
from models.db import Database
from models.erasure import ContactRef, CrmErasure, CrmErasureResult, crm_created_extras
from models.metrics import CRM_SYNCS
from models.metrics_breakers import BreakerGauge
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.task_queues import CRM

log = logging.getLogger(__name__)

BREAKER_FAIL_MAX = 5
BREAKER_RESET_SECONDS = 30


def _is_business_error(exc: BaseException) -> bool:
    """Validation errors and rate limits say nothing about the CRM being down."""
    return isinstance(exc, ApplicationError) and (
        exc.non_retryable or exc.type in (*NON_RETRYABLE_TYPES, RATE_LIMITED)
    )


def builtin_view(tenant_id: str) -> CrmConnectionView:
    return CrmConnectionView(
        integration_id=BUILTIN_INTEGRATION_ID,
        tenant_id=tenant_id,
        kind=CrmKind.BUILTIN,
        name="built-in lead table",
        base_url="",
        mode=SyncMode.SAGA,
    )


class _Pacer:
    """Spaces calls on one connection at least `interval` apart (per worker process)."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._lock = asyncio.Lock()
        self._next = 0.0

    async def wait(self) -> None:
        if self._interval <= 0:
            return
        async with self._lock:
            now = time.monotonic()
            if now < self._next:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval


class CrmActivities:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        http: httpx.AsyncClient,
        adapters: Mapping[str, AdapterFactory],
    ) -> None:
        self._settings = settings
        self._db = db
        self._adapters: dict[str, CrmAdapter] = {
            str(kind): factory(http) for kind, factory in adapters.items()
        }
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._pacers: dict[str, _Pacer] = {}

    # ---- plumbing ------------------------------------------------------------------------

    @property
    def _secret(self) -> str:
        return self._settings.secret_key.get_secret_value()

    def _adapter(self, kind: CrmKind) -> CrmAdapter:
        adapter = self._adapters.get(kind.value)
        if adapter is None:
            raise ApplicationError(
                f"no CRM adapter for {kind.value!r} is loaded (plugins: {sorted(self._adapters)})",
                type="CrmAdapterMissing",
                non_retryable=True,
            )
        return adapter

    def breaker(self, integration_id: str, kind: str = "crm") -> pybreaker.CircuitBreaker:
        breaker = self._breakers.get(integration_id)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=BREAKER_FAIL_MAX,
                reset_timeout=BREAKER_RESET_SECONDS,
                exclude=[_is_business_error],
                listeners=[BreakerGauge(f"crm:{kind}")],
                name=f"crm:{integration_id}",
            )
            self._breakers[integration_id] = breaker
        return breaker

    async def _connection(self, view: CrmConnectionView) -> Connection:
        if view.kind is CrmKind.BUILTIN:
            return Connection(view=view, credentials={})
        async with self._db.session() as session:
            integration = await crm_repo.get_integration(
                session, tenant_id=view.tenant_id, integration_id=view.integration_id
            )
        if integration is None:
            raise ApplicationError(
                f"integration {view.integration_id} of tenant {view.tenant_id} no longer exists",
                type="CrmIntegrationMissing",
                non_retryable=True,
            )
        credentials = crm_repo.integration_credentials(integration, secret_key=self._secret)
        # the stored row is the truth (base URL or mapping may have been edited since)
        return Connection(view=crm_repo.integration_view(integration), credentials=credentials)

    async def _guarded(self, conn: Connection, call: Any) -> Any:
        """Run one adapter call under the connection's circuit breaker and pacer."""
        adapter = self._adapter(conn.view.kind)
        pacer = self._pacers.setdefault(conn.integration_id, _Pacer(adapter.min_interval_seconds))
        await pacer.wait()
        breaker = self.breaker(conn.integration_id, conn.view.kind.value)
        try:
            with breaker.calling():
                return await call(adapter)
        except pybreaker.CircuitBreakerError as exc:
            raise ApplicationError(
                f"{conn.label()}: circuit open after repeated failures; "
                f"next try in {BREAKER_RESET_SECONDS}s",
                type=CIRCUIT_OPEN,
                next_retry_delay=timedelta(seconds=BREAKER_RESET_SECONDS),
            ) from exc

    async def _remote_id(self, view: CrmConnectionView, lead_id: str) -> str | None:
        async with self._db.session() as session:
            link = await crm_repo.get_link(
                session, integration_id=view.integration_id, lead_id=lead_id
            )
        return link.remote_id if link else None

    # ---- activities ----------------------------------------------------------------------

    @activity.defn
    async def load_crm_sync_plan(self, input: LoadSyncPlanInput) -> CrmSyncPlan:
        """The lead's latest state and the tenant's enabled connections, in saga order."""
        async with self._db.session() as session:
            lead = await lead_repo.lead_snapshot(
                session, tenant_id=input.tenant_id, lead_id=input.lead_id
            )
            integrations = await crm_repo.list_integrations(
                session, tenant_id=input.tenant_id, enabled_only=True
            )
        views = tuple(crm_repo.integration_view(i) for i in integrations)
        if not views:
            views = (builtin_view(input.tenant_id),)
        mode = (
            SyncMode.BEST_EFFORT
            if all(v.mode is SyncMode.BEST_EFFORT for v in views)
            else SyncMode.SAGA
        )
        return CrmSyncPlan(lead=lead, connections=views, mode=mode)

    @activity.defn
    async def read_crm_record(self, input: CrmReadInput) -> CrmReadResult:
        """What the CRM holds now for the mapped properties: the compensation's 'before'."""
        conn = await self._connection(input.connection)
        known = await self._remote_id(input.connection, input.lead.lead_id)
        record = await self._guarded(conn, lambda a: a.read(conn, input.lead, known))
        if record is None:
            return CrmReadResult(exists=False)
        return CrmReadResult(
            exists=True, remote_id=record.remote_id, values=record.values, extra=record.extra
        )

    @activity.defn
    async def write_crm_record(self, input: CrmWriteInput) -> CrmWriteResult:
        """Upsert the lead; answered from the idempotency record when this version was written."""
        async with self._db.session() as session:
            stored = await crm_repo.get_idempotent_result(session, key=input.idempotency_key)
        if stored is not None:
            return CrmWriteResult.model_validate({**stored, "replayed": True})
        conn = await self._connection(input.connection)
        values = mapped_values(input.lead, conn.mapping)
        remote_id = input.remote_id or await self._remote_id(input.connection, input.lead.lead_id)
        upserted = await self._guarded(
            conn, lambda a: a.upsert(conn, input.lead, remote_id, values)
        )
        result = CrmWriteResult(
            remote_id=upserted.remote_id,
            created=upserted.created,
            written=upserted.written,
            extra=upserted.extra,
        )
        async with self._db.session() as session:
            # markers first: the CRM's webhook may arrive before this activity returns
            if conn.view.kind is not CrmKind.BUILTIN:
                await crm_repo.add_write_markers(
                    session,
                    tenant_id=input.lead.tenant_id,
                    integration_id=conn.integration_id,
                    remote_id=result.remote_id,
                    values=values,
                )
            await crm_repo.save_link(
                session,
                tenant_id=input.lead.tenant_id,
                integration_id=conn.integration_id,
                lead_id=input.lead.lead_id,
                remote_id=result.remote_id,
            )
            winner = await crm_repo.save_idempotent_result(
                session,
                key=input.idempotency_key,
                tenant_id=input.lead.tenant_id,
                integration_id=conn.integration_id,
                result=result.model_dump(mode="json"),
            )
        return CrmWriteResult.model_validate(winner)

    @activity.defn
    async def compensate_crm_record(self, input: CrmCompensationInput) -> CrmCompensationResult:
        """Undo one saga step: restore the previous values, or delete what the step created."""
        conn = await self._connection(input.connection)
        remote_id = input.remote_id or await self._remote_id(input.connection, input.lead.lead_id)
        done: bool
        if input.action is CompensationAction.RESTORE:
            if remote_id is None:
                return CrmCompensationResult(
                    action=input.action, remote_id=None, done=False, detail="no record to restore"
                )
            rid = remote_id
            await self._guarded(
                conn,
                lambda a: a.restore(
                    conn, input.lead, rid, input.previous_values, input.previous_extra
                ),
            )
            done = True
            detail = f"restored {len(input.previous_values)} properties"
            async with self._db.session() as session:
                await crm_repo.add_write_markers(
                    session,
                    tenant_id=input.lead.tenant_id,
                    integration_id=conn.integration_id,
                    remote_id=rid,
                    values=input.previous_values,
                )
        else:
            done = await self._guarded(
                conn, lambda a: a.delete(conn, input.lead, remote_id, input.created_extra)
            )
            detail = "deleted the created record" if done else "nothing had been created"
            async with self._db.session() as session:
                await crm_repo.save_link(
                    session,
                    tenant_id=input.lead.tenant_id,
                    integration_id=conn.integration_id,
                    lead_id=input.lead.lead_id,
                    remote_id=None,
                )
        async with self._db.session() as session:
            # a later sync of this version must write again, not answer "already done"
            await crm_repo.delete_idempotent_result(session, key=input.idempotency_key)
        return CrmCompensationResult(
            action=input.action, remote_id=remote_id, done=done, detail=detail
        )

    @activity.defn
    async def add_crm_note(self, input: CrmNoteInput) -> CrmNoteResult:
        """Attach the conversation summary (note / Task / private note) once per key."""
        async with self._db.session() as session:
            stored = await crm_repo.get_idempotent_result(session, key=input.idempotency_key)
        if stored is not None:
            return CrmNoteResult(note_id=stored.get("note_id"), replayed=True)
        conn = await self._connection(input.connection)
        note_id = await self._guarded(
            conn, lambda a: a.add_note(conn, input.lead, input.remote_id, input.text)
        )
        async with self._db.session() as session:
            await crm_repo.save_idempotent_result(
                session,
                key=input.idempotency_key,
                tenant_id=input.lead.tenant_id,
                integration_id=conn.integration_id,
                result={"note_id": note_id},
            )
        return CrmNoteResult(note_id=note_id)

    @activity.defn
    async def record_crm_sync(self, input: RecordSyncInput) -> bool:
        """Store the saga's outcome and each CRM's link, last sync and outcome."""
        async with self._db.session() as session:
            stored = await crm_repo.record_sync_run(
                session, run_key=input.run_key, outcome=input.outcome
            )
        if stored:  # once per sync: a retry that finds it stored counts nothing
            for step in input.outcome.steps:
                CRM_SYNCS.labels(crm=step.kind.value, outcome=step.status.value).inc()
        return stored

    @activity.defn
    async def erase_crm_records(self, input: ContactRef) -> CrmErasureResult:
        """Delete the contact in every CRM the tenant connected (erasure with `crm=true`): the
        linked record, or the one the adapter finds by e-mail or phone, and what syncs created
        beside it. A CRM that refuses for good is reported (with the record's id, to finish by
        hand); one that is down or rate-limited raises, so Temporal retries the activity (every
        delete is idempotent: gone is done).

        Disabled connections included, deliberately (models/integration_service.py): disabling
        stops syncing, but what earlier syncs pushed there is still the person's data."""
        async with self._db.session() as session:
            lead = await lead_repo.lead_snapshot(
                session, tenant_id=input.tenant_id, lead_id=input.lead_id
            )
            integrations = await crm_repo.list_integrations(
                session, tenant_id=input.tenant_id, enabled_only=False
            )
        if lead is None:
            return CrmErasureResult()
        records: list[CrmErasure] = []
        for integration in integrations:
            view = crm_repo.integration_view(integration)
            if view.kind is CrmKind.BUILTIN:
                continue
            remote_id = await self._remote_id(view, input.lead_id)
            async with self._db.session() as session:
                extra = await crm_created_extras(
                    session,
                    tenant_id=input.tenant_id,
                    lead_id=input.lead_id,
                    integration_id=view.integration_id,
                )
            base = {"integration_id": view.integration_id, "kind": view.kind.value}
            try:
                conn = await self._connection(view)
                deleted = await self._guarded(
                    conn, lambda a, c=conn, r=remote_id, e=extra: a.delete(c, lead, r, e)
                )
            except ApplicationError as exc:
                if not exc.non_retryable and exc.type not in NON_RETRYABLE_TYPES:
                    raise
                records.append(
                    CrmErasure(
                        **base,
                        name=view.name,
                        outcome="failed",
                        remote_id=remote_id,
                        detail=str(exc)[:500],
                    )
                )
                continue
            records.append(
                CrmErasure(
                    **base,
                    name=view.name,
                    outcome="deleted" if deleted else "not_found",
                    remote_id=remote_id,
                )
            )
        return CrmErasureResult(records=tuple(records))

    @activity.defn
    async def check_crm_connection(self, input: ConnectionCheckInput) -> ConnectionCheckResult:
        """Try the stored credentials against the CRM; failures are answers, not errors."""
        if input.integration_id == BUILTIN_INTEGRATION_ID:
            view = builtin_view(input.tenant_id)
        else:
            async with self._db.session() as session:
                integration = await crm_repo.get_integration(
                    session, tenant_id=input.tenant_id, integration_id=input.integration_id
                )
            if integration is None:
                return ConnectionCheckResult(ok=False, detail="unknown integration")
            view = crm_repo.integration_view(integration)
        try:
            conn = await self._connection(view)
            detail = await self._adapter(view.kind).test_connection(conn)
        except ApplicationError as exc:
            return ConnectionCheckResult(ok=False, detail=str(exc))
        return ConnectionCheckResult(ok=True, detail=detail)


class CrmSyncRequester:
    """Runs on the conversations queue: the conversation workflow calls it when a lead changed."""

    def __init__(self, *, task_queue: str = CRM, coalesce_seconds: float = 2.0) -> None:
        self._task_queue = task_queue
        self._coalesce_seconds = coalesce_seconds

    @activity.defn
    async def request_crm_sync(self, input: RequestCrmSyncInput) -> RequestCrmSyncResult:
        """Signal-with-start the lead's CrmSyncWorkflow (one per lead, coalescing changes)."""
        workflow_id = await request_crm_sync(
            activity.client(),
            tenant_id=input.tenant_id,
            lead_id=input.lead_id,
            reason=input.reason,
            coalesce_seconds=self._coalesce_seconds,
            task_queue=self._task_queue,
        )
        return RequestCrmSyncResult(workflow_id=workflow_id)
