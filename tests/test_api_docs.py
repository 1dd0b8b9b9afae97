"""``/api/docs/`` (Swagger UI) works without internet (issue 12, item 9): its files come from
drf-spectacular-sidecar and are served by the web process (WhiteNoise, ``config/static.py``),
with ``DEBUG`` off as in production, through the same WSGI application gunicorn runs.

Before: the page loaded ``swagger-ui-dist@latest`` from a CDN and was blank offline.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.conf import settings
from django.test import Client

DOCS = "/api/docs/"


class _References(HTMLParser):
    """Every URL the page makes the browser load: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name) and tag in {"script", "link", "img", "iframe"}:
                self.urls.append(str(found[name]))


def references(client: Client, path: str) -> tuple[Any, list[str]]:
    response = client.get(path)
    assert response.status_code == 200, response.content[:500]
    parser = _References()
    parser.feed(response.content.decode())
    return response, [urljoin(path, url) for url in parser.urls]


def fetch(client: Client, url: str) -> tuple[Any, bytes]:
    """A static file through the whole application, and its body (WhiteNoise streams it)."""
    response: Any = client.get(url)
    if getattr(response, "streaming", False):
        return response, b"".join(response.streaming_content)
    return response, response.content


#: Swagger UI's script, by its plain name or, once collected, its hashed one.
BUNDLE = re.compile(r"swagger-ui-bundle(\.[0-9a-f]{12})?\.js$")


def test_the_docs_page_references_no_other_host() -> None:
    assert not settings.DEBUG  # as in production: Django's own static serving is off
    response, urls = references(Client(), DOCS)

    assert {urlsplit(url).netloc for url in urls} <= {""}, urls
    # The inline configuration (if any) and every attribute: no scheme://host anywhere.
    assert not re.findall(rb"(?:https?:)?//[\w.-]+\.[a-z]{2,}", response.content), response.content[:2000]
    assert any(BUNDLE.search(url) for url in urls), urls


def test_every_file_the_docs_page_loads_is_served() -> None:
    client = Client()
    _, urls = references(client, DOCS)
    assets = [url for url in urls if url.startswith(settings.STATIC_URL) or url.startswith("/static/")]
    assert len(assets) >= 4, urls  # the CSS, two scripts, the icon

    for url in urls:
        response, body = fetch(client, url)
        assert response.status_code == 200, url
        assert body, url
        if url.endswith(".js") or "script" in url:
            assert "javascript" in response["Content-Type"], (url, response["Content-Type"])
    bundle = next(url for url in urls if BUNDLE.search(url))
    assert len(fetch(client, bundle)[1]) > 500_000  # the real Swagger UI, not a stub


@pytest.mark.django_db
def test_the_consoles_static_files_are_served_with_debug_off() -> None:
    """The console's CSS and scripts, and the vendored Chart.js, under gunicorn as well."""
    client = Client()
    for path in (
        "admin/css/base.css",
        "admin/js/vendor/jquery/jquery.min.js",
        "vendor/chartjs/chart.umd.min.js",
        "console/dashboard.js",
    ):
        response, body = fetch(client, f"/static/{path}")
        assert response.status_code == 200, path
        assert body, path
    assert fetch(client, "/static/nothing-here.js")[0].status_code == 404


def test_swagger_groups_endpoints_by_resource_each_described() -> None:
    """Issue 26: tags by resource (``config.api.schema.RESOURCE_TAGS``), not by the first URL
    segment (which put 29 endpoints under "v0"); each tag listed with a description."""
    from config.api.schema import OTHER_TAG

    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    described = {tag["name"]: tag["description"] for tag in schema["tags"]}
    tags = {
        (path, method): operation["tags"]
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
        if isinstance(operation, dict) and "responses" in operation
    }
    assert all(len(found) == 1 and found[0] in described for found in tags.values()), tags
    used = {found[0] for found in tags.values()}
    assert OTHER_TAG not in used and "v0" not in used
    assert used == set(described)
    assert {
        "Devices",
        "Groups",
        "Operations",
        "Approvals",
        "Templates",
        "Command statuses",
        "Inbox",
        "MQTT",
        "Headless",
        "Maintenance",
        "Webhooks",
    } == used
    assert all(len(text) > 20 for text in described.values())
    assert tags[("/v0/operations/{id}/approve/", "post")] == ["Approvals"]
    assert tags[("/v0/operations/preview/", "post")] == ["Operations"]
    assert tags[("/v2/command-inbox/", "get")] == ["Inbox"]
    assert tags[("/v2/mqtt-credentials/", "get")] == ["MQTT"]
