"""Schemathesis over the whole published OpenAPI document, in process (WSGI).

Every operation of ``/api/schema/`` gets generated requests with an admin key of a tenant
that has one of every object; each request is sent twice when its path has parameters: as
generated (mostly ids that do not exist), and with the ids of that tenant's objects. Every
answer must be no 5xx, have a documented status code and content type, and a body that
matches the schema.

Bounded for CI: ``FUZZ_MAX_EXAMPLES`` examples per operation (default 15) and per stateful
about a minute and a half on the CI machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase

from config.wsgi import application
from tests.conftest import Org
from tests.world import World, build_world, fill, path_parameters

pytestmark = pytest.mark.fuzz

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "15"))

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def world(transactional_db: None, org: Org, other_org: Org, settings: Any) -> Iterator[World]:
    """Committed data and autocommit requests, as in production: a request that fails in the
    database (a 400 for a value out of range) must not poison the next one's transaction."""
    settings.RATE_LIMIT_KEY_PER_MINUTE = 0  # thousands of requests with one key
    build_world(other_org, prefix="other")  # so a leak would show in the answers
    # As Django's test client does: the end of a request must not close the connection
    # that holds the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield build_world(org)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Loaded at collection: making the document needs no database. (A lazy schema from a fixture,
# ``schemathesis.pytest.from_fixture``, fails on pytest 9 in schemathesis 4.32.)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


def _auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.org.admin.token}"}


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    derandomize=True,
)
def test_every_operation_answers_as_documented(case: Any, world: World) -> None:
    headers = _auth(world)
    case.call_and_validate(headers=headers, checks=CHECKS)
    if case.path_parameters:
        known = path_parameters(case.path, world)
        real = case.operation.Case(
            path_parameters=known,
            query=case.query,
            body=case.body,
            headers=case.headers,
            media_type=case.media_type,
        )
        real.call_and_validate(headers=headers, checks=CHECKS)


def test_every_path_of_the_schema_can_be_filled(world: World) -> None:
    """Fails for a new path that tests/world.py does not know how to fill (see its _FILLERS)."""
    for path in schema.raw_schema["paths"]:
        assert "{" not in fill(path, path_parameters(path, world)), path
