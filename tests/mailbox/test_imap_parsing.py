"""The IMAP answers the reader reads, as aioimaplib hands them over (lines of bytes, literals as
bytearrays): Dovecot's SELECT, SEARCH and FETCH shapes, and the odd ones."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from activities.imap_client import (
    ImapUnavailable,
    imap_date,
    parse_body,
    parse_internaldate,
    parse_meta,
    parse_search,
    parse_select,
)


def test_select_gives_uidvalidity_uidnext_and_exists() -> None:
    lines = [
        b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        b"3 EXISTS",
        b"0 RECENT",
        b"OK [UIDVALIDITY 1795930398] UIDs valid",
        b"OK [UIDNEXT 7] Predicted next UID",
        b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
    ]
    selected = parse_select(lines)
    assert (selected.uidvalidity, selected.uidnext, selected.exists) == (1795930398, 7, 3)
    assert parse_select([b"OK [UIDVALIDITY 5] x", b"done"]).uidnext is None
    with pytest.raises(ImapUnavailable):
        parse_select([b"1 EXISTS", b"Select completed"])


def test_search_answers_sorted_uids_and_none() -> None:
    assert parse_search([b"4 2 9 2", b"Search completed (0.001 + 0.000 secs)."]) == [2, 4, 9]
    assert parse_search([b"", b"Search completed (0.001 + 0.000 secs)."]) == []
    assert parse_search([b"Search completed."]) == []
    assert parse_search([]) == []


def test_fetch_metadata_and_dates() -> None:
    lines = [
        b'1 FETCH (UID 11 RFC822.SIZE 337 INTERNALDATE "29-Nov-2026 05:33:18 +0000")',
        b'2 FETCH (INTERNALDATE " 1-Dec-2026 07:03:00 +0100" UID 12 RFC822.SIZE 99)',
        b"3 FETCH (FLAGS ())",  # no UID: not ours to read
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    first, second = parse_meta(lines)
    assert (first.uid, first.size) == (11, 337)
    assert first.internaldate == datetime(2026, 11, 29, 5, 33, 18, tzinfo=UTC)
    assert second.uid == 12 and second.internaldate is not None
    assert second.internaldate.astimezone(UTC) == datetime(2026, 12, 1, 6, 3, tzinfo=UTC)
    assert parse_internaldate("not a date") is None
    assert imap_date(date(2026, 2, 1)) == "1-Feb-2026"


def test_fetch_body_is_the_literal() -> None:
    raw = b"From: a@b\r\n\r\nhi\r\n"
    lines = [b"1 FETCH (UID 3 BODY[] {17}", bytearray(raw), b")", b"Fetch completed."]
    assert parse_body(lines) == raw
    # Expunged between SEARCH and FETCH: no FETCH line at all.
    assert parse_body([b"Fetch completed."]) is None
    # Answered without a literal: unreadable (the reader ignores it with a reason).
    assert parse_body([b"1 FETCH (UID 3 BODY[] NIL)", b"Fetch completed."]) == b""
