"""The project's own errors: what a service raises when it refuses to do something.

Services speak the domain's language, not the HTTP library's: they raise these, naming the
field at fault and the reason, and each way in translates them in one place, the API in
``config.api.exceptions.exception_handler`` (a 4xx in the view's envelope) and the console
in ``config.console.errors`` (messages on the page).

Each refusal also carries a ``code``: a short snake_case word a program can branch on
(``invalid_transition``, ``stale_version``, ``not_found_device``), where the message is for
people and may be reworded. The API shows it as the error envelope's ``error_code``
(docs/errors.md lists them); a raise site that says nothing more specific leaves the class's
default, ``invalid`` or ``conflict``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class DomainError(Exception):
    """A refusal: ``errors`` maps each field at fault to its reasons. The API answers 400."""

    status = 400
    #: The machine-readable reason when the raise site names none.
    code = "invalid"

    def __init__(
        self,
        errors: Mapping[str, Sequence[str] | str] | str,
        field: str = "detail",
        *,
        code: str | None = None,
    ) -> None:
        if isinstance(errors, str):
            errors = {field: [errors]}
        self.errors: dict[str, list[str]] = {
            name: [reasons] if isinstance(reasons, str) else [str(reason) for reason in reasons]
            for name, reasons in errors.items()
        }
        if code is not None:
            self.code = code
        super().__init__("; ".join(self.messages()))

    def messages(self) -> list[str]:
        """Every reason as ``field: reason`` (the reason alone for ``detail``)."""
        return [
            reason if name in ("detail", "non_field_errors") else f"{name}: {reason}"
            for name, reasons in self.errors.items()
            for reason in reasons
        ]


class Conflict(DomainError):
    """Someone else changed the object first (a stale version), or the request clashes with
    an object that exists (a device id taken). The API answers 409."""

    status = 409
    code = "conflict"


class Forbidden(DomainError):
    """The caller may not do this, for a reason worth saying (the requester of an operation
    deciding on it). The API answers 403."""

    status = 403
    code = "permission_denied"


class CacheUnavailable(Exception):
    """The shared cache (Redis) cannot be reached: refused, dropped or timed out.

    The cache backend (``config.cache``) raises it in place of the client library's errors, so
    no code above names redis-py, and a caller that can go on without the cache catches this
    one class (the token lookup reads PostgreSQL instead, the inbox answers without its 304).
    Anything else answers 503 with ``Retry-After`` (``error_code`` ``cache_unavailable``),
    translated where a database outage is: ``config.api.exceptions`` for the API's views,
    ``config.api.unavailable`` for plain views, middleware and the console. Not a
    :class:`DomainError`: nothing is wrong with the request, and it may be tried again.
    """

    code = "cache_unavailable"
