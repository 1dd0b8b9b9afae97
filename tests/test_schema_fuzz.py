"""Schemathesis over the whole published OpenAPI document, in process (WSGI).

Every operation of ``/api/schema/`` gets generated requests with an admin key of a tenant
that has one of every object; each request is sent twice when its path has parameters: as
generated (mostly ids that do not exist), and with the ids of that tenant's objects. Every
answer must be no 5xx, have a documented status code and content type, and a body that
matches the schema.

The stateful phase follows the document's OpenAPI links (``config.api.schema.add_item_links``,
``maintenance.api.schema.add_job_links``): it creates devices, groups, operations, headless
operations and maintenance jobs and goes on with what each create answered (read, change,
rotate, cancel, delete, then read again), checking besides the above that a created object
can be found and a deleted one cannot (schemathesis' ``ensure_resource_availability`` and
``use_after_free``).

Bounded for CI: ``FUZZ_MAX_EXAMPLES`` examples per operation (default 15) and
``FUZZ_STATEFUL_EXAMPLES`` scenarios of up to ``FUZZ_STATEFUL_STEPS`` steps (default 80 and
8; with 50 the derandomized scenarios of the current document never created an operation
whose link they could follow): the whole file took about 60 s on an idle 2-core machine
(the stateful phase 17 s of it), and should stay under 3 minutes on a busy one.
"""

from __future__ import annotations

import os
import uuid
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
STATEFUL_EXAMPLES = int(os.environ.get("FUZZ_STATEFUL_EXAMPLES", "80"))
STATEFUL_STEPS = int(os.environ.get("FUZZ_STATEFUL_STEPS", "8"))

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
# The stateful phase follows the document's own links only: schemathesis' guesses (from
# names and Location headers) would test links the API never promised.
schema.config.phases.stateful.inference.algorithms = []
# No literals harvested from the project's source into the generated values: with them,
# every refactoring that adds, moves or renames a string constant anywhere in the code
# changes what the derandomized runs generate (moving the URLconf to server/ turned a passing
# stateful run into Hypothesis' FlakyStrategyDefinition). The inputs come from the document.
schema.config.analysis.constants.enabled = False


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


STATEFUL_CHECKS = [
    *CHECKS,
    schemathesis.checks.ensure_resource_availability,
    schemathesis.checks.use_after_free,
]
#: The creates whose links the stateful phase must have followed at least once: the path of
#: the create -> the path of its object's operations (those under it too) and its id parameter.
LINKED = {
    "/v0/devices/": ("/v0/devices/{id}/", "id"),
    "/v0/groups/": ("/v0/groups/{id}/", "id"),
    "/v0/operations/": ("/v0/operations/{id}/", "id"),
    "/v0/operation-templates/": ("/v0/operation-templates/{id}/", "id"),
    "/api/v1/inventory_device_headless_operation/": (
        "/api/v1/inventory_device_headless_operation/{id}/",
        "id",
    ),
    "/aggregates/maintenance/scheduler/jobs/orgId/{org_id}": (
        "/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{org_id}/jobId/{job_id}",
        "job_id",
    ),
}


#: What the document cannot say (a free-form device query, a Quartz expression) made valid in
#: the creates, so that they make something whose links can be followed.
VALID_ROOTS: dict[str, dict[str, Any]] = {
    "/v0/operations/": {"schedule_type": "IMMEDIATE"},
    "/aggregates/maintenance/scheduler/jobs/orgId/{org_id}": {"time_expression": "0 0 4 ? * *"},
}


def _objects() -> dict[type[Any], set[Any]]:
    from inventory.models import Device, Group
    from maintenance.models import MaintenanceJob
    from operations.models import HeadlessOperation, Operation, OperationTemplate

    models = (HeadlessOperation, Operation, OperationTemplate, MaintenanceJob, Device, Group)
    return {model: set(model.objects.values_list("pk", flat=True)) for model in models}


def _remove_all_but(baseline: dict[type[Any], set[Any]]) -> None:
    """Back to the world each scenario started from: Hypothesis replays the draws that led to
    an answer and must get the same answer again (a second create of the same device id
    would be a 400, and the run a ``FlakyStrategyDefinition``)."""
    from maintenance.services import delete_job

    for model, kept in baseline.items():
        made = model.objects.exclude(pk__in=kept)
        if model.__name__ == "MaintenanceJob":
            for job in made:
                delete_job(job)
        else:
            made.delete()


def _created_id(body: Any) -> str | None:
    """The id in a create's answer: in the envelope's content, at the top, or in the
    maintenance API's ``response``."""
    if not isinstance(body, dict):
        return None
    if "response" in body:  # the maintenance API's own envelope
        return (body.get("response") or {}).get("job_id")
    found = body.get("content", body)
    return str(found["id"]) if isinstance(found, dict) and "id" in found else None


def test_links_lead_from_each_create_to_its_object(world: World) -> None:
    """The stateful phase: sequences along the OpenAPI links, with the tenant's admin key.

    Creates get what the document cannot describe valid (the tenant's ``org_id``, a device of
    it, a device query, a Quartz expression: ``VALID_ROOTS``), so that they make something
    and their links can be followed; the stateless test fuzzes those values. Every create of
    ``LINKED`` must have been followed by a successful request on the object it made: links
    that lead nowhere fail the test. Each scenario starts from the same world
    (``_remove_all_but``).
    """
    headers = _auth(world)
    created: dict[str, set[str]] = {path: set() for path in LINKED}
    followed: dict[str, int] = dict.fromkeys(LINKED, 0)

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            self.baseline = _objects()

        def teardown(self) -> None:
            _remove_all_but(self.baseline)
            super().teardown()

        def before_call(self, case: Any) -> None:
            # The tenant's admin key, whatever header the generator made (its own bearer
            # tokens only ever answer 401, and a scenario spent on them follows no link).
            case.headers = {**(case.headers or {}), **headers}
            if "Idempotency-Key" in case.headers:
                # A new key each time: a generated key used again (scenarios start from the same
                # world, and Hypothesis draws the same values) replays an answer about an object
                # the scenario has since deleted. Right for the API (tests/test_idempotency.py),
                # but ST302 ("created resource not found") to this check.
                case.headers["Idempotency-Key"] = str(uuid.uuid4())
            if case.method.upper() == "PATCH" and isinstance(case.body, dict):
                # A PATCH that renames the object (a device's ``device_id`` is its id in the
                # URL) leaves the link's id pointing at nothing: a 404 that is right, but
                # ST302 to this check. Renames are fuzzed by the stateless test.
                case.body.pop("device_id", None)
            if "org_id" in (case.path_parameters or {}):
                case.path_parameters["org_id"] = world.org.tenant.slug
            if isinstance(case.body, dict) and case.method.upper() == "POST":
                case.body.update(VALID_ROOTS.get(case.path, {}))
                if case.path == "/api/v1/inventory_device_headless_operation/":
                    case.body["device_id"] = world.device.device.device_id
                if case.path == "/v0/operations/":
                    case.body["operation_device_query"] = {"devices": [world.device.device.device_id]}
                    # A generated template name is one the tenant has not: made from no template.
                    case.body.pop("template", None)
                    case.body.pop("template_parameters", None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            if not 200 <= response.status_code < 300:
                return
            if case.method.upper() == "POST" and case.path in LINKED:
                made = _created_id(response.json())
                if made is not None:
                    created[case.path].add(made)
            for create, (item, name) in LINKED.items():
                value = (case.path_parameters or {}).get(name)
                if case.path.startswith(item) and value in created[create]:
                    followed[create] += 1

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(
                response, checks=STATEFUL_CHECKS, transport_kwargs=kwargs or None, recorder=self.recorder
            )

    Links.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],
            derandomize=True,
        )
    )

    assert all(followed.values()), {"followed": followed, "created": created}
