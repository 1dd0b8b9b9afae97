"""404s: a path no view matches answers the API's JSON 404 with DEBUG on as well as off, and
no 404 names a model (issue 12, item 11 c and d)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Api, Org
from tests.helpers import error

UNMATCHED = ["/nowhere/", "/v0/nothing-here/", "/commands/v0/status/abc/", "/v2/command-inbox/x/"]


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
@pytest.mark.parametrize("path", UNMATCHED)
def test_an_unmatched_path_is_the_json_404_whatever_debug_says(
    org: Org, settings: Any, debug: bool, path: str
) -> None:
    settings.DEBUG = debug

    for response in (org.admin.get(path), org.admin.post(path, {}), org.admin.delete(path)):
        assert response["Content-Type"] == "application/json"
        assert error(response, 404)["message"] == "Not found."


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
def test_a_missing_trailing_slash_still_redirects(org: Org, settings: Any, debug: bool) -> None:
    """APPEND_SLASH (CommonMiddleware) answers a 404 of a path whose slashed twin exists."""
    settings.DEBUG = debug

    response = org.admin.get("/v0/devices")

    assert response.status_code == 301
    assert response["Location"] == "/v0/devices/"


@pytest.mark.parametrize("debug", [False, True], ids=["DEBUG off", "DEBUG on"])
def test_the_console_keeps_its_html_404(console: Any, settings: Any, debug: bool) -> None:
    settings.DEBUG = debug

    response = console.get("/admin/no/such/page/")

    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]


def _ids(kind: str) -> str:
    return {"int": "999999999", "uuid": str(uuid.uuid4()), "text": "op_missing"}[kind]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/commands/v0/status/{}/", "int"),
        ("/v0/devices/{}/", "text"),
        ("/v0/groups/{}/", "uuid"),
        ("/v0/webhooks/{}/", "uuid"),
        ("/v0/operations/{}/", "uuid"),
        ("/api/v1/inventory_device_headless_operation/{}/", "text"),
    ],
)
def test_a_404_names_no_model(org: Org, path: str, kind: str) -> None:
    """ "No CommandStatus matches the given query." told clients the server's class names."""
    url = path.format(_ids(kind))
    api: Api = org.admin

    responses = [api.get(url)]
    if path.startswith("/commands/"):
        responses.append(api.put(url, {"state": "Command Cancelled"}))
    for response in responses:
        assert response.status_code == 404, response.content
        body = response.json()
        message = body.get("message", body.get("detail"))
        assert message == "Not found.", body
