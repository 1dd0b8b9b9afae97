"""The new-operation form in Chromium at a laptop's and a desktop's size (issue 26): a hint,
not an error, before anything is chosen; the count of matched devices follows the query as it
changes (tags checked and typed, OS, ids); the approval the policy will ask for; every
refusal at its field after one bad submit; no sideways scroll; no CSP violation (the ``page``
fixture fails the test on one).

The browser, the gunicorn server and the logged-in page are ``tests/test_console_browser.py``'s
fixtures. ``UPDATE_DOCS_SCREENSHOTS=1`` refreshes ``docs/screenshots/operation-form.png``.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from inventory.models import Group, Tenant
from inventory.services import bulk_import_devices
from operations.models import Operation
from tests.conftest import ROOT
from tests.test_console_browser import (  # noqa: F401  (fixtures)
    browser,
    csp_violations,
    expect,
    page,
    shot,
    tenant,
    web_server,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ADD = "/admin/operations/operation/add/"
SIZES = [(1366, 768), (1920, 1080)]


def fleet(tenant: Tenant) -> None:  # noqa: F811
    """Ten devices: six android shop tills, four linux routers, two of them in a group."""
    bulk_import_devices(
        tenant.pk,
        [{"device_id": f"till-{i}", "os": "android", "tags": ["shop"]} for i in range(6)]
        + [{"device_id": f"router-{i}", "os": "linux", "tags": ["edge"]} for i in range(4)],
    )
    group = Group.objects.create(tenant=tenant, name="berlin")
    group.devices.add(*tenant.devices.filter(device_id__in=["till-0", "router-0"]))


def no_sideways_scroll(page: Any) -> None:  # noqa: F811
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_the_count_follows_the_query_and_every_error_shows_at_once(
    page: Any,  # noqa: F811
    tenant: Tenant,  # noqa: F811
    width: int,
    height: int,
) -> None:
    fleet(tenant)
    page.set_viewport_size({"width": width, "height": height})
    page.goto(ADD)

    count = page.locator("#preview-count")
    expect(count).to_have_text("Pick groups, tags, an OS, device ids or the whole fleet.")
    expect(count).to_have_class("preview-hint")
    expect(page.locator("#preview-errors li")).to_have_count(0)
    expect(page.locator("#approval-note")).to_be_hidden()
    no_sideways_scroll(page)
    # "Continuous until" only where it means something: a continuous operation, started now.
    expect(page.locator(".field-continuous_end")).to_be_hidden()
    page.check("input[name=target_selection][value=CONTINUOUS]")
    expect(page.locator(".field-continuous_end")).to_be_visible()
    page.check("input[name=target_selection][value=SNAPSHOT]")
    expect(page.locator(".field-continuous_end")).to_be_hidden()

    page.locator(".tag-chip", has_text="shop").click()
    expect(count).to_have_text("6 devices match")
    page.select_option("#id_os", ["linux"])
    expect(count).to_have_text("0 devices match")
    page.locator(".tag-chip", has_text="shop").click()
    expect(count).to_have_text("4 devices match")
    page.fill("#id_tags_typed", "edge")
    expect(count).to_have_text("4 devices match")
    page.fill("#id_devices", "router-1")
    expect(count).to_have_text("1 device matches")
    expect(page.locator("#preview-sample")).to_have_text("(router-1)")
    page.select_option("#id_operation_type", "WIPE")
    expect(page.locator("#approval-note")).to_have_text(
        "Wipe operations of this tenant wait for a second admin's approval before they start."
    )
    no_sideways_scroll(page)
    path = shot(page, f"operation-form-{width}")
    if width == 1366 and os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / "operation-form.png")
    page.select_option("#id_operation_type", "INSTALL_OTA")
    expect(page.locator("#approval-note")).to_be_hidden()
    page.fill("#id_devices", "router-1 ghost")
    expect(page.locator("#preview-errors")).to_contain_text("unknown device id(s): ghost")

    # One bad submit: every refusal at its field at once.
    page.fill("#id_arguments", "[1]")
    page.check("input[name=schedule_type][value=WINDOW]")
    page.fill("#id_start", "2030-01-02T10:00")
    page.fill("#id_end", "2030-01-01T10:00")
    page.fill("#id_timezone", "Mars/Olympus")
    page.fill("#id_waves", "50, 20")
    page.click("#create-operation")

    expect(page.locator("#api-errors")).to_contain_text("5 problems, each shown at its field below")
    expect(page.locator(".field-arguments .errorlist")).to_have_text("must be a JSON object")
    expect(page.locator(".field-timezone .errorlist")).to_contain_text("is not an IANA time zone name")
    expect(page.locator(".field-end .errorlist")).to_have_text(
        "schedule_args.end_datetime: must be after start_datetime"
    )
    expect(page.locator(".field-waves .errorlist")).to_contain_text("rollout.waves:")
    expect(page.locator(".field-devices .errorlist")).to_have_text(
        "operation_device_query.devices: unknown device id(s): ghost"
    )
    # The form comes back as it was sent: the typed tag, one in use, now checked; the OS picked.
    expect(page.locator("#tag-picker input[value=edge]")).to_be_checked()
    expect(page.locator("#id_tags_typed")).to_have_value("")
    expect(page.locator("#id_os option[value=linux]")).to_have_js_property("selected", True)
    expect(page.locator("#window-fields")).to_be_visible()
    no_sideways_scroll(page)
    shot(page, f"operation-form-refused-{width}")
    assert not Operation.objects.exists()
