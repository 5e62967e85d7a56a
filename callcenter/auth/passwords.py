"""Password hashing (argon2id, the library's tuned defaults) and new passwords."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# Verifying against this when the user does not exist costs the same time as a
# real check: response times do not tell which user names exist.
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))
_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)


def new_password(length: int = 16) -> str:
    """A random password without look-alike characters, printed once to the admin."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
