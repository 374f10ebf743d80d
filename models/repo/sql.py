"""`INSERT … ON CONFLICT` for the session's database, SQLite or PostgreSQL.

The record step and the outbox write a row with one statement where they used to read first and
then insert: every statement costs worker CPU (SQLAlchemy and the driver), and a turn's own
statements are most of a worker's work (issue 8). Both databases spell the upsert the same way
(`ON CONFLICT (…) DO NOTHING | DO UPDATE SET … excluded.…`, `RETURNING`: SQLite ≥ 3.35), but
SQLAlchemy builds it from each dialect's own `insert`."""

from __future__ import annotations

from sqlalchemy import Table, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

UpsertInsert = sqlite.Insert | postgresql.Insert


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a SQLModel table class (whose `__table__` is not typed)."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


def insert(connection: AsyncConnection, table: Table) -> UpsertInsert:
    """An `INSERT` into `table` that can take an `ON CONFLICT` clause on the connection's
    database."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no INSERT … ON CONFLICT for the {dialect!r} dialect")
