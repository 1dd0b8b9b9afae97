"""Content-Security-Policy on the console and the docs pages (issue 12, item 10; django-csp).

Scripts only from the server itself: no inline script, no ``eval``, no other host, so an
injected ``<script>`` or ``onclick=`` does not run. That the console's and Swagger UI's own
scripts work under it is checked in a real browser (tests/test_console_browser.py, which fails
on any violation the browser reports).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.conftest import DeviceActor, Org


def policy(response: Any) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.wsgi_request.path}"
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def assert_strict_scripts(response: Any) -> None:
    directives = policy(response)
    scripts = directives.get("script-src", directives["default-src"])
    assert scripts == ["'self'"], scripts
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/operations/operation/",
        "/admin/operations/operation/add/",
        "/admin/inventory/device/",
    ],
)
def test_console_pages_carry_the_policy(console: Client, path: str) -> None:
    response = console.get(path)

    assert response.status_code == 200
    assert_strict_scripts(response)


@pytest.mark.django_db
def test_the_login_page_carries_the_policy() -> None:
    assert_strict_scripts(Client().get("/admin/login/"))


def test_the_docs_page_carries_the_policy_and_has_no_inline_script() -> None:
    response = Client().get("/api/docs/")

    assert_strict_scripts(response)
    html = response.content.decode()
    assert "<script>" not in html  # Swagger UI's start-up script is a file of its own
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200 and "javascript" in script["Content-Type"]
    assert b"SwaggerUIBundle(" in script.content


def test_json_answers_skip_it(org: Org, device: DeviceActor) -> None:
    """A policy governs a document; building it costs ~50 µs, a tenth of an inbox 304."""
    assert "Content-Security-Policy" not in org.admin.get("/v0/devices/")
    first = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"})
    assert "Content-Security-Policy" not in first
    again = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and "Content-Security-Policy" not in again
