"""Symmetric encryption of stored credentials with keys derived from `LEADFLOW_SECRET_KEY`.

`LEADFLOW_SECRET_KEY` may hold several keys separated by commas (MultiFernet): the first one
encrypts, every one decrypts. To rotate, put the new key first, run `leadflow secrets rotate`
(re-encrypts every stored blob with it), then drop the old key."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialsError(Exception):
    """Stored credentials cannot be decrypted with the configured secret key."""


def secret_keys(secret_key: str) -> list[str]:
    """The keys a `LEADFLOW_SECRET_KEY` value holds, the encrypting one first."""
    keys = [part.strip() for part in secret_key.split(",")]
    return [key for key in keys if key]


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"leadflow-credentials:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@lru_cache(maxsize=8)
def _multi_fernet(secret_key: str) -> MultiFernet:
    # Cached: deriving the keys on every decryption of a webhook's tenant settings is waste.
    keys = secret_keys(secret_key)
    if not keys:
        raise CredentialsError("LEADFLOW_SECRET_KEY is empty")
    return MultiFernet([_fernet(key) for key in keys])


def encrypt_json(secret_key: str, value: dict[str, Any]) -> str:
    return _multi_fernet(secret_key).encrypt(json.dumps(value).encode()).decode()


def _no_key_fits() -> CredentialsError:
    return CredentialsError("stored credentials cannot be decrypted: LEADFLOW_SECRET_KEY changed?")


def decrypt_json(secret_key: str, token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        raw = _multi_fernet(secret_key).decrypt(token.encode())
    except InvalidToken as exc:
        raise _no_key_fits() from exc
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


def reencrypt(secret_key: str, token: str) -> str:
    """`token` encrypted again with the first key (decrypted with any); empty stays empty."""
    if not token:
        return token
    try:
        return _multi_fernet(secret_key).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise _no_key_fits() from exc
