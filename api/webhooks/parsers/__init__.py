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


# Deeper than any provider's payload (WAHA, Meta and Chatwoot nest fewer than 10 levels), far
# below the ~1000 where `json.loads` raises RecursionError (a 500 before this limit existed).
MAX_JSON_DEPTH = 64

_OPENERS = frozenset(b"[{")
_CLOSERS = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when `raw` opens more than `limit` arrays/objects inside each other.

    A loop over the bytes, not a recursive parser, so the check itself cannot overflow the
    stack; brackets inside strings (escaped quotes included) do not count. Malformed input
    is not judged here: `json.loads` rejects it afterwards with a position."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # the common case, decided in C without looking at each byte
    depth = 0
    in_string = False
    escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif byte in _CLOSERS:
            depth -= 1
    return False


def checked_json_text(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> str:
    """`body` decoded, once it is known to be UTF-8 and nested at most `max_depth` deep.

    The API's JSON bodies get this same check before FastAPI parses them (api/errors.py)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookPayloadError(
            f"the body is not valid JSON: it is not UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    if json_depth_exceeds(body, max_depth):
        raise WebhookPayloadError(f"the JSON is nested more than {max_depth} levels deep; refused")
    return text


def load_json(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The one JSON loader of webhook bodies: UTF-8, nested at most `max_depth` deep.

    Every refusal is a `WebhookPayloadError` (a 422 that names the problem), never a
    RecursionError or UnicodeDecodeError (which were 500s)."""
    if not body.strip():
        raise WebhookPayloadError("the body is not valid JSON: it is empty")
    text = checked_json_text(body, max_depth=max_depth)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WebhookPayloadError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # unreachable below the depth limit; kept so it can never be a 500
        raise WebhookPayloadError("the JSON is nested too deeply; refused") from None


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
