"""People who sign in to the console, and their sign-in sessions (issue 14).

Written by `models.users` only (through `models.repo.users`). A password is stored as its
Argon2id hash, a session as the SHA-256 of its cookie token: a copy of these tables lets nobody
sign in."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (
        # One person per address in a tenant; the same address may be a person in two tenants.
        UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
        # Ids only grow (a deleted person's id is never someone else's), also on SQLite.
        {"sqlite_autoincrement": True},
    )
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=64)
    email: str = Field(max_length=320, description="Lower-cased.")
    name: str = Field(max_length=200)
    role: str = Field(max_length=16, description="admin | operator | viewer")
    password_hash: str = Field(max_length=255, description="pwdlib, Argon2id.")
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None


class UserSession(SQLModel, table=True):
    __tablename__ = "user_sessions"
    __table_args__ = (Index("ix_user_sessions_user_id", "user_id"),)
    id: str = Field(primary_key=True, max_length=64, description="SHA-256 of the cookie token.")
    user_id: int = Field(foreign_key="users.id")
    tenant_id: str = Field(max_length=64)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(description="The absolute end: no activity extends it.")
    last_seen_at: datetime = Field(default_factory=utcnow, description="Written once a minute.")
