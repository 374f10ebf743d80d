"""Pure webhook parsers, one module per provider: raw body in, `ParsedWebhook` out.

They never touch the network, the database or Temporal, so they are tested on the providers'
real payloads alone. A body that is not the provider's payload raises `WebhookPayloadError`."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from models.webhooks import WebhookPayloadError

M = TypeVar("M", bound=BaseModel)


class Loose(BaseModel):
    """Provider shapes: unknown fields ignored (providers add fields all the time)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookPayloadError(f"the body is not valid JSON: {exc}") from None


def validate(model: type[M], data: Any, what: str) -> M:
    """Validate `data` as `model`; a failure is a 422 that lists each wrong field by path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise WebhookPayloadError(f"malformed {what}: " + "; ".join(problems), problems) from None
