"""WAHA's hidden-user ids (`…@lid`) mapped to the phone, so one person is one conversation.

WAHA may deliver a lead's message from `…@lid` instead of (or besides) `…@c.us`
(shared/wire/waha_lids_and_identity.md). Before the inbox stores such a message, its contact is
replaced by the phone chat id when it can be known:
1. this process's cache; 2. the `waha_lids` table; 3. WAHA's `GET /api/{session}/lids/{lid}`
(when the tenant's WAHA has an API key), with a short timeout. A phone found in WAHA is
written to the table and the cache, so a lid is asked once.

Unmappable (no WAHA configured, `pn: null`, WAHA down or slow) keeps the @lid as the contact:
the webhook never fails because of the lids API. The copies of one message still meet in the
inbox's key dedup (the key ignores the chat id), so a twin is never answered twice; and such a
meeting is itself a mapping (`learn_from_twins`): the @lid copy of a message whose @c.us copy
was received (or the other way round) names the same person, so later messages from that lid
go to the phone's conversation."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote

import httpx
from sqlalchemy.exc import SQLAlchemyError

from api.inbox import Dropped
from models.common import Channel
from models.db import Database
from models.identity import WAHA_LID_SUFFIX, WAHA_PHONE_SUFFIX, normalise_waha_chat_id
from models.messages import InboundMessage
from models.repo import identities as identities_repo
from models.tenant import WahaSettings
from models.webhooks import ParsedWebhook
from models.workflow_ids import contact_of

log = logging.getLogger("leadflow.webhooks.waha")

# The webhook waits for this at most: WAHA answers a lids lookup from its store in milliseconds;
# a WAHA slower than this is treated as down (the message keeps its @lid).
LOOKUP_TIMEOUT_SECONDS = 1.5
# A lid WAHA could not map (pn null, error) is not asked again for this long, so a chatty
# unmapped lead or a WAHA that is down does not cost every message a lookup.
UNKNOWN_TTL_SECONDS = 60.0
CACHE_SIZE = 10_000


class LidDirectory:
    """The @lid -> phone lookups of one API process (the cache is per process)."""

    def __init__(self, *, timeout: float = LOOKUP_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._known: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._unknown: dict[tuple[str, str], float] = {}
        # Held only while a lid is being looked up (weak: no growth).
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.asked = 0  # WAHA lookups made (for tests and logs)

    def clear(self) -> None:
        self._known.clear()
        self._unknown.clear()

    async def phone_for(
        self, db: Database, tenant_id: str, waha: WahaSettings | None, lid: str
    ) -> str | None:
        """The phone chat id (`{digits}@c.us`) of `lid`, or None when it cannot be known now."""
        key = (tenant_id, lid)
        cached = self._cached(key)
        if cached is not False:
            return cached
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:  # a burst from one new lid asks once; the others wait for its answer
            cached = self._cached(key)
            if cached is not False:
                return cached
            return await self._look_up(db, tenant_id, waha, lid)

    def _cached(self, key: tuple[str, str]) -> str | Literal[False] | None:
        """The cached phone, None when recently unknown, False when not cached."""
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        until = self._unknown.get(key)
        if until is not None and until > time.monotonic():
            return None
        return False

    async def _look_up(
        self, db: Database, tenant_id: str, waha: WahaSettings | None, lid: str
    ) -> str | None:
        key = (tenant_id, lid)
        try:
            async with db.session() as session:
                phone = await identities_repo.phone_for_lid(session, tenant_id=tenant_id, lid=lid)
        except SQLAlchemyError as exc:  # the inbox write that follows answers 503 if it is down
            log.warning("waha lids: could not read the mapping of %s: %s", lid, exc)
            return None
        if phone is None:
            phone = await self._ask_waha(waha, lid)
            if phone is None:
                self._unknown[key] = time.monotonic() + UNKNOWN_TTL_SECONDS
                if len(self._unknown) > CACHE_SIZE:
                    self._unknown.clear()
                return None
            try:
                async with db.session() as session:
                    await identities_repo.remember_lid(
                        session, tenant_id=tenant_id, lid=lid, phone=phone
                    )
            except SQLAlchemyError as exc:  # asked again by the next process; no harm
                log.warning("waha lids: could not store %s -> %s: %s", lid, phone, exc)
        self._unknown.pop(key, None)
        self._known[key] = phone
        if len(self._known) > CACHE_SIZE:
            self._known.popitem(last=False)
        return phone

    async def learn(self, db: Database, tenant_id: str, lid: str, phone: str) -> None:
        """Remember `lid` -> `phone` learnt elsewhere than WAHA's lids API (a twin pair)."""
        try:
            async with db.session() as session:
                await identities_repo.remember_lid(
                    session, tenant_id=tenant_id, lid=lid, phone=phone
                )
        except SQLAlchemyError as exc:  # learnt again from the next twin pair
            log.warning("waha lids: could not store %s -> %s: %s", lid, phone, exc)
            return
        key = (tenant_id, lid)
        self._unknown.pop(key, None)
        self._known[key] = phone

    async def _ask_waha(self, waha: WahaSettings | None, lid: str) -> str | None:
        """`GET /api/{session}/lids/{lid}`: the phone, or None (not configured, pn null, down)."""
        if waha is None or waha.api_key is None:
            return None
        self.asked += 1
        url = (
            f"{waha.base_url.rstrip('/')}/api/{quote(waha.session, safe='')}"
            f"/lids/{quote(lid, safe='')}"
        )
        headers = {"X-Api-Key": waha.api_key.get_secret_value(), "Accept": "application/json"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("waha lids: %s unanswered (%s): the message keeps its @lid", lid, exc)
            return None
        if response.status_code != 200:
            log.warning(
                "waha lids: %s answered %d: the message keeps its @lid", lid, response.status_code
            )
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        pn = body.get("pn") if isinstance(body, dict) else None
        if not isinstance(pn, str) or not pn.strip():
            return None  # WAHA does not know the phone (not in the contacts): documented null
        phone = normalise_waha_chat_id(pn)
        return phone if _is_phone(phone) else None


LIDS = LidDirectory()
"""This process's directory (the WAHA webhook's)."""


async def resolve_lids(
    parsed: ParsedWebhook,
    *,
    db: Database,
    waha: WahaSettings | None,
    directory: LidDirectory = LIDS,
) -> ParsedWebhook:
    """`parsed` with each WAHA message from an @lid given its phone contact where known."""
    if not any(_is_lid(m) for m in parsed.messages):
        return parsed
    messages: list[InboundMessage] = []
    for message in parsed.messages:
        if _is_lid(message):
            phone = await directory.phone_for(db, message.tenant_id, waha, message.contact)
            if phone is not None:
                message = message.model_copy(update={"contact": phone})
        messages.append(message)
    return parsed.model_copy(update={"messages": tuple(messages)})


async def learn_from_twins(
    copies: Sequence[Dropped], *, db: Database, directory: LidDirectory = LIDS
) -> None:
    """A WAHA message dropped as the twin of one received under the other id form maps the lid:
    the key (`{fromMe}_{id}`) is WhatsApp's random message id, shared only by the two copies."""
    for copy in copies:
        message = copy.message
        if message.channel is not Channel.WAHA:
            continue
        # The contact the first copy went to: named by a legacy id, else known to this process
        # when it computed the id (the twins of a message arrive together).
        original = contact_of(copy.original.workflow_id, message.tenant_id, Channel.WAHA)
        if original is None:
            continue
        pair = {message.contact, original}
        lids = [c for c in pair if c.endswith(WAHA_LID_SUFFIX)]
        phones = [c for c in pair if _is_phone(c)]
        if len(lids) == 1 and len(phones) == 1:
            await directory.learn(db, message.tenant_id, lids[0], phones[0])


def _is_phone(chat_id: str) -> bool:
    return chat_id.endswith(WAHA_PHONE_SUFFIX) and chat_id.removesuffix(WAHA_PHONE_SUFFIX).isdigit()


def _is_lid(message: InboundMessage) -> bool:
    return message.channel is Channel.WAHA and message.contact.endswith(WAHA_LID_SUFFIX)
