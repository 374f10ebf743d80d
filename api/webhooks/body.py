"""What every webhook requires of a request before its body is read: a JSON Content-Type.

Every provider leadflow receives from posts `application/json` (WAHA webhooks.core.ts, Meta
Graph webhooks, Chatwoot's `content_type: json`, HubSpot and Pipedrive webhooks; our own e-mail
bridge shape is JSON too), so anything else that declares itself is refused with 415 before a
signature is checked or a byte is parsed. A request with no Content-Type at all is read as JSON:
the body is still parsed strictly (`load_json`), and no provider omits the header."""

from __future__ import annotations

from email.message import Message

from fastapi import Request

from api.errors import ApiError

JSON_TYPE = "application/json"
UTF8_CHARSETS = frozenset({"utf-8", "utf8"})


def require_json_content_type(request: Request) -> None:
    """415 unless Content-Type is absent or `application/json` (optionally `; charset=utf-8`)."""
    declared = request.headers.get("content-type")
    if declared is None:
        return
    header = Message()
    header["content-type"] = declared
    # email.message parses parameters and case like HTTP does (FastAPI uses it the same way)
    media_type = header.get_content_type()
    charset = header.get_param("charset")
    if media_type != JSON_TYPE:
        raise ApiError(
            415,
            "unsupported media type",
            f"Content-Type is {declared!r}; expected {JSON_TYPE} (charset utf-8)",
        )
    if charset is not None and str(charset).strip().lower() not in UTF8_CHARSETS:
        raise ApiError(
            415,
            "unsupported media type",
            f"Content-Type charset is {charset!r}; JSON webhooks must be utf-8 ({JSON_TYPE})",
        )
