"""The one Temporal client factory: API, workers, CLI and tests all connect through it."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, Plugin
from temporalio.contrib.pydantic import pydantic_data_converter

from models import search_attributes
from models.settings import Settings
from workers.telemetry import tracing_interceptors


class TemporalUnavailable(Exception):
    """Temporal is configured but cannot be reached."""


async def connect(
    settings: Settings,
    *,
    plugins: Sequence[Plugin] = (),
    address: str | None = None,
    role: str = "client",
) -> Client:
    target = address or settings.temporal_address
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            plugins=list(plugins),
            interceptors=tracing_interceptors(settings, role=role),
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {target} (namespace {settings.temporal_namespace!r}): {exc}"
        ) from exc


async def ensure_search_attributes(client: Client) -> None:
    """Register leadflow's search attributes on a namespace that lacks them (idempotent)."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    kinds = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    missing = {
        key.name: kinds[key.indexed_value_type.name]
        for key in search_attributes.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
