"""The successor pair of a rotated refresh token, sealed so only its parent's holder can open it.

A retry of a refresh inside the grace window must get the pair the first request got (one live
chain per refresh token), so the pair has to outlive the request. It is sealed with AES-256-GCM
under a key derived (HKDF-SHA256) from the parent refresh token itself. The store keeps only
SHA-256 of that token, so the database alone, or with the key-encryption key, cannot open the
pair; the one who can is whoever presents the parent token, who is exactly the caller entitled to
the retry. Kept in the store rather than in memory so a retry landing on another worker process
gets the same answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_INFO = b"chittyauth/refresh-successor/v1"
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class SuccessorPair:
    """What one rotation answered: the new refresh token and the access token issued with it."""

    refresh_token: str
    access_token: str


def _key(parent_token: str) -> bytes:
    # A fresh HKDF per call: it is single-use by design.
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return kdf.derive(parent_token.encode("utf-8"))


def seal(parent_token: str, pair: SuccessorPair) -> bytes:
    """``pair`` sealed under a key only ``parent_token`` yields (version, nonce, ciphertext)."""
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps({"r": pair.refresh_token, "a": pair.access_token}).encode("utf-8")
    return _VERSION + nonce + AESGCM(_key(parent_token)).encrypt(nonce, plain, _VERSION)


def open_sealed(parent_token: str, sealed: bytes) -> SuccessorPair | None:
    """The pair sealed by ``seal(parent_token, ...)``; None when it does not open."""
    if len(sealed) <= 1 + _NONCE_BYTES or sealed[:1] != _VERSION:
        return None
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        plain = AESGCM(_key(parent_token)).decrypt(nonce, body, _VERSION)
        fields = json.loads(plain)
        return SuccessorPair(str(fields["r"]), str(fields["a"]))
    except (InvalidTag, ValueError, KeyError, TypeError):
        return None
