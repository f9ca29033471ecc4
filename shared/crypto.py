"""Encryption at rest for agent secrets and sessions (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Seals a name -> value mapping into one ciphertext, and opens it again."""

    def __init__(self, secret_key: str) -> None:
        # Any operator string becomes a valid Fernet key via SHA-256.
        digest = hashlib.sha256(b"outrider-agent-secrets:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secrets: dict[str, str]) -> bytes:
        """Encrypt the mapping."""
        return self._fernet.encrypt(json.dumps(secrets).encode())

    def open(self, ciphertext: bytes | None) -> dict[str, str]:
        """Decrypt a mapping sealed with the same key; empty for None."""
        if not ciphertext:
            return {}
        try:
            data: dict[str, str] = json.loads(self._fernet.decrypt(ciphertext))
        except InvalidToken as exc:
            raise RuntimeError(
                "Agent secrets cannot be decrypted: OUTRIDER_SECRET_KEY changed?"
            ) from exc
        return data

    def seal_json(self, value: Any) -> bytes:
        """Encrypt any JSON value (a session's state)."""
        return self._fernet.encrypt(json.dumps(value, separators=(",", ":")).encode())

    def open_json(self, ciphertext: bytes) -> Any:
        """Decrypt a value sealed with `seal_json` and the same key."""
        try:
            return json.loads(self._fernet.decrypt(ciphertext))
        except InvalidToken as exc:
            raise RuntimeError(
                "A session cannot be decrypted: OUTRIDER_SECRET_KEY changed?"
            ) from exc
