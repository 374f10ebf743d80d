"""Symmetric encryption of stored credentials with a key derived from `LEADFLOW_SECRET_KEY`."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class CredentialsError(Exception):
    """Stored credentials cannot be decrypted with the configured secret key."""


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"leadflow-credentials:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_json(secret_key: str, value: dict[str, Any]) -> str:
    return _fernet(secret_key).encrypt(json.dumps(value).encode()).decode()


def decrypt_json(secret_key: str, token: str) -> dict[str, Any]:
    if not token:
        return {}
    try:
        raw = _fernet(secret_key).decrypt(token.encode())
    except InvalidToken as exc:
        raise CredentialsError(
            "stored credentials cannot be decrypted: LEADFLOW_SECRET_KEY changed?"
        ) from exc
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value
