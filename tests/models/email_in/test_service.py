"""route_email and record_sent on SQLite and a real PostgreSQL: threading by the Message-IDs
leadflow sent, bounces marking the tenant's leads, automatic replies and our own mail ignored."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from models.common import Channel
from models.db import Database
from models.email_in.parse import parse_fields, parse_mime
from models.email_in.service import record_sent, route_email
from models.email_tables import EmailThread
from models.tables import Lead
from tests.conftest import make_tenant

MAIL = Path(__file__).parent / "mail"
NOW = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
OURS = "<0123456789abcdef0123456789abcdef@dealer.example>"


async def _sent(db: Database, tenant: str, *, message_id: str = OURS, to: str) -> None:
    async with db.session() as session:
        assert await record_sent(
            session,
            tenant_id=tenant,
            message_id=message_id,
            to=to,
            from_address="Sales <Sales@Dealer.example>",
            conversation_id="conv:t:email:x",
            campaign_id="camp-1",
            sent_at=NOW,
        )


async def test_record_sent_is_idempotent_and_canonical(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    for _ in range(2):  # a retried send records once
        await _sent(db, tenant, message_id=OURS.strip("<>"), to="Jan <Jan@Example.NL>")
    async with db.session() as session:
        rows = (await session.exec(select(EmailThread))).all()
        refused = await record_sent(
            session,
            tenant_id=tenant,
            message_id="not an id",
            to="jan@example.nl",
            from_address="sales@dealer.example",
            conversation_id=None,
            campaign_id=None,
            sent_at=NOW,
        )
    assert refused is False
    assert [(r.message_id, r.contact, r.from_address, r.campaign_id) for r in rows] == [
        (OURS, "jan@example.nl", "sales@dealer.example", "camp-1")
    ]


async def test_reply_naming_our_message_id_threads_to_that_contact_from_another_address(
    db: Database,
) -> None:
    tenant, _ = await make_tenant(db)
    await _sent(db, tenant, to="jan.devries@example.nl")
    # The lead answers from their phone's other account: In-Reply-To still names our mail.
    raw = (
        (MAIL / "gmail_nl_reply.eml")
        .read_bytes()
        .replace(b"jan.devries@example.nl", b"jan@privat.example")
    )
    async with db.session() as session:
        parsed = await route_email(
            session, tenant_id=tenant, email=parse_mime(raw), received_at=NOW, source="test"
        )
    (message,) = parsed.messages
    assert message.channel is Channel.EMAIL
    assert message.contact == "jan.devries@example.nl"
    assert message.provider_message_id == "<CAJanReply123@mail.gmail.com>"
    assert message.thread == "<CAJanReply123@mail.gmail.com>"  # our answer's In-Reply-To
    assert message.text == "Kan ik zaterdag een proefrit maken?"
    assert message.contact_name == "Jan de Vries"
    assert message.sent_at == datetime(2025, 6, 10, 7, 15, tzinfo=UTC)


async def test_references_thread_too_and_unknown_ids_fall_back_to_the_sender(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    await _sent(db, tenant, to="lead@example.org")
    via_references = parse_fields(
        headers=[("References", f"{OURS} <other@client>"), ("In-Reply-To", "<other@client>")],
        from_="Someone Else <Else@Example.com>",
        subject="Re: offer",
        text="Forwarding my colleague's question: price?",
        message_id="<r1@example.com>",
    )
    unknown = parse_fields(
        headers=[("In-Reply-To", "<never-sent@dealer.example>")],
        from_="Else@Example.com",
        subject="Re: offer",
        text="Hello?",
        message_id="<r2@example.com>",
    )
    async with db.session() as session:
        (first,) = (
            await route_email(
                session, tenant_id=tenant, email=via_references, received_at=NOW, source="t"
            )
        ).messages
        (second,) = (
            await route_email(session, tenant_id=tenant, email=unknown, received_at=NOW, source="t")
        ).messages
    assert first.contact == "lead@example.org"
    assert second.contact == "else@example.com"  # today's rule: the normalised From
    assert second.sent_at == NOW  # no Date header: when it was received


async def test_threads_are_per_tenant(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    await _sent(db, other, to="lead@example.org")
    reply = parse_fields(
        headers=[("In-Reply-To", OURS)], from_="x@example.com", subject="Re", text="hi"
    )
    async with db.session() as session:
        (message,) = (
            await route_email(session, tenant_id=tenant, email=reply, received_at=NOW, source="t")
        ).messages
    assert message.contact == "x@example.com"


async def test_our_own_mail_and_auto_replies_are_ignored(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    await _sent(db, tenant, to="lead@example.org")
    looped = parse_fields(
        headers=[], from_="sales@dealer.example", subject="x", text="ours", message_id=OURS
    )
    from_us = parse_fields(
        headers=[], from_="SALES@dealer.example", subject="x", text="hi", message_id="<n@x>"
    )
    auto = parse_mime((MAIL / "auto_reply.eml").read_bytes())
    empty = parse_fields(headers=[], from_="a@example.org", subject="x", text="  ")
    async with db.session() as session:
        answers = [
            await route_email(session, tenant_id=tenant, email=e, received_at=NOW, source="imap")
            for e in (looped, from_us, auto, empty)
        ]
    assert [a.messages for a in answers] == [(), (), (), ()]
    reasons = [a.ignored[0] for a in answers]
    assert reasons[0] == f"e-mail {OURS} via imap: a mail leadflow sent; not answered"
    assert reasons[1] == "e-mail <n@x> via imap: sent from leadflow's own address; not answered"
    assert reasons[2] == (
        "e-mail <10@foo.bar.mail> via imap: an automatic reply (Auto-Submitted: "
        "auto-generated); not answered"
    )
    assert reasons[3].endswith(": empty body")


async def _lead(db: Database, tenant: str, lead_id: str, **values: object) -> None:
    async with db.session() as session:
        session.add(Lead(id=lead_id, tenant_id=tenant, **values))  # type: ignore[arg-type]
        await session.commit()


async def _bounces(db: Database) -> dict[str, tuple[datetime | None, str | None]]:
    async with db.session() as session:
        leads = (await session.exec(select(Lead))).all()
    return {lead.id: (lead.email_bounced_at, lead.email_bounce) for lead in leads}


async def test_hard_bounce_marks_every_lead_with_the_address(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    # the returned message's Message-ID is a mail we sent to this address
    await _sent(db, tenant, message_id="<0a1b2c3d4e5f@discourse.org>", to="Linux-Admin@b-s-c.co.jp")
    await _lead(db, tenant, "l-email", channel="email", address="linux-admin@b-s-c.co.jp")
    await _lead(
        db, tenant, "l-waha", channel="waha", address="316@c.us", email="LINUX-ADMIN@b-s-c.co.jp"
    )
    await _lead(db, tenant, "l-else", channel="email", address="someone@example.org")
    await _lead(db, other, "l-other", channel="email", address="linux-admin@b-s-c.co.jp")
    email = parse_mime((MAIL / "bounced_email.eml").read_bytes())
    async with db.session() as session:
        parsed = await route_email(
            session, tenant_id=tenant, email=email, received_at=NOW, source="postmark"
        )
    assert parsed.messages == ()
    assert parsed.ignored == (
        "e-mail <20160407100430.18F5D18A0075@some.daemon.com> via postmark: a hard bounce "
        "(5.1.1); 2 lead(s) marked, not answered",
    )
    marks = await _bounces(db)
    summary = '5.1.1 X-Postfix; unknown user: "linux-admin"'
    assert marks["l-email"] == (NOW, summary)
    assert marks["l-waha"] == (NOW, summary)
    assert marks["l-else"] == (None, None)
    assert marks["l-other"] == (None, None)  # another tenant's lead is not touched
    # the same report again: the first bounce stays, nothing more is marked
    later = datetime(2025, 6, 11, tzinfo=UTC)
    async with db.session() as session:
        again = await route_email(
            session, tenant_id=tenant, email=email, received_at=later, source="postmark"
        )
    assert again.ignored[0].endswith("0 lead(s) marked, not answered")
    assert (await _bounces(db))["l-email"] == (NOW, summary)


async def test_soft_bounce_marks_nothing(db: Database) -> None:
    tenant, _ = await make_tenant(db)
    await _lead(db, tenant, "l-slow", channel="email", address="slow@example.org")
    email = parse_mime((MAIL / "dsn_soft_uppercase.eml").read_bytes())
    async with db.session() as session:
        parsed = await route_email(
            session, tenant_id=tenant, email=email, received_at=NOW, source="mailgun"
        )
    assert parsed.messages == ()
    assert parsed.ignored == (
        "e-mail <dsn-delay-1@mail.example.org> via mailgun: a soft bounce (4.4.1); not answered",
    )
    assert (await _bounces(db))["l-slow"] == (None, None)
