"""The users service (`models.users`) on SQLite and PostgreSQL: addresses checked and
lower-cased, passwords stored as Argon2id hashes only, sign-in that answers None alike for every
failure, sessions stored as hashes that end when idle, when too old, at sign-out, and when the
person is disabled or their password changes, and a tenant that never loses its last admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from models import audit, users
from models.audit_tables import AuditEvent
from models.db import Database
from models.tables import utcnow
from models.user_tables import User, UserSession
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

PASSWORD = "correct horse battery"


async def _person(
    db: Database, tenant_id: str, email: str, role: str = "admin", password: str = PASSWORD
) -> users.UserInfo:
    async with db.session() as session:
        return await users.create_user(
            session,
            tenant_id=tenant_id,
            email=email,
            name="Anna Berg",
            role=role,
            password=password,
        )


async def test_a_person_is_stored_lower_cased_with_an_argon2id_hash_only(db: Database) -> None:
    tid, _ = await make_tenant(db)
    person = await _person(db, tid, "  Anna.Berg@Example.COM ")
    assert person.email == "anna.berg@example.com" and person.role == "admin"
    assert person.tenant_id == tid and not person.disabled and person.last_login_at is None
    async with db.session() as session:
        row = (await session.exec(select(User).where(User.id == person.id))).one()
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    # the same address, any spelling, is taken in this tenant; another tenant may have it
    with pytest.raises(users.UserRefused, match="already"):
        await _person(db, tid, "ANNA.BERG@example.com")
    other, _ = await make_tenant(db)
    assert (await _person(db, other, "anna.berg@example.com")).tenant_id == other
    # reserved domains are fine sign-in names (nobody mails them)
    assert (await _person(db, tid, "Admin@Demo.Leadflow.Local")).email == (
        "admin@demo.leadflow.local"
    )


@pytest.mark.parametrize(
    ("email", "name", "role", "password", "problem"),
    [
        ("not-an-address", "Anna", "admin", PASSWORD, "not an e-mail address"),
        ("a@@example.com", "Anna", "admin", PASSWORD, "not an e-mail address"),
        ("", "Anna", "admin", PASSWORD, "empty"),
        ("a@example.com", "   ", "admin", PASSWORD, "name is empty"),
        ("a@example.com", "An\x00na", "admin", PASSWORD, "control characters"),
        ("a@example.com", "Anna", "owner", PASSWORD, "role must be one of"),
        ("a@example.com", "Anna", "admin", "short", "shorter than 10"),
        ("a@example.com", "Anna", "admin", " " * 12, "only spaces"),
    ],
)
async def test_bad_input_is_refused_with_what_is_wrong(
    sqlite_db: Database, email: str, name: str, role: str, password: str, problem: str
) -> None:
    tid, _ = await make_tenant(sqlite_db)
    async with sqlite_db.session() as session:
        with pytest.raises(users.InvalidUserInput, match=problem):
            await users.create_user(
                session, tenant_id=tid, email=email, name=name, role=role, password=password
            )
        assert await users.list_users(session, tenant_id=tid) == []


async def test_an_unknown_tenant_is_refused(sqlite_db: Database) -> None:
    async with sqlite_db.session() as session:
        with pytest.raises(users.UserNotFound, match="no tenant"):
            await users.create_user(
                session,
                tenant_id="nope",
                email="a@example.com",
                name="A",
                role="admin",
                password=PASSWORD,
            )


async def test_sign_in_answers_none_alike_and_stores_only_the_token_hash(db: Database) -> None:
    tid, _ = await make_tenant(db)
    person = await _person(db, tid, "anna@example.com")
    async with db.session() as session:
        for tenant_id, email, password in [
            (tid, "anna@example.com", PASSWORD + "x"),  # wrong password
            (tid, "bob@example.com", PASSWORD),  # unknown address
            ("no-such-tenant", "anna@example.com", PASSWORD),  # unknown tenant
            (tid, "not an address", PASSWORD),  # not even an address
        ]:
            assert (
                await users.sign_in(session, tenant_id=tenant_id, email=email, password=password)
                is None
            )
        signed = await users.sign_in(
            session, tenant_id=tid, email="ANNA@example.com", password=PASSWORD
        )
        assert signed is not None and signed.user.id == person.id
        assert signed.user.last_login_at is not None
        stored = (await session.exec(select(UserSession))).all()
    assert [s.id for s in stored] == [users.session_id_of(signed.token)]
    assert signed.token not in stored[0].id and stored[0].csrf_token == signed.csrf_token
    assert stored[0].expires_at - stored[0].created_at == users.SESSION_MAX

    async with db.session() as session:
        current = await users.session_of(session, token=signed.token)
        assert current is not None and current.user.email == "anna@example.com"
        assert current.tenant.id == tid and current.csrf_token == signed.csrf_token
        assert await users.session_of(session, token=signed.token + "x") is None
        assert await users.session_of(session, token="") is None
        assert await users.sign_out(session, token=signed.token) is True
        assert await users.session_of(session, token=signed.token) is None
        assert await users.sign_out(session, token=signed.token) is False


async def test_sessions_end_when_idle_and_when_too_old(db: Database) -> None:
    tid, _ = await make_tenant(db)
    await _person(db, tid, "anna@example.com")
    start = utcnow()
    async with db.session() as session:
        idle = await users.sign_in(
            session, tenant_id=tid, email="anna@example.com", password=PASSWORD, now=start
        )
        busy = await users.sign_in(
            session, tenant_id=tid, email="anna@example.com", password=PASSWORD, now=start
        )
    assert idle is not None and busy is not None
    async with db.session() as session:
        # used every 11 hours, the busy session lives on past 12 hours; the idle one does not
        at = start
        for _ in range(3):
            at += timedelta(hours=11)
            assert await users.session_of(session, token=busy.token, now=at) is not None
        assert await users.session_of(session, token=idle.token, now=at) is None
        # … but not past its absolute end, whatever the activity
        while at + timedelta(hours=11) < start + users.SESSION_MAX:
            at += timedelta(hours=11)
            assert await users.session_of(session, token=busy.token, now=at) is not None
        end = start + users.SESSION_MAX + timedelta(seconds=1)
        assert await users.session_of(session, token=busy.token, now=end) is None
        # ended sessions are deleted, not just refused
        assert (await session.exec(select(UserSession))).all() == []


async def test_a_new_password_or_disabling_ends_sessions(db: Database) -> None:
    tid, _ = await make_tenant(db)
    person = await _person(db, tid, "anna@example.com", role="operator")
    await _person(db, tid, "boss@example.com", role="admin")
    async with db.session() as session:
        first = await users.sign_in(
            session, tenant_id=tid, email="anna@example.com", password=PASSWORD
        )
        second = await users.sign_in(
            session, tenant_id=tid, email="anna@example.com", password=PASSWORD
        )
        assert first is not None and second is not None
        current = await users.session_of(session, token=first.token)
        assert current is not None
        # changing one's own password keeps that session, ends the others
        with pytest.raises(users.InvalidUserInput, match="current password is wrong"):
            await users.change_own_password(
                session, current=current, old_password="wrong one!", new_password="a new secret"
            )
        await users.change_own_password(
            session, current=current, old_password=PASSWORD, new_password="a new secret"
        )
        assert await users.session_of(session, token=first.token) is not None
        assert await users.session_of(session, token=second.token) is None
        assert (
            await users.sign_in(session, tenant_id=tid, email="anna@example.com", password=PASSWORD)
            is None
        )
        assert (
            await users.sign_in(
                session, tenant_id=tid, email="anna@example.com", password="a new secret"
            )
            is not None
        )
        # disabled: every session ends, and signing in fails even with the right password
        await users.update_user(session, tenant_id=tid, user_id=person.id, disabled=True)
        assert await users.session_of(session, token=first.token) is None
        assert (
            await users.sign_in(
                session, tenant_id=tid, email="anna@example.com", password="a new secret"
            )
            is None
        )


async def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(db: Database) -> None:
    tid, _ = await make_tenant(db)
    admin = await _person(db, tid, "admin@example.com", role="admin")
    other = await _person(db, tid, "other@example.com", role="operator")
    async with db.session() as session:
        for change in ({"role": "operator"}, {"role": "viewer"}, {"disabled": True}):
            with pytest.raises(users.UserRefused, match="last admin"):
                await users.update_user(session, tenant_id=tid, user_id=admin.id, **change)
        with pytest.raises(users.UserRefused, match="last admin"):
            await users.delete_user(session, tenant_id=tid, user_id=admin.id)
        assert (await users.get_user(session, tenant_id=tid, user_id=admin.id)).role == "admin"
        # with a second admin, the first may go; then the second is the last
        await users.update_user(session, tenant_id=tid, user_id=other.id, role="admin")
        demoted = await users.update_user(
            session, tenant_id=tid, user_id=admin.id, role="viewer", name="Was Admin"
        )
        assert demoted.role == "viewer" and demoted.name == "Was Admin"
        with pytest.raises(users.UserRefused, match="last admin"):
            await users.delete_user(session, tenant_id=tid, user_id=other.id)
        # a disabled admin does not count as one
        await users.update_user(session, tenant_id=tid, user_id=admin.id, role="admin")
        await users.update_user(session, tenant_id=tid, user_id=admin.id, disabled=True)
        with pytest.raises(users.UserRefused, match="last admin"):
            await users.update_user(session, tenant_id=tid, user_id=other.id, role="operator")
        gone = await users.delete_user(session, tenant_id=tid, user_id=admin.id)
        assert gone.email == "admin@example.com"
        assert [u.email for u in await users.list_users(session, tenant_id=tid)] == [
            "other@example.com"
        ]


async def test_another_tenants_person_is_not_found(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    theirs = await _person(db, other, "them@example.com")
    async with db.session() as session:
        for call in (
            users.get_user(session, tenant_id=tid, user_id=theirs.id),
            users.update_user(session, tenant_id=tid, user_id=theirs.id, name="Mine"),
            users.delete_user(session, tenant_id=tid, user_id=theirs.id),
            users.get_user(session, tenant_id=tid, user_id=2**40),
        ):
            with pytest.raises(users.UserNotFound):
                await call
        assert (await users.get_user(session, tenant_id=other, user_id=theirs.id)).name == (
            "Anna Berg"
        )


async def test_cli_actions_are_audited_under_the_given_actor(sqlite_db: Database) -> None:
    tid, _ = await make_tenant(sqlite_db)
    actor = audit.cli_actor("ops")
    async with sqlite_db.session() as session:
        made = await users.create_user(
            session,
            tenant_id=tid,
            email="a@example.com",
            name="A",
            role="admin",
            password=PASSWORD,
            audit_as=actor,
        )
        await users.update_user(
            session, tenant_id=tid, user_id=made.id, password="another secret", audit_as=actor
        )
        rows = (await session.exec(select(AuditEvent).order_by(AuditEvent.id))).all()  # type: ignore[arg-type]
    assert [(r.action, r.actor, r.resource_id) for r in rows] == [
        ("user.create", "ops", str(made.id)),
        ("user.set_password", "ops", str(made.id)),
    ]
    assert all(
        PASSWORD not in str(r.detail) and "another secret" not in str(r.detail) for r in rows
    )
    assert audit.user_actor(name="Anna", email="a@example.com") == audit.Actor(
        kind="user", name="Anna <a@example.com>"
    )
