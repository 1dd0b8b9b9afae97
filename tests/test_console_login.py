"""Brute force on the console's login (issue 12, item 5): django-axes locks a username out from a
client address (the pair, issue 23 item 9) after ``CONSOLE_LOGIN_FAILURE_LIMIT`` failures, for
``CONSOLE_LOGIN_COOLOFF_MINUTES``.

Before: 30 wrong passwords in 8 s were all answered 200, and the right one worked at once. Then,
locked per username alone, anyone who knew a username kept its owner out from every address.
The tests post to the real admin login with Django's test client.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def operator(db: None) -> User:
    return User.objects.create_superuser("root", "", "right-password")


def login(username: str, password: str, address: str = "192.0.2.1", **extra: Any) -> Any:
    """One login attempt from a fresh browser (no session) at ``address``."""
    return Client(REMOTE_ADDR=address, **extra).post(LOGIN, {"username": username, "password": password})


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_the_settings_are_the_documented_defaults() -> None:
    assert settings.AXES_FAILURE_LIMIT == settings.CONSOLE_LOGIN_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 60 * settings.CONSOLE_LOGIN_COOLOFF_MINUTES
    assert settings.CONSOLE_LOGIN_COOLOFF_MINUTES == 15
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_thirty_wrong_passwords_lock_the_user_out_and_the_right_one_is_refused(operator: User) -> None:
    answers = [login("root", f"guess-{n}").status_code for n in range(30)]

    assert answers[:4] == [200] * 4  # the form again, "enter a correct username and password"
    assert set(answers[4:]) == {429}  # the 5th failure locks
    locked = login("root", "right-password")
    assert locked.status_code == 429 and not logged_in(locked)
    assert b"too many failed login attempts" in locked.content
    assert "_auth_user_id" not in locked.wsgi_request.session


def test_failures_from_one_address_do_not_lock_the_user_out_from_another(operator: User) -> None:
    answers = [login("root", "wrong", address="198.51.100.66").status_code for _ in range(10)]

    assert answers[4:] == [429] * 6  # the guesser's address is locked for root
    assert login("root", "right-password", address="198.51.100.66").status_code == 429
    assert logged_in(login("root", "right-password", address="203.0.113.50"))


def test_failures_spread_over_addresses_lock_no_one(operator: User) -> None:
    for n in range(20):
        assert login("root", "wrong", address=f"198.51.100.{n}").status_code == 200

    assert logged_in(login("root", "right-password", address="203.0.113.50"))


def test_one_users_failures_do_not_lock_other_users_at_the_same_address(operator: User) -> None:
    User.objects.create_superuser("other", "", "other-password")
    for _ in range(5):
        login("root", "wrong", address="198.51.100.7")  # an office behind one NAT address

    assert login("root", "right-password", address="198.51.100.7").status_code == 429
    assert logged_in(login("other", "other-password", address="198.51.100.7"))


def test_the_lockout_ends_after_the_cool_off(operator: User, settings: Any) -> None:
    from axes.models import AccessAttempt

    for _ in range(5):
        login("root", "wrong")
    assert login("root", "right-password").status_code == 429

    past = dt.timedelta(minutes=settings.CONSOLE_LOGIN_COOLOFF_MINUTES, seconds=1)
    for attempt in AccessAttempt.objects.all():
        AccessAttempt.objects.filter(pk=attempt.pk).update(attempt_time=attempt.attempt_time - past)
    assert logged_in(login("root", "right-password"))


def test_a_success_before_the_limit_forgets_the_failures(operator: User) -> None:
    for _ in range(4):
        login("root", "wrong")
    assert logged_in(login("root", "right-password"))

    for _ in range(4):
        assert login("root", "wrong").status_code == 200
    assert logged_in(login("root", "right-password"))


def test_behind_a_proxy_the_forwarded_address_is_locked_not_the_proxy(operator: User, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.9"
    for _ in range(5):
        login("root", "wrong", address=proxy, HTTP_X_FORWARDED_FOR="spoofed, 198.51.100.20")

    locked = login("root", "right-password", address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert locked.status_code == 429
    assert logged_in(login("root", "right-password", address=proxy, HTTP_X_FORWARDED_FOR="198.51.100.21"))
