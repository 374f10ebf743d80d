"""Unsubscribe links of campaign e-mail (RFC 2369 `List-Unsubscribe`, RFC 8058 one-click).

A link is `<base>/unsubscribe/<token>`. The token names whom to unsubscribe: the tenant, the
recipient's e-mail address and the campaign. It is the only credential the link carries: a
mailbox provider's one-click POST sends no cookie and no API key (RFC 8058 §3.2), so the token
must be unguessable, tamper-proof and, because it travels in every copy of the mail and in
every proxy's access log, opaque: it must not show the address.

How: AES-SIV (RFC 5297, AES-256) over `[tenant, contact, campaign]` as compact JSON, with a key
derived from `LEADFLOW_SECRET_KEY` by HMAC-SHA-512 under a label of its own (the stored
credentials' keys are derived under another, so neither key is the other). SIV is encryption
and a MAC in one: a changed or made-up token fails its check (16-byte tag), and what it names
cannot be read without the key. It is deterministic (no random nonce): the same recipient and
campaign always get the same token, so a retried send carries the same header and tests can
compare exact values; all that reveals is that two links are the same link. No table: nothing
is stored per mail.

Key rotation (`LEADFLOW_SECRET_KEY=new,old`): the first key makes tokens, every listed key is
tried when reading one, so links in mails sent before a rotation keep working for as long as
the old key stays listed (dropping it ends them: a 404).

Base URL (`unsubscribe_base`): `LEADFLOW_PUBLIC_URL`, where the API is reachable from the
internet (what a mailbox provider and the recipient's browser open). Unset (`leadflow up` on one
machine), the API's own `http://<api_host>:<api_port>`: the link works on that machine, which is
what a local deployment can offer. RFC 8058 one-click needs an https URI; leadflow sends
`List-Unsubscribe-Post` only for an https base, or an http one on a loopback address (one
machine: nobody else can reach it, and the flow can be tried locally). A public http base gets
the RFC 2369 link alone (the recipient opens it and confirms) and a warning when the channel is
built."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from models.crypto import secret_keys
from models.settings import Settings

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/unsubscribe/"
"""Where the API serves the links (api/routes/unsubscribe.py)."""

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
"""What `List-Unsubscribe-Post` says and a mailbox provider POSTs (RFC 8058 §3.1)."""

MAX_TOKEN_CHARS = 1400
"""Longer is no token of ours (the longest tenant, contact and campaign ids make ~1000);
refused before any decryption is tried."""

_KEY_LABEL = b"leadflow-unsubscribe-token"
# Authenticated with the ciphertext: a token of some other future use of AES-SIV under a key
# derived alike would not read as an unsubscribe token.
_ASSOCIATED = [b"leadflow:unsubscribe:v1"]


class UnsubscribeTokenError(ValueError):
    """Not a token of this deployment: malformed, changed, made up, or made with a key that is
    no longer listed. Deliberately one error: the caller cannot tell which, nor can a guesser."""


class Unsubscribe(NamedTuple):
    """Whom a link unsubscribes."""

    tenant_id: str
    contact: str
    """The recipient's e-mail address as the conversation names it (lowercase)."""
    campaign_id: str | None = None


@lru_cache(maxsize=16)
def _cipher(key: str) -> AESSIV:
    # Cached: reading a token tries each listed key; deriving them per request is waste.
    return AESSIV(hmac.new(key.encode(), _KEY_LABEL, hashlib.sha512).digest())


def _ciphers(secret_key: str) -> list[AESSIV]:
    keys = secret_keys(secret_key)
    if not keys:
        raise ValueError("LEADFLOW_SECRET_KEY is empty: unsubscribe links cannot be made")
    return [_cipher(key) for key in keys]


def make_token(secret_key: str, who: Unsubscribe) -> str:
    """The token of `who`, under the first key of `secret_key` (base64url, no padding)."""
    plain = json.dumps(list(who), separators=(",", ":"), ensure_ascii=False).encode()
    sealed = _ciphers(secret_key)[0].encrypt(plain, _ASSOCIATED)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def read_token(secret_key: str, token: str) -> Unsubscribe:
    """Whom `token` unsubscribes; `UnsubscribeTokenError` for anything that is not a token
    one of the listed keys made."""
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise UnsubscribeTokenError("not an unsubscribe token")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise UnsubscribeTokenError("not an unsubscribe token") from exc
    for cipher in _ciphers(secret_key):
        try:
            plain = cipher.decrypt(sealed, _ASSOCIATED)
        except (InvalidTag, ValueError):  # ValueError: shorter than the tag
            continue
        return _unpacked(plain)
    raise UnsubscribeTokenError("not an unsubscribe token")


def _unpacked(plain: bytes) -> Unsubscribe:
    # Authentic, so written by make_token; checked anyway, so a bug is a 404, never a 500.
    try:
        fields = json.loads(plain)
    except ValueError as exc:
        raise UnsubscribeTokenError("not an unsubscribe token") from exc
    if (
        not isinstance(fields, list)
        or len(fields) != 3
        or not all(isinstance(f, str) and f for f in fields[:2])
        or not (fields[2] is None or isinstance(fields[2], str))
    ):
        raise UnsubscribeTokenError("not an unsubscribe token")
    return Unsubscribe(tenant_id=fields[0], contact=fields[1], campaign_id=fields[2])


# ---- links -------------------------------------------------------------------------------------


def unsubscribe_base(settings: Settings) -> str:
    """The base of this deployment's links (see the module docstring), without a trailing
    slash. `ValueError` naming the setting for a `LEADFLOW_PUBLIC_URL` that is no http(s) URL:
    a misconfigured deployment is an error, not links nobody can open."""
    if settings.public_url:
        base = settings.public_url.strip().rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"LEADFLOW_PUBLIC_URL={settings.public_url!r} is not an http(s) URL; "
                "unsubscribe links need it, e.g. https://leadflow.example.com"
            )
        if not base.isascii() or any(c in base for c in ' <>"\\') or not base.isprintable():
            raise ValueError(
                f"LEADFLOW_PUBLIC_URL={settings.public_url!r}: a link in a mail header is "
                "ASCII without spaces or <>; write an international host in its xn-- form"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                f"LEADFLOW_PUBLIC_URL={settings.public_url!r}: a base URL has no query or fragment"
            )
        return base
    host = settings.api_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - listening everywhere: this machine is one
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UnsubscribeLinks:
    """Makes the links of one deployment: its base URL and its secret key."""

    def __init__(self, *, base_url: str, secret_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret_key = secret_key
        _ciphers(secret_key)  # an empty key is refused now, not at the first campaign mail
        parts = urlsplit(self.base_url)
        # RFC 8058 §3.1: one-click needs an https URI (see the module docstring for loopback).
        self.one_click = parts.scheme == "https" or (
            parts.scheme == "http" and is_loopback(parts.hostname)
        )
        if not self.one_click:
            log.warning(
                "unsubscribe links use %s, which is not https: campaign mail carries "
                "List-Unsubscribe without one-click (List-Unsubscribe-Post needs https, RFC "
                "8058); set LEADFLOW_PUBLIC_URL to the API's https address",
                self.base_url,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> UnsubscribeLinks:
        return cls(
            base_url=unsubscribe_base(settings),
            secret_key=settings.secret_key.get_secret_value(),
        )

    def url(self, who: Unsubscribe) -> str:
        return f"{self.base_url}{ROUTE_PREFIX}{make_token(self._secret_key, who)}"
