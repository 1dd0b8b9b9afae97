"""Signing secrets: made here, sealed at rest (``config.encryption``), never logged."""

from __future__ import annotations

import base64
import secrets

from config.encryption import seal, unseal

#: Random bytes in a new secret (the contract allows 24 to 64).
SECRET_BYTES = 32


def new_secret() -> str:
    """``whsec_`` + base64 of random bytes, as Standard Webhooks libraries expect."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def seal_secret(secret: str) -> str:
    return seal(secret)


def unseal_secret(sealed: str) -> str:
    return unseal(sealed)
