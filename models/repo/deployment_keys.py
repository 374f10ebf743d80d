"""The deployment's keys in the database (models/key_tables.py) and what a process loads at
start to compute conversation ids (models/workflow_ids.py)."""

from __future__ import annotations

import logging
import secrets

from sqlalchemy import Connection, Insert, String, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from models import workflow_ids
from models.common import Stage
from models.db import Database
from models.identity import ContactIdError, normalise_contact
from models.key_tables import DeploymentKey
from models.repo.sql import table_of
from models.tables import Conversation, utcnow

log = logging.getLogger("leadflow.workflow_ids")

_KEYS = table_of(DeploymentKey)
_CONVERSATIONS = table_of(Conversation)


def _insert_new(connection: Connection) -> Insert:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(_KEYS).on_conflict_do_nothing(index_elements=[_KEYS.c.name])
    if dialect == "postgresql":
        return postgresql.insert(_KEYS).on_conflict_do_nothing(index_elements=[_KEYS.c.name])
    raise NotImplementedError(f"no INSERT … ON CONFLICT for the {dialect!r} dialect")


def ensure_key(connection: Connection, name: str = workflow_ids.KEY_NAME) -> bytes:
    """The key `name`, created first when the database has none; the caller commits.

    Race-safe without a lock: every process offers a value with `INSERT … ON CONFLICT DO
    NOTHING` and all then read the one row that won. The value offered is the key this process
    already holds, else random: a process serves one deployment, and a database created in it
    later (tests create many, from migrations or `create_all`) gets the same key, so the ids
    the process computed stay valid."""
    offered = workflow_ids.held_key() or secrets.token_bytes(workflow_ids.KEY_BYTES)
    connection.execute(
        _insert_new(connection).values(
            name=name, value=workflow_ids.encode_key(offered), created_at=utcnow()
        )
    )
    stored = connection.execute(select(_KEYS.c.value).where(_KEYS.c.name == name)).scalar_one()
    return workflow_ids.decode_key(stored)


def load_key_sync(connection: Connection) -> None:
    """`ensure_key` and hold it in this process (models.db.migrate calls it)."""
    workflow_ids.set_key(ensure_key(connection))


# The legacy id (`conv:{tenant}:{channel}:{contact}`) in SQL: a row whose id is it was started
# before hashed ids.
_LEGACY_ID = (
    literal(f"{workflow_ids.PREFIX}:", String)
    + _CONVERSATIONS.c.tenant_id
    + literal(":", String)
    + _CONVERSATIONS.c.channel
    + literal(":", String)
    + _CONVERSATIONS.c.contact
)


def open_legacy_conversations(connection: Connection) -> dict[tuple[str, str, str], str]:
    """(tenant, channel, normalised contact) -> id of every conversation not closed whose id is
    in the legacy form."""
    c = _CONVERSATIONS.c
    rows = connection.execute(
        select(c.id, c.tenant_id, c.channel, c.contact).where(
            c.stage != Stage.CLOSED.value, c.id == _LEGACY_ID
        )
    )
    routes: dict[tuple[str, str, str], str] = {}
    for conversation_id, tenant_id, channel, contact in rows:
        try:
            routes[(tenant_id, channel, normalise_contact(channel, contact))] = conversation_id
        except (ContactIdError, ValueError):
            continue  # not an address today (or an unknown channel): nothing can route to it
    return routes


def _load(connection: Connection, legacy: bool) -> None:
    load_key_sync(connection)
    if legacy:
        workflow_ids.set_legacy_routes(open_legacy_conversations(connection))


async def load(db: Database, *, legacy: bool = True) -> None:
    """What a process needs at start to compute conversation ids: the id key (created when the
    database has none) and, with `legacy`, the routes of open legacy conversations. One
    transaction, once per process start."""
    async with db.engine.begin() as connection:
        await connection.run_sync(_load, legacy)


async def ensure_loaded(db: Database) -> None:
    """`load` unless this process holds the key already (one attribute check): the webhook
    inbox asks before it computes ids, so an API that started while its database was down
    loads the key with the first message after (or answers 503 while it is still down)."""
    if workflow_ids.held_key() is None:
        await load(db)


async def load_at_start(db: Database) -> None:
    """`load` at an API's start; a database that does not answer yet is logged, not fatal: the
    API starts (/ready reports the database) and `ensure_loaded` loads the key later."""
    try:
        await load(db)
    except SQLAlchemyError as exc:
        log.warning("workflow id key not loaded at start (%s): loaded with the next message", exc)
