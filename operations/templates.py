"""Operation templates (contract section 12): typed parameters, ``{{name}}`` placeholders in
``arguments``, and the operation body a template and its values make.

One definition of a valid template and of a valid set of values, used by the API and the
console, so both refuse the same input with the same field and ``error_code``:

- a parameter is ``{"type": "string|integer|number|boolean", "default": ..., "required":
  bool, "description": "..."}``; its name is an identifier (letters, digits, ``_``);
- a string of ``arguments`` that is exactly ``"{{name}}"`` becomes the value with its type; a
  placeholder inside a longer string becomes the value's text (``true``/``false`` for a
  boolean, as JSON writes it); every placeholder must name a declared parameter;
- values: an unknown name is ``unknown_parameter``, a value of the wrong type
  ``invalid_parameter``, a required parameter not given ``missing_parameter`` (a default makes
  a parameter never missing); a parameter neither given nor defaulted is ``null`` where it
  stands alone and empty text inside a string.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from config.errors import DomainError
from operations.models import OperationTemplate

TYPES = ("string", "integer", "number", "boolean")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
#: The body's fields that override the template's, by the operation's field names.
OVERRIDABLE = (
    "operation_type",
    "arguments",
    "rollout",
    "schedule_type",
    "schedule_args",
    "operation_device_query",
    "target_selection",
)
#: Parameters a template may declare.
MAX_PARAMETERS = 50
_UNSET = object()


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    required: bool
    description: str

    @property
    def has_default(self) -> bool:
        return self.default is not _UNSET

    def check(self, value: Any, field: str) -> Any:
        """``value`` if it is of the parameter's type, else a 400 naming ``field``. A boolean is
        not a number (JSON says so, Python does not); an integral number is an integer."""
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
        }[self.type]
        if self.type == "integer" and isinstance(value, float) and value.is_integer():
            return int(value)
        if not ok:
            raise DomainError({field: [f"must be a {self.type}"]}, code="invalid_parameter")
        return value


def parse_parameters(raw: Any) -> dict[str, Parameter]:
    """``parameters`` as stored; a 400 naming ``parameters.<name>.<key>`` at the first fault."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DomainError({"parameters": ["must be an object of parameter names"]})
    if len(raw) > MAX_PARAMETERS:
        raise DomainError({"parameters": [f"at most {MAX_PARAMETERS} parameters"]})
    parsed: dict[str, Parameter] = {}
    for name, spec in raw.items():
        field = f"parameters.{name}"
        if not NAME.fullmatch(str(name)):
            raise DomainError({field: ["a name is letters, digits and _, not starting with a digit"]})
        if not isinstance(spec, dict):
            raise DomainError({field: ["must be an object with a type"]})
        unknown = sorted(set(spec) - {"type", "default", "required", "description"})
        if unknown:
            raise DomainError(
                {f"{field}.{unknown[0]}": ["unknown key; use type, default, required, description"]}
            )
        if spec.get("type") not in TYPES:
            raise DomainError({f"{field}.type": [f"must be one of {', '.join(TYPES)}"]})
        required = spec.get("required", False)
        if not isinstance(required, bool):
            raise DomainError({f"{field}.required": ["must be true or false"]})
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise DomainError({f"{field}.description": ["must be a string"]})
        parameter = Parameter(name, spec["type"], _UNSET, required, description)
        if "default" in spec and spec["default"] is not None:
            parameter = Parameter(
                name,
                spec["type"],
                parameter.check(spec["default"], f"{field}.default"),
                required,
                description,
            )
        parsed[name] = parameter
    return parsed


def placeholders(value: Any) -> set[str]:
    """Every parameter name a ``{{name}}`` of ``value``'s strings names."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(item) for item in value)) if value else set()
    return set()


def check_template(arguments: Any, parameters: dict[str, Parameter]) -> None:
    """Every placeholder of ``arguments`` names a declared parameter."""
    unknown = sorted(placeholders(arguments) - set(parameters))
    if unknown:
        raise DomainError(
            {"arguments": [f"{{{{{unknown[0]}}}}} names no parameter; declare it in parameters"]},
            code="unknown_parameter",
        )


def values_for(parameters: dict[str, Parameter], given: Any) -> dict[str, Any]:
    """The values an operation uses: those given, checked, and the defaults of the rest."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise DomainError({"template_parameters": ["must be an object of parameter values"]})
    for name in given:
        if name not in parameters:
            known = ", ".join(sorted(parameters)) or "none"
            raise DomainError(
                {f"template_parameters.{name}": [f"the template has no such parameter (it has: {known})"]},
                code="unknown_parameter",
            )
    values: dict[str, Any] = {}
    for name, parameter in parameters.items():
        field = f"template_parameters.{name}"
        if name in given and given[name] is not None:
            values[name] = parameter.check(given[name], field)
        elif parameter.has_default:
            values[name] = parameter.default
        elif parameter.required:
            raise DomainError({field: ["is required by the template"]}, code="missing_parameter")
        else:
            values[name] = None
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def render(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with its placeholders of ``values``' names replaced (see the module's
    docstring); a placeholder of another name stays as written."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(1) in values:
            return values[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            name = match.group(1)
            return _text(values[name]) if name in values else match.group(0)

        return PLACEHOLDER.sub(text, value)
    if isinstance(value, dict):
        return {key: render(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, values) for item in value]
    return value


def find(tenant_id: int, reference: Any) -> OperationTemplate:
    """The tenant's template by id or name; a 400 naming ``template`` when it has none such."""
    templates = OperationTemplate.objects.filter(tenant_id=tenant_id)
    found = None
    if isinstance(reference, str) and reference:
        try:
            found = templates.filter(pk=uuid.UUID(reference)).first()
        except ValueError:
            found = None
        found = found or templates.filter(name=reference).first()
    if found is None:
        raise DomainError({"template": ["no such template (give its id or name)"]}, code="not_found_template")
    return found


def expand(tenant_id: int, body: dict[str, Any]) -> tuple[dict[str, Any], OperationTemplate, dict[str, Any]]:
    """The operation body a template makes: its fields, then every field the body gives in
    their place, ``arguments`` rendered with the values. Returns it with the template and values."""
    template = find(tenant_id, body.get("template"))
    values = values_for(parse_parameters(template.parameters), body.get("template_parameters"))
    data: dict[str, Any] = {
        "operation_type": template.operation_type,
        "arguments": template.arguments,
    }
    for name, stored in (
        ("rollout", template.rollout),
        ("schedule_type", template.schedule_type),
        ("schedule_args", template.schedule_args),
        ("operation_device_query", template.device_query),
    ):
        if stored is not None:
            data[name] = stored
    for name in OVERRIDABLE:
        if name in body:
            data[name] = body[name]
    # Arguments given in the body fill the template's placeholders too (the console's form
    # sends the template's arguments as the operator left them).
    data["arguments"] = render(data["arguments"], values)
    return data, template, values
