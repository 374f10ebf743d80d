"""Workflow ids without contact details: conversations here, and lead workflows (CRM sync,
erasure) at the end of the module.

A conversation's workflow id names its tenant and channel and a keyed hash of its contact:
`conv:{tenant}:{channel}:{digest}`, the digest being HMAC-SHA256 under the deployment's id key
of `tenant, channel, normalised contact`: its first DIGEST_CHARS hex digits (96 bits) written
with the letters a-p for 0-f, so an id holds no digit at all (no part of a phone number, and a
digit after the channel marks a legacy id at a glance). Temporal keeps workflow ids in clear,
in every history, the visibility store and the UI (the payload codec cannot cover them), so
no phone number or e-mail address may be in them; a keyed hash, unlike a plain one, cannot be
reversed by hashing every phone number of a country. The tenant stays readable: the API checks
ownership by the `conv:{tenant}:` prefix and operators filter by it.

The key (`KEY_BYTES` random bytes) is made once per deployment and kept in the database
(models/key_tables.py, models/repo/deployment_keys.py): every process that computes ids loads
it at start (`deployment_keys.load`; `models.db.migrate` loads it too), so the API, the CLI
and the tests agree without a file to share. It is not the secret key of stored settings nor
a payload key: those rotate, and a rotation must not move a conversation to a new id.
Computing an id before the key is loaded raises `WorkflowIdKeyMissing`: falling back to the
contact would put it back into the id.

Conversations started before (ids `conv:{tenant}:{channel}:{contact}`, "legacy") keep theirs
while they run: the API loads the open ones at start (`set_legacy_routes`) and routes their
contact's messages to them; a new conversation gets a hashed id. The map is usually empty and
one dict lookup per message. A workflow never computes its own id (it reads
`workflow.info().workflow_id`), so both forms run the same code and old histories replay."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping

from models.common import Channel
from models.identity import normalise_contact

KEY_NAME = "workflow_ids"
"""Name of the key in `deployment_keys`."""
KEY_BYTES = 32
DIGEST_CHARS = 24
PREFIX = "conv"
RECENT_KEPT = 4096
"""Ids computed by this process remembered with their contact (for `contact_of`)."""

_DIGEST = re.compile(rf"^[a-p]{{{DIGEST_CHARS}}}$")
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")


class WorkflowIdKeyMissing(RuntimeError):
    """An id was asked for before the process loaded the deployment's id key."""

    def __init__(self) -> None:
        super().__init__(
            "the workflow id key is not loaded: a process that computes conversation ids loads "
            "it from the database at start (models.repo.deployment_keys.load_key); migrating "
            "the database (models.db.migrate) also loads it"
        )


_key: bytes | None = None
# (tenant, channel, normalised contact) -> the id of its running legacy conversation.
_legacy: dict[tuple[str, str, str], str] = {}
# id -> contact of ids this process computed lately: the one way back from a hashed id to its
# contact (WAHA twin learning, api/webhooks/waha_identity.py); bounded, oldest out first.
_recent: OrderedDict[str, str] = OrderedDict()


def set_key(key: bytes) -> None:
    """Hold `key` as this process's id key (loaded from the database)."""
    global _key
    if not isinstance(key, bytes) or len(key) < KEY_BYTES:
        raise ValueError(f"a workflow id key is at least {KEY_BYTES} bytes")
    _key = key
    _recent.clear()


def held_key() -> bytes | None:
    """The key this process holds, None before it loaded one."""
    return _key


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_key(value: str) -> bytes:
    return base64.urlsafe_b64decode(value.encode("ascii"))


def set_legacy_routes(routes: Mapping[tuple[str, str, str], str]) -> None:
    """Route these (tenant, channel, normalised contact)s to their legacy conversation ids
    (replaces what was held: the API's start loads them all)."""
    _legacy.clear()
    _legacy.update(routes)


def legacy_routes() -> dict[tuple[str, str, str], str]:
    return dict(_legacy)


def hashed_conversation_id(tenant_id: str, channel: Channel | str, contact: str, key: bytes) -> str:
    """The id of a new conversation of `contact` (normalised here) under `key`."""
    kind = Channel(channel).value
    return _hashed(tenant_id, kind, normalise_contact(kind, contact), key)


def _hashed(tenant_id: str, kind: str, normal: str, key: bytes) -> str:
    # Separated by U+001F: contacts refuse control characters (models/identity.py), tenant ids
    # and channel names have none, so no two triples give one message.
    message = "\x1f".join((tenant_id, kind, normal)).encode()
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()[:DIGEST_CHARS]
    text = digest.translate(_LETTERS)
    return f"{PREFIX}:{tenant_id}:{kind}:{text}"


def legacy_conversation_id(tenant_id: str, channel: Channel | str, contact: str) -> str:
    """The id conversations had before hashed ids (the contact in clear): only for reading
    what was stored under it, never for a new conversation."""
    return f"{PREFIX}:{tenant_id}:{Channel(channel).value}:{contact}"


def conversation_id(tenant_id: str, channel: Channel | str, contact: str) -> str:
    """The workflow id this contact's messages go to: its running legacy conversation's when
    it has one, else the hashed id. `WorkflowIdKeyMissing` before the key is loaded;
    `models.identity.ContactIdError` for a contact that is no address."""
    kind = Channel(channel).value
    normal = normalise_contact(kind, contact)
    legacy = _legacy.get((tenant_id, kind, normal)) if _legacy else None
    if legacy is not None:
        return legacy
    if _key is None:
        raise WorkflowIdKeyMissing()
    workflow_id = _hashed(tenant_id, kind, normal, _key)
    _recent[workflow_id] = normal
    _recent.move_to_end(workflow_id)
    if len(_recent) > RECENT_KEPT:
        _recent.popitem(last=False)
    return workflow_id


def is_hashed(workflow_id: str, tenant_id: str, channel: Channel | str) -> bool:
    """Whether `workflow_id` is a hashed conversation id of this tenant and channel."""
    prefix = f"{PREFIX}:{tenant_id}:{Channel(channel).value}:"
    return workflow_id.startswith(prefix) and bool(_DIGEST.match(workflow_id[len(prefix) :]))


def contact_of(workflow_id: str, tenant_id: str, channel: Channel | str) -> str | None:
    """The contact of a conversation id of this tenant and channel, when it can be told: a
    legacy id names it; a hashed id only if this process computed it lately. None otherwise."""
    prefix = f"{PREFIX}:{tenant_id}:{Channel(channel).value}:"
    if not workflow_id.startswith(prefix):
        return None
    if is_hashed(workflow_id, tenant_id, channel):
        return _recent.get(workflow_id)
    return workflow_id[len(prefix) :] or None


# ---- lead workflow ids (CRM sync, erasure) ---------------------------------------------------
# A lead id is uuid5 of tenant, channel and contact with no key (models/conversation.py
# `lead_id_for`), so it is as guessable as the contact: a workflow id holding it would let anyone
# who reads workflow ids confirm a phone number offline. These ids hold a keyed hash of the lead
# id instead, with the key and letters of conversation ids: `{kind}:{tenant}:{digest}`.

CRM_SYNC_PREFIX = "crm"
ERASE_PREFIX = "erase"
_LEAD_MARK = "lead"
"""First field of a lead id's hashed message: a conversation's message starts with a tenant
id, so the two kinds of message never coincide."""


def lead_digest(tenant_id: str, lead_id: str, key: bytes | None = None) -> str:
    """The keyed hash of a tenant's lead id: DIGEST_CHARS letters a-p, under `key` (default:
    the key this process holds; `WorkflowIdKeyMissing` before it loaded one)."""
    if key is None:
        key = _key
        if key is None:
            raise WorkflowIdKeyMissing()
    message = "\x1f".join((_LEAD_MARK, tenant_id, lead_id)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:DIGEST_CHARS].translate(_LETTERS)


def lead_workflow_prefix(kind: str, tenant_id: str) -> str:
    """`{kind}:{tenant}:`, what every id of this kind and tenant starts with (both forms)."""
    return f"{kind}:{tenant_id}:"


def lead_workflow_id(kind: str, tenant_id: str, lead_id: str) -> str:
    """The id of a new lead workflow of `kind` (CRM_SYNC_PREFIX, ERASE_PREFIX)."""
    return lead_workflow_prefix(kind, tenant_id) + lead_digest(tenant_id, lead_id)


def legacy_lead_workflow_id(kind: str, tenant_id: str, lead_id: str) -> str:
    """The id these workflows had before (the lead id in clear): only to reach one started
    under it, never for a new workflow."""
    return lead_workflow_prefix(kind, tenant_id) + lead_id


def is_hashed_lead_workflow_id(workflow_id: str, kind: str, tenant_id: str) -> bool:
    prefix = lead_workflow_prefix(kind, tenant_id)
    return workflow_id.startswith(prefix) and bool(_DIGEST.match(workflow_id[len(prefix) :]))
