"""OpenAPI: the bearer scheme and the envelopes, documented once for every endpoint, and the
links from each create to the operations on what it made."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from config.api import idempotency
from config.api.envelopes import DEFAULT_ENVELOPE, Envelope


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "inventory.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`dok_…`, role admin, operator or viewer) or a device token "
            "(`ddt_…`, which reaches only that device's inbox and command statuses).",
        }


ERROR_DESCRIPTIONS = {
    "400": "Invalid input: the body, a parameter or the query names the field at fault.",
    "401": "Missing, unknown, revoked or expired token.",
    "403": "The key's role may not do this, or a device token reached beyond its device.",
    "404": "No such object in the caller's tenant.",
    "409": "The object changed since the version the request expected.",
    "413": "The request body is larger than API_MAX_BODY_MB.",
    "415": "The body is not application/json.",
    "429": "Too many requests with this token, or failed token checks from this address, this "
    "minute; see Retry-After.",
    "503": "The database is unavailable; retry after Retry-After.",
}
_BODY_METHODS = {"POST", "PUT", "PATCH"}

#: What every POST answers for its key (config.api.idempotency, docs/idempotency.md).
IDEMPOTENCY_DESCRIPTIONS = {
    "409": "A request with the same Idempotency-Key is still running; retry after Retry-After.",
    "422": "The Idempotency-Key was used for another request (another method, path or body).",
}
IDEMPOTENCY_PARAMETERS = [
    OpenApiParameter(
        idempotency.HEADER,
        str,
        location=OpenApiParameter.HEADER,
        required=False,
        # What reaches the server: HTTP drops spaces at either end of a header's value.
        pattern=r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$",
        description="Makes the POST safe to retry: 1 to 255 printable ASCII characters, unique per "
        "request (a UUID). A 2xx answer is kept for IDEMPOTENCY_TTL_HOURS (24 h) and answered again "
        "to the same key, method, path and body, with `Idempotent-Replayed: true`, without doing "
        "anything again. Per tenant. See docs/idempotency.md.",
    ),
    OpenApiParameter(
        idempotency.REPLAYED_HEADER,
        str,
        location=OpenApiParameter.HEADER,
        enum=["true"],
        response=["200", "201", "202"],
        description="`true` when this is the kept answer of an earlier request with the same "
        "Idempotency-Key; absent otherwise.",
    ),
]


class EnvelopedAutoSchema(AutoSchema):
    """Describes what :class:`config.api.views.ApiViewMixin` sends: each success body in the
    view's envelope, and every error a request can meet in the envelope's error shape.

    A response whose serializer already has ``code`` and ``message`` is enveloped by its
    view (``response.enveloped``) and described as it is.
    """

    def _envelope(self) -> Envelope:
        return getattr(self.view, "envelope", DEFAULT_ENVELOPE)

    def get_override_parameters(self) -> list[Any]:
        """Every POST takes an ``Idempotency-Key`` and may answer ``Idempotent-Replayed``."""
        parameters = list(super().get_override_parameters())
        if self.method == "POST":
            parameters.extend(IDEMPOTENCY_PARAMETERS)
        return parameters

    def _get_response_for_code(
        self, serializer: Any, status_code: str, media_types: Any = None, direction: Any = "response"
    ) -> dict[str, Any]:
        response: dict[str, Any] = super()._get_response_for_code(
            serializer, status_code, media_types, direction
        )
        if not ("200" <= status_code < "300") or _is_enveloped(serializer):
            return response
        for media in response.get("content", {}).values():
            media["schema"] = self._envelope().success_schema(media["schema"])
        return response

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        envelope = self._envelope()
        component = ResolvedComponent(
            name=envelope.error_component,
            type=ResolvedComponent.SCHEMA,
            schema=envelope.error_schema(),
            object=envelope.error_component,
        )
        self.registry.register_on_missing(component)
        codes = ["400", "401", "403", "429", "503"]
        if "{" in self.path:
            codes.append("404")
        if self.method in _BODY_METHODS:
            codes.extend(["413", "415"])
        if self.method == "POST":
            codes.extend(IDEMPOTENCY_DESCRIPTIONS)
        codes.extend(code for code in responses if code >= "400")
        for code in sorted(set(codes)):
            described = responses.setdefault(code, {"description": ""})
            if not described.get("description"):
                described["description"] = ERROR_DESCRIPTIONS.get(code, "")
            if self.method == "POST" and code in IDEMPOTENCY_DESCRIPTIONS:
                own = described["description"]
                idempotent = IDEMPOTENCY_DESCRIPTIONS[code]
                described["description"] = (
                    f"{own} Or {idempotent[0].lower()}{idempotent[1:]}" if own else idempotent
                )
            described["content"] = {"application/json": {"schema": component.ref}}
        return responses


def _is_enveloped(serializer: Any) -> bool:
    if isinstance(serializer, OpenApiResponse):
        serializer = serializer.response
    if not isinstance(serializer, serializers.Serializer):
        return False
    fields: Any = serializer.fields
    return "code" in fields and "message" in fields


def add_item_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """OpenAPI links from each create to what can be done with what it made, and from each
    operation on an object to the others on the same object.

    For every ``POST`` on a collection path (``/v0/devices/``) whose success body has an ``id``
    (in the envelope's ``content``, or at the top): a link to every operation on the paths
    under it that take that id first (``/v0/devices/{id}/``, ``/v0/devices/{id}/rotate-token/``).
    From every success of those operations: a link to each of the others, with the same id
    (so a GET after a DELETE is a link too). Each link is named by its target's
    ``operationId``. Clients (and Swagger UI) learn from them how to follow a create;
    schemathesis' stateful phase chains requests along them (tests/test_schema_fuzz.py). Paths
    that fit no such pattern add their own links in their own hooks (``maintenance.api.schema``).
    """
    paths = result.get("paths", {})
    schemas = result.get("components", {}).get("schemas", {})
    for collection, operations in paths.items():
        create = operations.get("post")
        if "{" in collection or create is None:
            continue
        items = [
            (path, match.group(1), method, target)
            for path, targets in paths.items()
            if (match := re.match(re.escape(collection) + r"\{(\w+)\}/", path))
            for method, target in targets.items()
            if isinstance(target, dict) and "operationId" in target
        ]
        for status, response in create.get("responses", {}).items():
            pointer = _id_pointer(response, schemas) if status.startswith("2") else None
            if pointer is not None:
                _link(response, items, f"$response.body#{pointer}")
        for *_, operation in items:
            others = [item for item in items if item[3] is not operation]
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2"):
                    _link(response, others, "$request.path.{name}")
    return result


def _link(response: dict[str, Any], targets: list[tuple[str, str, str, Any]], value: str) -> None:
    """Links to ``targets`` (path, parameter name, method, operation), passing ``value``
    (a runtime expression; ``{name}`` is the parameter's name) as their parameter."""
    links = response.setdefault("links", {})
    for path, name, method, target in targets:
        links[target["operationId"]] = {
            "operationId": target["operationId"],
            "parameters": {name: value.format(name=name)},
            "description": f"The same object, for {method.upper()} {path}.",
        }


def _id_pointer(response: dict[str, Any], schemas: dict[str, Any]) -> str | None:
    """``/content/id`` or ``/id``: where a JSON success body carries the new object's id."""
    body = response.get("content", {}).get("application/json", {}).get("schema")
    if body is None:
        return None
    body = _resolve(body, schemas)
    content = body.get("properties", {}).get("content")
    if content is not None and "id" in _resolve(content, schemas).get("properties", {}):
        return "/content/id"
    return "/id" if "id" in body.get("properties", {}) else None


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return dict(schemas.get(ref.rsplit("/", 1)[1], {}))
    return schema


#: The API's resources as Swagger UI groups them: (tag, what it holds, the paths it covers).
#: One table, applied by :func:`tag_by_resource` to every path, those that postprocessing hooks
#: add included (the inbox): drf-spectacular's default, the first URL segment, put 29 endpoints
#: under "v0". Order is the order of the page. Only paths are read here (config imports no app).
RESOURCE_TAGS: list[tuple[str, str, re.Pattern[str]]] = [
    (
        "Devices",
        "A tenant's devices: create, import in bulk, edit, search; each device's token.",
        re.compile(r"^/v0/devices/"),
    ),
    ("Groups", "Named sets of devices an operation's query can target.", re.compile(r"^/v0/groups/")),
    (
        "Operations",
        "Work fanned out to devices as command statuses: create (immediate, windowed, "
        "continuous, recurring, with a rollout), preview the devices a query picks, pause, "
        "resume, cancel, close, re-run the failed devices.",
        re.compile(r"^/v0/operations/(?!\{id\}/(?:approve|deny)/)"),
    ),
    (
        "Approvals",
        "Four eyes for destructive work: the tenant's policy, and an operation's approval or denial "
        "by a second admin (docs/approvals.md).",
        re.compile(r"^/v0/(?:approval-policy/|operations/\{id\}/(?:approve|deny)/)"),
    ),
    (
        "Templates",
        "Operation templates: a saved operation with parameters, to create operations from.",
        re.compile(r"^/v0/operation-templates/"),
    ),
    (
        "Command statuses",
        "One row per device and operation: its state and history; devices report their progress here.",
        re.compile(r"^/commands/v0/status/"),
    ),
    (
        "Inbox",
        "What a device polls for: its next commands, with a 304 while nothing changed.",
        re.compile(r"^/v2/command-inbox/"),
    ),
    (
        "MQTT",
        "A device's own broker login for the MQTT channel: push notifies, inbox/get and updates "
        "over MQTT (docs/mqtt.md).",
        re.compile(r"^/v2/mqtt-credentials/"),
    ),
    (
        "Headless",
        "Headless operations: one named task for one device (firmware_update, backup_configuration, "
        "...), run by the server at a given time through the device's inbox.",
        re.compile(r"^/api/v1/inventory_device_headless_operation/"),
    ),
    (
        "Maintenance",
        "Maintenance schedules: jobs that create operations on a Quartz schedule.",
        re.compile(r"^/(?:aggregates/maintenance|api/1\.0/aggregates/maintenance-schedule)/"),
    ),
    (
        "Webhooks",
        "Endpoints that receive the tenant's events (Standard Webhooks), their deliveries, "
        "redelivery, ping and secret rotation.",
        re.compile(r"^/v0/webhooks/"),
    ),
]
#: The tag of a path no entry covers (tests/test_api_docs.py keeps it unused).
OTHER_TAG = "Other"


def resource_tag(path: str) -> str:
    return next((tag for tag, _, pattern in RESOURCE_TAGS if pattern.search(path)), OTHER_TAG)


def tag_by_resource(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Tag every operation of the schema by its resource (:data:`RESOURCE_TAGS`) and list
    the tags, with their descriptions, in the table's order. Runs last of the hooks."""
    used = set()
    for path, methods in result.get("paths", {}).items():
        tag = resource_tag(path)
        for operation in methods.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["tags"] = [tag]
                used.add(tag)
    result["tags"] = [
        {"name": tag, "description": description} for tag, description, _ in RESOURCE_TAGS if tag in used
    ]
    if OTHER_TAG in used:
        result["tags"].append({"name": OTHER_TAG, "description": "Endpoints of no resource above."})
    return result
