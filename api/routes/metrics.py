"""`GET /metrics`: this API process's Prometheus series — leadflow's (models/metrics.py) and the
Temporal SDK's of its client (workers/temporal_metrics.py).

Unauthenticated, like /health: Prometheus scrapes it without a key. It carries no tenant data
(every label is a bounded set), but it does tell how busy the deployment is; where the API is
public, keep /metrics off the public ingress (deploy/README.md) or scrape the workers' ports and
the API's from inside the network only.

Two gauges are read from the database at scrape time, cached so that many scrapers (or many API
processes) cost one cheap query per interval: the inbox backlog and the lead-quality counts."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from api.deps import State
from models.db import Database
from models.metrics import INBOX_BACKLOG, LEAD_QUALITIES, LEAD_QUALITY
from models.repo import inbox as inbox_repo
from models.repo.lead_quality import leads_by_quality

log = logging.getLogger("leadflow.metrics")

router = APIRouter(tags=["health"])

BACKLOG_EVERY_SECONDS = 5.0
QUALITY_EVERY_SECONDS = 30.0

METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


class DatabaseGauges:
    """The backlog (every BACKLOG_EVERY_SECONDS) and lead quality (every
    QUALITY_EVERY_SECONDS) of one database, refreshed when a scrape finds them stale. A read
    that fails keeps the last values and is logged: the scrape still answers."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self._clock = clock
        self._lock = asyncio.Lock()
        self._backlog_at = -math.inf
        self._quality_at = -math.inf

    async def refresh(self) -> None:
        async with self._lock:  # concurrent scrapes: one reads, the others find it fresh
            now = self._clock()
            backlog = now - self._backlog_at >= BACKLOG_EVERY_SECONDS
            quality = now - self._quality_at >= QUALITY_EVERY_SECONDS
            if not (backlog or quality):
                return
            try:
                async with self.db.session() as session:
                    if backlog:
                        waiting, _ = await inbox_repo.pending(session)
                        INBOX_BACKLOG.set(waiting)
                        self._backlog_at = now
                    if quality:
                        set_lead_quality(await leads_by_quality(session))
                        self._quality_at = now
            except Exception as exc:
                log.warning("metrics: could not read the database gauges: %s", exc)


def set_lead_quality(counts: dict[str, int]) -> None:
    """Stored qualities (HOT, ...) -> the gauge's labels (hot, ...); a value leadflow does not
    know counts as unknown; every label is set, 0 when no lead has it."""
    values = dict.fromkeys(LEAD_QUALITIES, 0)
    for stored, count in counts.items():
        label = stored.lower()
        values[label if label in values else "unknown"] += count
    for label, count in values.items():
        LEAD_QUALITY.labels(quality=label).set(count)


def _gauges(request: Request, db: Database) -> DatabaseGauges:
    gauges: DatabaseGauges | None = getattr(request.app.state, "metrics_gauges", None)
    if gauges is None or gauges.db is not db:
        gauges = DatabaseGauges(db)
        request.app.state.metrics_gauges = gauges
    return gauges


@router.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus metrics of this API process (no key needed)."""
    await _gauges(request, state.db).refresh()
    # In a thread: collecting reads the Temporal SDK's exporter over loopback HTTP.
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
