"""Unsubscribe tokens and links (models/unsubscribe.py): a token says whom it unsubscribes only
to the deployment's key, survives a key rotation while the old key is listed, and refuses
anything changed or made up; the link's base follows LEADFLOW_PUBLIC_URL, else the API's own
address, and one-click only where RFC 8058 allows it (https; http on loopback)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest

from models.settings import Settings
from models.unsubscribe import (
    MAX_TOKEN_CHARS,
    Unsubscribe,
    UnsubscribeLinks,
    UnsubscribeTokenError,
    make_token,
    read_token,
    unsubscribe_base,
)

KEY = "unsubscribe-test-key"
WHO = Unsubscribe(tenant_id="t-dealer", contact="ana.lima@example.com", campaign_id="cmp-1")


def _settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=KEY, **values)


def test_a_token_names_tenant_contact_and_campaign_and_reads_back() -> None:
    token = make_token(KEY, WHO)
    assert read_token(KEY, token) == WHO
    assert read_token(KEY, make_token(KEY, WHO._replace(campaign_id=None))).campaign_id is None
    # Deterministic: the same recipient and campaign, the same link (a retried send's header).
    assert make_token(KEY, WHO) == token
    assert make_token(KEY, WHO._replace(campaign_id="cmp-2")) != token


def test_a_token_is_opaque_and_url_safe() -> None:
    token = make_token(KEY, WHO)
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for secret in (b"ana.lima", b"example.com", b"t-dealer", b"cmp-1"):
        assert secret not in raw


def test_non_ascii_contacts_round_trip() -> None:
    who = WHO._replace(contact="josé@exämple.com")
    assert read_token(KEY, make_token(KEY, who)) == who


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_a_changed_token_is_refused(position: int) -> None:
    token = make_token(KEY, WHO)
    flipped = "A" if token[position] != "A" else "B"
    changed = (
        token[:position] + flipped + token[position + 1 :]
        if position != -1
        else token[:-1] + flipped
    )
    with pytest.raises(UnsubscribeTokenError):
        read_token(KEY, changed)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "x",
        "not a token",
        "%%%%",
        "é" * 30,
        "A" * 22,  # decodes to 16 bytes: a tag over nothing
        "A" * 200,
        "A" * (MAX_TOKEN_CHARS + 1),
        base64.urlsafe_b64encode(b"\x00" * 64).decode(),
    ],
)
def test_garbage_is_refused_as_one_error(token: str) -> None:
    with pytest.raises(UnsubscribeTokenError, match="not an unsubscribe token"):
        read_token(KEY, token)


def test_another_deployments_token_is_refused() -> None:
    with pytest.raises(UnsubscribeTokenError):
        read_token(KEY, make_token("another-deployment-key", WHO))


def test_rotation_reads_old_links_while_the_old_key_is_listed() -> None:
    old = make_token("old-key", WHO)
    assert read_token("new-key,old-key", old) == WHO
    # new links are made with the first key
    assert read_token("new-key", make_token("new-key,old-key", WHO)) == WHO
    with pytest.raises(UnsubscribeTokenError):
        read_token("new-key", old)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="LEADFLOW_SECRET_KEY"):
        make_token(" , ", WHO)
    with pytest.raises(ValueError, match="LEADFLOW_SECRET_KEY"):
        UnsubscribeLinks(base_url="https://leadflow.example.com", secret_key="")


# ---- base URL and one-click ------------------------------------------------------------------


def test_the_base_is_public_url(tmp_path: Path) -> None:
    settings = _settings(tmp_path, public_url="https://leadflow.example.com/")
    assert unsubscribe_base(settings) == "https://leadflow.example.com"
    prefixed = _settings(tmp_path, public_url="https://example.com/leadflow")
    assert unsubscribe_base(prefixed) == "https://example.com/leadflow"
    links = UnsubscribeLinks.from_settings(prefixed)
    url = links.url(WHO)
    assert url.startswith("https://example.com/leadflow/unsubscribe/")
    assert read_token(KEY, url.rsplit("/", 1)[1]) == WHO
    assert links.one_click


@pytest.mark.parametrize(
    ("host", "port", "base"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 8080, "http://127.0.0.1:8080"),
        ("::", 8000, "http://127.0.0.1:8000"),
        ("::1", 8000, "http://[::1]:8000"),
        ("localhost", 9000, "http://localhost:9000"),
    ],
)
def test_without_public_url_the_base_is_the_api_itself(
    tmp_path: Path, host: str, port: int, base: str
) -> None:
    settings = _settings(tmp_path, api_host=host, api_port=port)
    assert unsubscribe_base(settings) == base
    # one machine: loopback http is one-click (it can be tried locally; nobody else reaches it)
    assert UnsubscribeLinks.from_settings(settings).one_click


def test_public_http_is_a_link_without_one_click(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, public_url="http://leadflow.example.com")
    with caplog.at_level(logging.WARNING, logger="models.unsubscribe"):
        links = UnsubscribeLinks.from_settings(settings)
    assert not links.one_click
    assert "not https" in caplog.text and "LEADFLOW_PUBLIC_URL" in caplog.text
    assert links.url(WHO).startswith("http://leadflow.example.com/unsubscribe/")


@pytest.mark.parametrize(
    "public_url",
    [
        "leadflow.example.com",
        "ftp://leadflow.example.com",
        "https://",
        "https://leadflow.example.com/?a=1",
        "https://leadflow.example.com/#x",
        "https://bücher.example",
        "https://leadflow.example.com/a b",
        "https://leadflow.example.com/<x>",
    ],
)
def test_a_bad_public_url_is_an_error_naming_the_setting(tmp_path: Path, public_url: str) -> None:
    with pytest.raises(ValueError, match="LEADFLOW_PUBLIC_URL"):
        UnsubscribeLinks.from_settings(_settings(tmp_path, public_url=public_url))
