"""``/healthz`` (the process answers, nothing else is asked) and ``/readyz`` (the database,
the cache and the broker answer; 503 naming what does not). The database-down case runs
against a throwaway PostgreSQL in tests/test_faults_readyz.py."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.faults import free_port


def test_healthz_answers_without_database_or_auth() -> None:
    # No django_db mark: any database access here would fail the test.
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_root_still_answers_ok() -> None:
    response = Client().get("/")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_readyz_is_ready_when_everything_answers() -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["down"] == []
    assert set(body["checks"]) == {"database", "cache", "broker"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db(transaction=True)
def test_readyz_names_an_unreachable_broker() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with override_settings(CELERY_BROKER_URL=closed):
        response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"]
    assert body["checks"]["database"]["ok"] and body["checks"]["cache"]["ok"]
    assert body["checks"]["broker"]["error"] == "ConnectionError"
    assert str(closed.split(":")[2]) not in response.content.decode()  # no host or port leaks
    assert response["Retry-After"]


@pytest.mark.django_db(transaction=True)
def test_readyz_names_an_unreachable_cache() -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    caches = {"default": {"BACKEND": "config.cache.ReusingRedisCache", "LOCATION": closed}}
    with override_settings(CACHES=caches):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["down"] == ["cache"]
