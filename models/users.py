"""People who sign in to the console: create, list, change, delete; sign in, find the person
behind a session cookie, sign out. One service for the API (`api/routes/auth.py`,
`api/routes/users.py`, `api/deps.py`) and the CLI (`workers/cli_user.py`).

Rules, all here:
- An e-mail address is a person's sign-in name in one tenant: syntax-checked (email-validator;
  reserved domains such as `.local` and `.test` are allowed, since nobody mails it) and stored
  lower-cased, unique per tenant.
- A password has at least PASSWORD_MIN characters; it is stored as its Argon2id hash (pwdlib's
  recommended parameters; a hash made with older parameters is upgraded at the next sign-in).
  Hashing runs in a thread: it takes a quarter of a second of CPU by design.
- Signing in answers the same, in about the same time, for an unknown tenant, an unknown
  address, a wrong password and a disabled person: an unknown address is checked against a
  dummy hash, so the answer's timing does not tell which addresses exist.
- A session is a random token in a cookie; the database holds only its SHA-256 (a copy of the
  table signs nobody in). It ends after SESSION_IDLE without a request, SESSION_MAX after
  sign-in whatever the activity, at sign-out, and when the person is disabled, deleted or their
  password is changed (their other sessions end; the one that changed it stays).
- Roles: admin, operator, viewer (what each may do is `api/deps.py`'s `role_refusal`). A tenant
  never loses its last admin who can sign in: demoting, disabling or deleting them is refused.
- An action is audited when the caller passes `audit_as=` (the CLI); the API's actions are
  recorded by its middleware instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal, cast, get_args

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pwdlib import PasswordHash
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from models import audit
from models.repo import users as repo
from models.tables import Tenant, utcnow
from models.user_tables import User, UserSession

Role = Literal["admin", "operator", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)

PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # Argon2 takes any length; this bounds what a request makes us hash
EMAIL_MAX = 320
NAME_MAX = 200
MAX_USER_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL
MAX_USERS = 1000
TOKEN_MAX = 200

SESSION_IDLE = timedelta(hours=12)
SESSION_MAX = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)  # last_seen_at is written at most this often per session

_HASHER = PasswordHash.recommended()  # Argon2id


class UserNotFound(LookupError):
    """No such person in this tenant (another tenant's person is not found either)."""


class UserRefused(ValueError):
    """The change is not allowed in the tenant's current state (the message says why)."""


class InvalidUserInput(ValueError):
    """An e-mail address, name, role or password that is not acceptable (the message says why)."""


@dataclass(frozen=True)
class UserInfo:
    """What may be shown about a person: never their password hash."""

    id: int
    tenant_id: str
    email: str
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, row: User) -> UserInfo:
        assert row.id is not None
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            email=row.email,
            name=row.name,
            role=cast(Role, row.role),
            disabled=row.disabled,
            created_at=row.created_at,
            last_login_at=row.last_login_at,
        )


@dataclass(frozen=True)
class SignedIn:
    """A new session: the token goes in the cookie and nowhere else."""

    user: UserInfo
    token: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class CurrentSession:
    """The session a request presents, its person and their tenant."""

    user: UserInfo
    tenant: Tenant
    session_id: str
    csrf_token: str
    expires_at: datetime


# --- input rules ---------------------------------------------------------------------------


def normalise_email(address: str) -> str:
    """The address as stored: syntax-checked and lower-cased."""
    text = address.strip()
    if not text:
        raise InvalidUserInput("the e-mail address is empty")
    if len(text) > EMAIL_MAX:
        raise InvalidUserInput(f"the e-mail address is longer than {EMAIL_MAX} characters")
    local, at, domain = text.rpartition("@")
    # email-validator refuses reserved domains (`.local`, `.test`, `localhost`): right for mail,
    # but a sign-in name is never written to, and a private install may well use one. Such a
    # domain is checked with an ordinary last label in its place, and kept as given.
    head, dot, last = domain.rpartition(".")
    reserved = bool(at) and last.lower() in SPECIAL_USE_DOMAIN_NAMES
    probe = f"{local}@{head}{dot}{'example' if dot else 'localdomain'}" if reserved else text
    try:
        checked = validate_email(probe, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as exc:
        raise InvalidUserInput(f"{text!r} is not an e-mail address: {exc}") from None
    stored = f"{checked.local_part}@{domain}" if reserved else checked.normalized
    return stored.lower()


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidUserInput("the name is empty")
    if len(name) > NAME_MAX:
        raise InvalidUserInput(f"the name is longer than {NAME_MAX} characters")
    if not name.isprintable():
        raise InvalidUserInput("the name has control characters")
    return name


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidUserInput(f"the role must be one of {', '.join(ROLES)}, not {role!r}")
    return role  # narrowed by the membership test


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise InvalidUserInput(f"the password is shorter than {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidUserInput(f"the password is longer than {PASSWORD_MAX} characters")
    if not password.strip():
        raise InvalidUserInput("the password is only spaces")
    return password


# --- hashing -------------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Whether the password matches, and a new hash when the stored one used weaker
    parameters than today's."""
    return await asyncio.to_thread(_HASHER.verify_and_update, password, password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a password nobody knows, checked when there is no person to check against."""
    return _HASHER.hash(secrets.token_urlsafe(24))


def session_id_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(at: datetime) -> datetime:
    return at if at.utcoffset() is not None else at.replace(tzinfo=UTC)


# --- people --------------------------------------------------------------------------------


async def _row(session: AsyncSession, *, tenant_id: str, user_id: int) -> User:
    row = None
    if 1 <= user_id <= MAX_USER_ID:
        row = await repo.get_user(session, tenant_id=tenant_id, user_id=user_id)
    if row is None:
        raise UserNotFound(f"no person {user_id}")
    return row


async def create_user(
    session: AsyncSession,
    *,
    tenant_id: str,
    email: str,
    name: str,
    role: str,
    password: str,
    audit_as: audit.Actor | None = None,
) -> UserInfo:
    """Add a person. 409 (UserRefused) when the address is taken in the tenant."""
    email = normalise_email(email)
    name = check_name(name)
    checked_role = check_role(role)
    password = check_password(password)
    if not await repo.tenant_exists(session, tenant_id=tenant_id):
        raise UserNotFound(f"no tenant {tenant_id!r}")
    if await repo.get_user_by_email(session, tenant_id=tenant_id, email=email) is not None:
        raise UserRefused(f"{email} is already a person in this tenant")
    if await repo.count_users(session, tenant_id=tenant_id) >= MAX_USERS:
        raise UserRefused(f"the tenant has {MAX_USERS} people, the most allowed: delete some")
    row = User(
        tenant_id=tenant_id,
        email=email,
        name=name,
        role=checked_role,
        password_hash=await hash_password(password),
    )
    session.add(row)
    try:
        await session.flush()  # its id, for the answer and the audit entry
    except IntegrityError as exc:  # the same address added at the same moment
        await session.rollback()
        raise UserRefused(f"{email} is already a person in this tenant") from exc
    info = UserInfo.of(row)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="user.create",
            resource_id=str(info.id),
            detail={"email": email, "role": checked_role},
            commit=False,
        )
    await session.commit()
    return info


async def list_users(session: AsyncSession, *, tenant_id: str) -> list[UserInfo]:
    """Oldest first."""
    rows = await repo.list_users(session, tenant_id=tenant_id, limit=MAX_USERS)
    return [UserInfo.of(row) for row in rows]


async def get_user(session: AsyncSession, *, tenant_id: str, user_id: int) -> UserInfo:
    return UserInfo.of(await _row(session, tenant_id=tenant_id, user_id=user_id))


async def get_user_by_email(session: AsyncSession, *, tenant_id: str, email: str) -> UserInfo:
    row = await repo.get_user_by_email(session, tenant_id=tenant_id, email=normalise_email(email))
    if row is None:
        raise UserNotFound(f"no person {email.strip().lower()!r}")
    return UserInfo.of(row)


async def _keep_an_admin(session: AsyncSession, row: User, doing: str) -> None:
    """Refuse `doing` to the tenant's last admin who can sign in."""
    if row.role != "admin" or row.disabled:
        return
    admins = await repo.active_admin_ids(session, tenant_id=row.tenant_id)
    if admins == [row.id]:
        raise UserRefused(
            f"{row.email} is the tenant's last admin and cannot be {doing}: make someone "
            "else admin first"
        )


async def update_user(
    session: AsyncSession,
    *,
    tenant_id: str,
    user_id: int,
    name: str | None = None,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
    current_session_id: str | None = None,
    audit_as: audit.Actor | None = None,
) -> UserInfo:
    """Change what is given. A new password or disabling ends the person's sessions (but
    `current_session_id`, the session that changed its own password). Demoting or disabling
    the last admin is refused (UserRefused)."""
    row = await _row(session, tenant_id=tenant_id, user_id=user_id)
    changed: list[str] = []
    if name is not None:
        name = check_name(name)
        if name != row.name:
            row.name = name
            changed.append("name")
    if role is not None:
        new_role = check_role(role)
        if new_role != row.role:
            if new_role != "admin":
                await _keep_an_admin(session, row, f"made {new_role}")
            row.role = new_role
            changed.append("role")
    if disabled is not None and disabled != row.disabled:
        if disabled:
            await _keep_an_admin(session, row, "disabled")
        row.disabled = disabled
        changed.append("disabled")
    if password is not None:
        row.password_hash = await hash_password(check_password(password))
        changed.append("password")
    session.add(row)
    if "password" in changed or row.disabled:
        assert row.id is not None
        keep = current_session_id if not row.disabled else None
        await repo.delete_user_sessions(session, user_id=row.id, keep=keep)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="user.set_password" if changed == ["password"] else "user.update",
            resource_id=str(user_id),
            detail={"email": row.email, "changed": changed, "role": row.role},
            commit=False,
        )
    await session.commit()
    return UserInfo.of(row)


async def delete_user(
    session: AsyncSession,
    *,
    tenant_id: str,
    user_id: int,
    audit_as: audit.Actor | None = None,
) -> UserInfo:
    """Delete a person and end their sessions. The last admin is refused (UserRefused). Their
    audit entries stay (they name the person, not the row)."""
    row = await _row(session, tenant_id=tenant_id, user_id=user_id)
    await _keep_an_admin(session, row, "deleted")
    info = UserInfo.of(row)
    await repo.delete_user(session, row=row)
    if audit_as is not None:
        await audit.record(
            session,
            tenant_id=tenant_id,
            actor=audit_as,
            action="user.delete",
            resource_id=str(user_id),
            detail={"email": info.email, "role": info.role},
            commit=False,
        )
    await session.commit()
    return info


async def tenant_exists(session: AsyncSession, *, tenant_id: str) -> bool:
    return await repo.tenant_exists(session, tenant_id=tenant_id)


# --- sessions ------------------------------------------------------------------------------


async def sign_in(
    session: AsyncSession,
    *,
    tenant_id: str,
    email: str,
    password: str,
    now: datetime | None = None,
) -> SignedIn | None:
    """A new session for the person, or None: unknown tenant or address, wrong password, or
    disabled (the caller cannot tell which, by the answer or by its time)."""
    now = now or utcnow()
    try:
        address = normalise_email(email)
    except InvalidUserInput:
        address = None
    row = None
    if address is not None and len(password) <= PASSWORD_MAX:
        row = await repo.get_user_by_email(session, tenant_id=tenant_id, email=address)
    if row is None:
        await verify_password(password[:PASSWORD_MAX], _dummy_hash())
        return None
    ok, upgraded = await verify_password(password, row.password_hash)
    if not ok or row.disabled:
        return None
    assert row.id is not None
    if upgraded is not None:
        row.password_hash = upgraded
    row.last_login_at = now
    session.add(row)
    # Stale sessions go here, now and then, rather than on a schedule of their own.
    await repo.delete_stale_sessions(session, now=now, idle_since=now - SESSION_IDLE)
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    expires_at = now + SESSION_MAX
    await repo.insert_session(
        session,
        row=UserSession(
            id=session_id_of(token),
            user_id=row.id,
            tenant_id=row.tenant_id,
            csrf_token=csrf_token,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
        ),
    )
    await session.commit()
    return SignedIn(
        user=UserInfo.of(row), token=token, csrf_token=csrf_token, expires_at=expires_at
    )


async def session_of(
    session: AsyncSession, *, token: str, now: datetime | None = None
) -> CurrentSession | None:
    """The live session with this cookie token and its person; None when there is none, it
    has ended (idle, past its end) or the person is disabled. An ended session is deleted."""
    if not token or len(token) > TOKEN_MAX:
        return None
    now = now or utcnow()
    session_id = session_id_of(token)
    found = await repo.session_with_user(session, session_id=session_id)
    if found is None:
        return None
    row, user, tenant = found
    last_seen = _aware(row.last_seen_at)
    if _aware(row.expires_at) <= now or now - last_seen > SESSION_IDLE or user.disabled:
        await repo.delete_session(session, session_id=session_id)
        await session.commit()
        return None
    if now - last_seen >= TOUCH_EVERY:
        await repo.touch_session(session, session_id=session_id, at=now)
    return CurrentSession(
        user=UserInfo.of(user),
        tenant=tenant,
        session_id=session_id,
        csrf_token=row.csrf_token,
        expires_at=_aware(row.expires_at),
    )


async def sign_out(session: AsyncSession, *, token: str) -> bool:
    """End the session with this cookie token; whether there was one."""
    if not token or len(token) > TOKEN_MAX:
        return False
    gone = await repo.delete_session(session, session_id=session_id_of(token))
    await session.commit()
    return gone > 0


async def change_own_password(
    session: AsyncSession,
    *,
    current: CurrentSession,
    old_password: str,
    new_password: str,
) -> UserInfo:
    """A signed-in person changes their own password: the old one must match (a session left
    open on a shared screen does not hand over the account). Their other sessions end."""
    row = await _row(session, tenant_id=current.user.tenant_id, user_id=current.user.id)
    ok, _ = await verify_password(old_password[:PASSWORD_MAX], row.password_hash)
    if not ok:
        raise InvalidUserInput("the current password is wrong")
    return await update_user(
        session,
        tenant_id=row.tenant_id,
        user_id=current.user.id,
        password=new_password,
        current_session_id=current.session_id,
    )
