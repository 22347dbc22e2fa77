"""Encryption of OAuth tokens at rest.

Fernet (AES-128-CBC with HMAC-SHA256) from `cryptography`, wrapped in MultiFernet so
TOKEN_ENCRYPTION_KEY can hold several comma-separated keys: the first encrypts, all of
them decrypt. To rotate, put a new key first, keep the old one after it until every
token has been rewritten (each refresh rewrites one), then drop it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]):
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        """Raises `UndecryptableToken` when no configured key opens it."""
        try:
            return self._fernet.decrypt(bytes(ciphertext)).decode()
        except InvalidToken:
            raise UndecryptableToken(
                "a stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY (was the key changed?)"
            ) from None


class UndecryptableToken(Exception):
    pass
