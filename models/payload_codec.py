"""Encryption of every Temporal payload (AES-256-GCM): what leads write, their names and phone
numbers reach the Temporal server, its database and its UI as ciphertext only.

`LEADFLOW_PAYLOAD_KEYS` holds one or more 32-byte keys (base64 or hex), comma-separated. The
first encrypts; every one decrypts, so a rotation puts a new key first and keeps the old ones
for the histories they wrote. A key's id is a fingerprint of the key itself, written into each
payload's metadata: nothing else to configure, and an id can never point at the wrong key.

An encrypted payload is the whole original Payload (metadata and data) serialised, then sealed:
`data` = 12-byte random nonce + ciphertext and tag; its metadata says only `binary/encrypted`
and the key id. Payloads without that encoding (histories written before encryption, the
recorded histories the replay tests use) pass through decoding unchanged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12


class PayloadKeyError(Exception):
    """The configured payload keys are malformed, or a payload cannot be decrypted with them."""


def parse_payload_keys(value: str) -> list[bytes]:
    """The keys of a `LEADFLOW_PAYLOAD_KEYS` value (or of the keys file: commas or new lines),
    the encrypting one first. A malformed key is an error naming its position, never its text."""
    parts = [part.strip() for part in value.replace("\n", ",").split(",")]
    keys: list[bytes] = []
    for position, text in enumerate((p for p in parts if p), start=1):
        key = _key_bytes(text)
        if key is None:
            raise PayloadKeyError(
                f"payload key #{position} is not {KEY_BYTES} bytes in base64 or hex "
                "(generate one with `python -c 'import os, base64; "
                "print(base64.b64encode(os.urandom(32)).decode())'`)"
            )
        keys.append(key)
    return keys


def _key_bytes(text: str) -> bytes | None:
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    padded = text + "=" * (-len(text) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(padded.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(key) == KEY_BYTES:
            return key
    return None


def new_payload_key() -> str:
    """A fresh random key in the form `LEADFLOW_PAYLOAD_KEYS` takes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The id written into the payloads a key encrypts: a fingerprint, not the key (64 bits of
    a domain-separated SHA-256 tell keys apart and reveal nothing of them)."""
    return hashlib.sha256(b"leadflow-payload-key-id:" + key).hexdigest()[:16]


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; several keys for a rotation. Without keys it encodes
    nothing (development mode: `leadflow api`/`worker` refuse to run so) and still passes plain
    payloads through, with a clear error for an encrypted one."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        # One AESGCM per key, built once: a payload costs one seal or open, nothing derived.
        self._ciphers: dict[bytes, AESGCM] = {}
        self._encrypting: tuple[bytes, AESGCM] | None = None
        for key in keys:
            if len(key) != KEY_BYTES:
                raise PayloadKeyError(f"a payload key must be {KEY_BYTES} bytes, not {len(key)}")
            ident = key_id(key).encode("ascii")
            cipher = self._ciphers.setdefault(ident, AESGCM(key))
            if self._encrypting is None:
                self._encrypting = (ident, cipher)

    @property
    def encrypting_key_id(self) -> str | None:
        return self._encrypting[0].decode() if self._encrypting else None

    @property
    def key_ids(self) -> list[str]:
        return [ident.decode() for ident in self._ciphers]

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self._encrypting is None:
            return list(payloads)
        ident, cipher = self._encrypting
        return [self._seal(payload, ident, cipher) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    @staticmethod
    def _seal(payload: Payload, ident: bytes, cipher: AESGCM) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        # The key id is authenticated too: a payload relabelled with another id fails to open.
        sealed = cipher.encrypt(nonce, payload.SerializeToString(), ident)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: ident}, data=nonce + sealed)

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        ident = payload.metadata.get(KEY_ID, b"")
        cipher = self._ciphers.get(ident)
        if cipher is None:
            shown = ident.decode("ascii", "replace") or "(none)"
            known = ", ".join(self.key_ids) or "none configured"
            raise PayloadKeyError(
                f"payload encrypted with key id {shown!r}, which is not among "
                f"LEADFLOW_PAYLOAD_KEYS (known ids: {known}); add the key that wrote it"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], ident)
        except (InvalidTag, ValueError) as exc:  # ValueError: no room for a nonce
            raise PayloadKeyError(
                f"payload with key id {ident.decode()!r} failed authentication: altered or "
                "truncated"
            ) from exc
        original = Payload()
        original.ParseFromString(plain)
        return original


@lru_cache(maxsize=8)
def codec_for(payload_keys: str) -> EncryptionCodec:
    """The codec of a `LEADFLOW_PAYLOAD_KEYS` value, built once per process and value."""
    return EncryptionCodec(parse_payload_keys(payload_keys))
