"""The embedded default channel: when the lead's channel has no settings, the message is only
recorded (outbox row with status "stored") and logged, so an offline install still shows every
reply it would have sent."""

from __future__ import annotations

import logging

from models.messages import OutboundMessage
from models.tenant import TenantSettings

NAME = "outbox"

log = logging.getLogger(__name__)


class OutboxChannel:
    """Always available; `send` has nothing to deliver, the caller marks the row "stored"."""

    name = NAME

    def configured(self, settings: TenantSettings) -> bool:
        return True

    async def send(self, message: OutboundMessage, settings: TenantSettings) -> str | None:
        log.info(
            "outbox: %s message to %s for tenant %s stored, not sent (channel not configured): %s",
            message.channel,
            message.to,
            message.tenant_id,
            message.text[:200],
        )
        return None
