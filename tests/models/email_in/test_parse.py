"""Parsing, classification and reply stripping on the wire fixtures (../shared/wire/
inbound_email.md and email_reply_parsing.md): Discourse's bounce, auto-reply and Dutch Gmail
reply, Zapier/mail-parser-reply's Outlook and English replies, talon's Dutch and German forms."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.email_in.message import EmailKind, MalformedEmail, canonical_message_id, message_ids
from models.email_in.parse import MISSING_ID_DOMAIN, parse_fields, parse_mime
from models.email_in.strip import reply_text

MAIL = Path(__file__).parent / "mail"


def mail(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def test_discourse_bounce_is_a_hard_bounce_with_its_facts() -> None:
    email = parse_mime(mail("bounced_email.eml"))
    assert email.kind is EmailKind.BOUNCE
    assert email.kind_reason == "multipart/report; report-type=delivery-status"
    bounce = email.bounce
    assert bounce is not None
    assert bounce.recipient == "linux-admin@b-s-c.co.jp"
    assert (bounce.status, bounce.action, bounce.hard) == ("5.1.1", "failed", True)
    assert bounce.diagnostic == 'X-Postfix; unknown user: "linux-admin"'
    # the returned message (message/rfc822) names the mail we sent
    assert bounce.original_message_id == "<0a1b2c3d4e5f@discourse.org>"
    assert bounce.summary() == '5.1.1 X-Postfix; unknown user: "linux-admin"'
    assert email.reply_text == ""  # a report is never analysed


def test_shouting_report_is_a_soft_bounce_with_headers_part() -> None:
    """`MULTIPART/REPORT; REPORT-TYPE=DELIVERY-STATUS` (old MTAs, flufl.bounce's dsn_01) and
    the returned headers as text/rfc822-headers."""
    email = parse_mime(mail("dsn_soft_uppercase.eml"))
    assert email.kind is EmailKind.BOUNCE
    assert email.bounce is not None
    assert (email.bounce.status, email.bounce.action, email.bounce.hard) == (
        "4.4.1",
        "delayed",
        False,
    )
    assert email.bounce.recipient == "slow@example.org"
    assert email.bounce.original_message_id == "<fedcba9876543210fedcba9876543210@dealer.example>"


def test_mailer_daemon_prose_without_a_report_is_a_bounce_marked_soft() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: sales@dealer.example\r\n"
        b"Subject: failure notice\r\nMessage-ID: <fn-1@mx.example.org>\r\n\r\n"
        b"Sorry, we were unable to deliver your message.\r\n"
    )
    email = parse_mime(raw)
    assert (email.kind, email.kind_reason) == (EmailKind.BOUNCE, "sent by MAILER-DAEMON")
    assert email.bounce is not None and email.bounce.hard is False  # nothing marked on a guess


def test_flattened_report_text_gives_the_facts() -> None:
    """A provider's parsed fields lose the MIME parts: the report is read from the text."""
    email = parse_fields(
        headers=[("Content-Type", "multipart/report; report-type=delivery-status; boundary=x")],
        from_="Mail Delivery System <MAILER-DAEMON@mx.example.org>",
        subject="Undelivered Mail Returned to Sender",
        text="Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\n\nMessage-ID: <abc@dealer.example>\n",
    )
    assert email.kind is EmailKind.BOUNCE
    assert email.bounce is not None
    assert email.bounce.recipient == "gone@example.org"
    assert email.bounce.hard and email.bounce.status == "5.1.1"
    assert email.bounce.original_message_id == "<abc@dealer.example>"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("auto_reply.eml", "Auto-Submitted: auto-generated"),
        ("abwesenheit.eml", "subject 'Abwesenheitsnotiz: Ihr Angebot'"),
    ],
)
def test_auto_replies(name: str, reason: str) -> None:
    email = parse_mime(mail(name))
    assert (email.kind, email.kind_reason) == (EmailKind.AUTO_REPLY, reason)


@pytest.mark.parametrize(
    ("headers", "subject", "reason"),
    [
        ([("Auto-Submitted", "auto-replied")], "Re: x", "Auto-Submitted: auto-replied"),
        ([("Precedence", "bulk")], "Re: x", "Precedence: bulk"),
        ([("X-Autoreply", "yes")], "Re: x", "header X-Autoreply"),
        ([("X-Autorespond", "On holiday")], "Re: x", "header X-Autorespond"),
        ([("X-Auto-Response-Suppress", "All")], "Re: x", "X-Auto-Response-Suppress: All"),
        ([], "Automatisch antwoord: Uw offerte", "subject 'Automatisch antwoord: Uw offerte'"),
        ([], "Out of Office: back Monday", "subject 'Out of Office: back Monday'"),
        ([], "Réponse automatique : absent", "subject 'Réponse automatique : absent'"),
    ],
)
def test_auto_reply_rules(headers: list[tuple[str, str]], subject: str, reason: str) -> None:
    email = parse_fields(headers=headers, from_="lead@example.org", subject=subject, text="away")
    assert (email.kind, email.kind_reason) == (EmailKind.AUTO_REPLY, reason)


@pytest.mark.parametrize(
    "headers",
    [
        [("Auto-Submitted", "no")],
        # Outlook puts this on ordinary mail: only "All" means an automatic reply.
        [("X-Auto-Response-Suppress", "OOF, AutoReply")],
        [("Precedence", "first-class")],
    ],
)
def test_a_person_s_mail_stays_human(headers: list[tuple[str, str]]) -> None:
    email = parse_fields(headers=headers, from_="lead@example.org", subject="Re: x", text="Hi")
    assert email.kind is EmailKind.HUMAN


def test_dutch_gmail_reply_is_stripped_and_threaded() -> None:
    """Discourse's dutch.eml: "Op … schreef … het volgende:", which mail-parser-reply 1.36 alone
    does not strip (wire doc §3)."""
    email = parse_mime(mail("dutch.eml"))
    assert email.kind is EmailKind.HUMAN
    assert email.reply_text == "Dit is een antwoord in het Nederlands."
    assert email.message_id == "<4597127794206131679@unknownmsgid>"
    assert email.in_reply_to == "<51efeb9b36c34_66dc2dfce6811866@discourse.mail>"
    assert email.references == (
        "<topic/5043@discourse.org>",
        "<51efeb9b36c34_66dc2dfce6811866@discourse.mail>",
    )
    assert email.thread_ids == (
        "<51efeb9b36c34_66dc2dfce6811866@discourse.mail>",
        "<topic/5043@discourse.org>",
    )
    assert (email.from_address, email.from_name) == ("walter.white@googlemail.com", "Walter White")
    assert email.date == datetime(2013, 7, 24, 14, 59, 10, tzinfo=UTC)


def test_gmail_nl_reply_with_address_quote_and_signature() -> None:
    email = parse_mime(mail("gmail_nl_reply.eml"))
    assert email.reply_text == "Kan ik zaterdag een proefrit maken?"
    assert "Met vriendelijke groet" in email.text  # the whole text is kept beside it


def test_outlook_top_post() -> None:
    email = parse_mime(mail("outlook_en.eml"))
    assert email.kind is EmailKind.HUMAN
    assert email.reply_text == "Outlook with a reply"


def test_html_only_mail_is_converted_and_its_quote_stripped() -> None:
    email = parse_mime(mail("html_only.eml"))
    assert "Is the Golf still available?" in email.text
    assert "p{color:red}" not in email.text
    assert "> Hello Lisa, here is our offer." in email.text
    assert email.reply_text == "Is the Golf still available?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Zapier README (EN)
        (
            "Yes that is fine, I will email you in the morning.\n\n"
            "On Fri, Nov 16, 2012 at 1:48 PM, Zapier <contact@zapier.com> wrote:\n\n"
            '> Our support team just commented on your open Ticket:\n> "Hi Royce"',
            "Yes that is fine, I will email you in the morning.",
        ),
        # talon: "Op … schreef Name <mail>:" (NL)
        (
            "Lorem\n\nOp 13-02-2014 3:18 schreef Julius Caesar <pantheon@rome.com>:\n\n"
            "Veniam laborum mlkshk kale chips authentic.",
            "Lorem",
        ),
        # talon: German Von/Gesendet/An/Betreff block
        (
            "Allo! Follow up MIME!\n\nVon: somebody@example.com\n"
            "Gesendet: Dienstag, 25. November 2014 14:59\nAn: Somebody\n"
            "Betreff: The manager has commented on your Loop\n\nBlah-blah-blah\n",
            "Allo! Follow up MIME!",
        ),
        # crisp: "Am … schrieb …:" (DE)
        (
            'Fusce bibendum.\n\nAm 13.12.2017 21:11 schrieb "John Doe - Stripe '
            "<s.test.i@mail.stripe.com>:\n\nHi there!",
            "Fusce bibendum.",
        ),
        # Gmail wraps a long attribution over two lines
        (
            "Prima, tot dan.\n\nOp di 10 jun 2025 om 08:00 schreef Verkoopteam Autohuis <\n"
            "verkoop@autohuis.example>:\n\n> Tot zaterdag!",
            "Prima, tot dan.",
        ),
        # a trailing `>` block without an attribution
        ("Sounds good.\n\n> Shall we say 10:00?\n>\n> Mark", "Sounds good."),
        # not an attribution: no date in the line
        (
            "On Monday I wrote: see below.\nStill interested.",
            "On Monday I wrote: see below.\nStill interested.",
        ),
    ],
)
def test_reply_stripping(text: str, expected: str) -> None:
    assert reply_text(text) == expected


def test_reply_typed_inside_the_quote_falls_back_to_the_whole_text() -> None:
    email = parse_fields(
        headers=[], from_="lead@example.org", subject="Re: x", text="> quoted only\n> more"
    )
    assert email.reply_text == ""
    assert email.analysed_text == "> quoted only\n> more"


def test_message_ids_are_canonical() -> None:
    assert canonical_message_id(" <a@b> ") == "<a@b>"
    assert canonical_message_id("a@b") == "<a@b>"
    assert canonical_message_id("no id here") is None
    assert message_ids("<x@y>\n <z@w>  <x@y>") == ("<x@y>", "<z@w>")


def test_mail_without_message_id_gets_a_stable_digest() -> None:
    raw = b"From: lead@example.org\r\nSubject: hi\r\n\r\nHello\r\n"
    first, again = parse_mime(raw), parse_mime(raw)
    assert first.message_id == again.message_id
    assert first.message_id.endswith(f"@{MISSING_ID_DOMAIN}>")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"\x00\xff\xfe garbage without headers", "no From header"),
        (b"Subject: hi\r\n\r\nno sender\r\n", "no From header"),
        (b"From: undisclosed-recipients:;\r\nSubject: x\r\n\r\nhi\r\n", "has no e-mail address"),
    ],
)
def test_garbage_raises_a_clear_value_error(raw: bytes, says: str) -> None:
    with pytest.raises(MalformedEmail, match=says) as info:
        parse_mime(raw)
    assert isinstance(info.value, ValueError)


# The stdlib's address parser raises AttributeError on this To (found by fuzzing): one broken
# header must not cost the mail, nor ever be a 500.
BROKEN_TO = "is,Yö$_S:t88;j[M!%b)?:)&dJ6n#i"


def test_a_header_the_stdlib_cannot_parse_is_read_raw() -> None:
    raw = (
        f"From: Lead <lead@example.org>\r\nTo: {BROKEN_TO}\r\nSubject: hi\r\n"
        "Message-ID: <z@x.example>\r\n\r\nHello\r\n"
    ).encode()
    email = parse_mime(raw)
    assert (email.kind, email.reply_text, email.message_id) == (
        EmailKind.HUMAN,
        "Hello",
        "<z@x.example>",
    )
    fields = parse_fields(
        headers=[("To", BROKEN_TO), ("Reply-To", BROKEN_TO)],
        from_="lead@example.org",
        subject="hi",
        text="Hello",
    )
    assert fields.reply_text == "Hello"


def test_a_sender_the_stdlib_cannot_parse_is_a_clear_error() -> None:
    with pytest.raises(MalformedEmail, match="has no e-mail address"):
        parse_mime(f"From: {BROKEN_TO}\r\nSubject: x\r\n\r\nhi\r\n".encode())


def test_an_empty_text_part_beside_html_reads_the_html() -> None:
    raw = (
        b"From: lead@example.org\r\nSubject: Re: offer\r\nMessage-ID: <alt@example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n \r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Yes, <i>Saturday</i> works.</p><blockquote>Our offer</blockquote>\r\n--b--\r\n"
    )
    email = parse_mime(raw)
    assert email.text == "Yes, Saturday works.\n\n> Our offer"
    assert email.reply_text == "Yes, Saturday works."
