"""Secrets kept at rest are sealed, and every configured key opens them (config/encryption.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from config import encryption


@pytest.fixture(autouse=True)
def fresh_keys() -> Iterator[None]:
    encryption.forget_keys()
    yield
    encryption.forget_keys()


def test_sealed_text_hides_the_secret_and_opens_again() -> None:
    sealed = encryption.seal("whsec_c2VjcmV0")
    assert sealed.startswith(encryption.PREFIX)
    assert "whsec_" not in sealed and "c2VjcmV0" not in sealed
    assert encryption.unseal(sealed) == "whsec_c2VjcmV0"


def test_a_rotated_key_still_opens_old_values_and_reseals_them() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[old]):
        sealed = encryption.seal("dt_token")
    encryption.forget_keys()
    with override_settings(ENCRYPTION_KEYS=[new, old]):
        assert encryption.unseal(sealed) == "dt_token"
        moved = encryption.reseal(sealed)
    encryption.forget_keys()
    with override_settings(ENCRYPTION_KEYS=[new]):
        assert encryption.unseal(moved) == "dt_token"
        with pytest.raises(encryption.Unreadable):
            encryption.unseal(sealed)


def test_tampered_or_plain_values_are_unreadable() -> None:
    sealed = encryption.seal("secret")
    with pytest.raises(encryption.Unreadable):
        encryption.unseal(sealed[:-4] + "AAAA")
    with pytest.raises(encryption.Unreadable):
        encryption.unseal("secret")


def test_a_malformed_key_is_a_configuration_error_naming_the_setting() -> None:
    with (
        override_settings(ENCRYPTION_KEYS=["not-a-key"]),
        pytest.raises(ImproperlyConfigured, match="ENCRYPTION_KEYS"),
    ):
        encryption.seal("x")
