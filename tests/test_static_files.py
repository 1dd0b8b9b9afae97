"""The console's static files as production serves them: after ``collectstatic``, gunicorn with
``DEBUG`` off answers hashed names, gzip-compressed, with a year's cache headers; and pages
name those hashed files, so a changed file is fetched anew."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, _process_env, gunicorn


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, dict(answer.headers), answer.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """collectstatic into a fresh STATIC_ROOT, then gunicorn serving it with DEBUG off."""
    work = tmp_path_factory.mktemp("static")
    env = {**_process_env(), "DEBUG": "0", "STATIC_ROOT": str(work / "static")}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    with gunicorn(env, work / "gunicorn.log", "-w", "1") as url:
        yield url


def test_pages_name_hashed_files_served_compressed_for_a_year(served: str) -> None:
    status, _, page = _get(f"{served}/admin/login/")
    assert status == 200
    hashed = re.findall(r'/static/([\w/.-]+\.[0-9a-f]{12}\.(?:css|js))"', page.decode())
    assert hashed, "the login page names no hashed static file"

    status, headers, body = _get(f"{served}/static/{hashed[0]}", **{"Accept-Encoding": "gzip"})

    assert status == 200 and body
    assert headers.get("Content-Encoding") == "gzip"
    assert "max-age=315360000" in headers["Cache-Control"] and "immutable" in headers["Cache-Control"]


def test_the_unhashed_name_still_answers_with_a_short_cache(served: str) -> None:
    status, headers, _ = _get(f"{served}/static/console/console.css")

    assert status == 200
    assert "immutable" not in headers.get("Cache-Control", "")
