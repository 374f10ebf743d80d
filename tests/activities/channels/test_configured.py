"""A channel adapter is configured exactly when `models.tenant.channel_configured` says so (the
one definition): a block without its required fields is not configured, so its messages go to
the outbox instead of failing at the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.channels.base import ChannelAdapter
from activities.channels.chatwoot import ChatwootChannel
from activities.channels.meta import MessengerChannel, MetaWhatsAppChannel
from activities.channels.smtp import SmtpChannel
from activities.channels.waha import WahaChannel
from models.tenant import (
    ChatwootSettings,
    MetaSettings,
    SmtpSettings,
    TenantSettings,
    WahaSettings,
    channel_configured,
)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_adapters_use_the_one_definition_of_configured(http: httpx.AsyncClient) -> None:
    graph = "https://graph.facebook.com"
    cases: list[tuple[ChannelAdapter, str, dict[str, Any], dict[str, Any]]] = [
        (
            WahaChannel(http),
            "waha",
            {"waha": WahaSettings(base_url="http://waha", api_key=SecretStr("k"))},
            {"waha": WahaSettings(base_url="http://waha", api_key=None)},
        ),
        (
            MetaWhatsAppChannel(http),
            "whatsapp",
            {
                "whatsapp": MetaSettings(
                    graph_url=graph, access_token=SecretStr("t"), phone_number_id="1"
                )
            },
            {"whatsapp": MetaSettings(graph_url=graph, access_token=SecretStr("t"))},
        ),
        (
            MessengerChannel(http),
            "messenger",
            {"messenger": MetaSettings(graph_url=graph, page_access_token=SecretStr("p"))},
            {"messenger": MetaSettings(graph_url=graph)},
        ),
        (
            ChatwootChannel(http),
            "chatwoot",
            {"chatwoot": ChatwootSettings(api_token=SecretStr("t"))},
            {"chatwoot": ChatwootSettings()},
        ),
        (
            SmtpChannel(),
            "smtp",
            {"smtp": SmtpSettings()},
            {"smtp": SmtpSettings(host=" ")},
        ),
    ]
    for adapter, block, complete, partial in cases:
        for values, expected in ((complete, True), (partial, False), ({}, False)):
            settings = TenantSettings(**values)
            assert channel_configured(settings, block) is expected, (block, values)
            assert adapter.configured(settings) is expected, (block, values)
