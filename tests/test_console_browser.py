"""The console in a real browser: headless Chromium (Debian's) driven by Playwright, the app
served by gunicorn with ``DEBUG`` off, as in production (``config.wsgi`` on the test database;
its static files from WhiteNoise alone, which ``live_server``'s own static handler would hide),
and operations dispatched by a real Celery worker.

Screenshots go to ``var/screenshots/`` (CI keeps them); ``UPDATE_DOCS_SCREENSHOTS=1`` also
refreshes ``docs/screenshots/`` (the dashboard, an operation's page, a rollout's page, the form of a
recurring operation).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django_celery_beat.models import CrontabSchedule

from commands.choices import CommandState
from commands.models import CommandStatus
from commands.services import report
from inventory.models import ApiKey, Device, Tenant
from inventory.services import bulk_import_devices, get_or_create_tenant
from operations.models import Operation
from tests.conftest import ROOT, CeleryProcesses, _process_env, gunicorn

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
#: Threads, so that the operation page's polling and the test's own requests do not queue.
GUNICORN_OPTIONS = ["--worker-class=gthread", "--workers=2", "--threads=4", "--graceful-timeout=5"]
SHOTS = ROOT / "var" / "screenshots"

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():  # .ci/run installs it; a developer machine may lack it
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
# Waits are locator assertions, never page.wait_for_function: that evaluates a string in the
# page, which the Content-Security-Policy (no 'unsafe-eval') rightly refuses.
expect = playwright_api.expect
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests
    # make between browser steps are plain synchronous calls all the same. Only for this
    # module: `check --deploy` (tests/test_production_settings.py) refuses the variable.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


def _launch() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gunicorn serving ``config.wsgi`` with ``DEBUG`` off, as in production, on the test
    database (what a test writes is committed: ``transactional_db``) and this run's Redis; its
    base URL. One for the module: a test's rows are gone after it (the database is flushed)."""
    env = {**_process_env(), "DEBUG": "0"}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with gunicorn(env, tmp_path_factory.mktemp("gunicorn") / "gunicorn.log", *GUNICORN_OPTIONS) as url:
        yield url


@pytest.fixture
def tenant(transactional_db: None) -> Tenant:
    return get_or_create_tenant("acme")[0]


def watch_for_csp_violations(page: Any, violations: list[str]) -> None:
    """Collect in ``violations`` what the browser reports as blocked by the
    Content-Security-Policy, on any page this page object opens: Chromium's console message
    ("... violates the following Content Security Policy directive ...") and the
    ``securitypolicyviolation`` event, both."""
    page.on(
        "console",
        lambda message: (
            violations.append(f"console: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    page.expose_function("reportCspViolation", lambda text: violations.append(f"event: {text}"))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", (e) =>
            window.reportCspViolation(
                `${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber}`));"""
    )


@pytest.fixture
def csp_violations() -> list[str]:
    return []


@pytest.fixture
def page(browser: Any, web_server: str, tenant: Tenant, csp_violations: list[str]) -> Iterator[Any]:
    """A logged-in console page (a superuser; the scoping has its own tests). Every test using
    it fails if the browser reported a Content-Security-Policy violation (issue 12, item 10)."""
    User.objects.create_superuser("root", "", "secret-pw")
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=web_server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server)
    page = context.new_page()
    watch_for_csp_violations(page, csp_violations)
    page.set_default_timeout(20_000)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    yield page
    context.close()
    assert csp_violations == [], csp_violations


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def test_create_watch_and_cancel_an_operation(
    page: Any, tenant: Tenant, celery_worker: CeleryProcesses
) -> None:
    bulk_import_devices(
        tenant.pk,
        [{"device_id": f"and-{i}", "os": "android"} for i in range(6)]
        + [{"device_id": f"lin-{i}", "os": "linux"} for i in range(4)],
    )

    page.goto("/admin/operations/operation/add/")
    page.select_option("#id_operation_type", "INSTALL_APP")
    page.fill("#id_arguments", '{"package": "com.example.shop"}')
    page.select_option("#id_os", ["android"])
    expect(page.locator("#preview-count")).to_have_text("6 devices match")
    page.fill("#id_devices", "and-1 and-2 ghost")
    expect(page.locator("#preview-errors")).to_contain_text("ghost")
    page.fill("#id_devices", "")
    expect(page.locator("#preview-count")).to_have_text("6 devices match")
    assert "and-0" in text(page, "#preview-sample")
    shot(page, "operation-form")
    page.click("#create-operation")

    page.wait_for_url(re.compile(r"/admin/operations/operation/[0-9a-f-]+/change/$"))
    operation = Operation.objects.get()
    assert operation.operation_type == "INSTALL_APP" and operation.arguments == {
        "package": "com.example.shop"
    }
    # The worker dispatches; the page follows without a reload.
    expect(page.locator("#live-state")).to_have_text("DISPATCHED", timeout=60_000)
    expect(page.locator('#live-counts [data-count="pending"]')).to_have_text("6")
    assert text(page, "#live-resolved") == "6"
    for command in CommandStatus.objects.filter(operation=operation).order_by("pk")[:2]:
        for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.SUCCESS):
            command, _ = report(command, state, actor="device")
    expect(page.locator('#live-counts [data-count="success"]')).to_have_text("2")
    assert text(page, '#live-counts [data-count="pending"]') == "4"
    assert text(page, "#live-state") == "PROCESSING"
    shot(page, "operation-progress")

    # Cancel asks first, naming how many devices it touches; then the page follows the
    # worker's stop to the final counts, without a reload.
    page.click("#cancel-operation")
    expect(page.locator("#confirmation")).to_contain_text("It touches 4 devices")
    expect(page.locator("#confirmation")).to_contain_text("2 devices already finished")
    shot(page, "operation-cancel-confirmation")
    operation.refresh_from_db()
    assert operation.state_name == "PROCESSING"  # asking changed nothing
    page.click("#confirm-yes")
    page.wait_for_url(re.compile(r"/change/$"))
    expect(page.locator("#live-state")).to_have_text("CANCELLED")
    expect(page.locator('#live-counts [data-count="cancelled"]')).to_have_text("4", timeout=60_000)
    expect(page.locator('#live-counts [data-count="pending"]')).to_have_text("0")
    expect(page.locator("#live-progress")).to_have_attribute("data-settled", "true")
    expect(page.locator("#live-stopping")).to_be_hidden()
    operation.refresh_from_db()
    assert operation.cancelled_count == 4 and operation.success_count == 2
    assert operation.commands_stopped_at is not None
    assert page.locator("#cancel-tool").is_hidden()
    shot(page, "operation-cancelled")


def test_the_operation_page_is_one_live_view_with_a_device_list(
    page: Any, tenant: Tenant, celery_worker: CeleryProcesses
) -> None:
    """Issue 16, item 1 and 2: right after creating an operation the page shows its state
    once, and the counts and the stacked bar follow it from the same data; the per-device
    list filters by state and leads to the failed device's command history."""
    bulk_import_devices(tenant.pk, [{"device_id": f"phone-{i}", "os": "android"} for i in range(5)])

    page.goto("/admin/operations/operation/add/")
    page.select_option("#id_operation_type", "REBOOT")
    page.select_option("#id_os", ["android"])
    expect(page.locator("#preview-count")).to_have_text("5 devices match")
    page.click("#create-operation")
    page.wait_for_url(re.compile(r"/admin/operations/operation/[0-9a-f-]+/change/$"))
    operation = Operation.objects.get()

    # One live view: no field below repeats the state or the counts as the page drew them.
    fields = page.locator("fieldset.module .form-row")
    expect(fields.first).to_be_visible()
    assert fields.filter(has_text=re.compile("state|progress|counts|reason", re.I)).count() == 0
    expect(page.locator("#live-state")).to_have_text("DISPATCHED", timeout=60_000)
    counts = page.locator("#live-counts")
    expect(counts.locator('[data-count="pending"]')).to_have_text("5")
    assert text(page, "#live-resolved") == "5"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text(page, "#live-updated"))
    # The device list starts below the form, not behind it: its blue heading showed through
    # every gap between the form's panels.
    top = "document.querySelector('{}').getBoundingClientRect().{}"
    assert page.evaluate(top.format("#device-commands", "top")) >= page.evaluate(
        top.format("#operation_form", "bottom")
    )

    commands = list(CommandStatus.objects.filter(operation=operation).order_by("pk"))
    for command, last in ((commands[0], CommandState.SUCCESS), (commands[1], CommandState.FAILURE)):
        for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, last):
            command, _ = report(command, state, actor="device")
    expect(counts.locator('[data-count="failed"]')).to_have_text("1")
    assert text(page, "#live-state") == "PROCESSING"
    assert text(page, '#live-counts [data-count="success"]') == "1"
    assert text(page, '#live-counts [data-count="pending"]') == "3"
    # One stacked bar: each segment as wide as its share of the 5 devices.
    expect(page.locator('#live-bar [data-part="failed"]')).to_have_attribute(
        "style", re.compile(r"width: 20%")
    )
    bar = page.locator("#live-bar").bounding_box()
    pending = page.locator('#live-bar [data-part="pending"]').bounding_box()
    assert bar and pending and abs(pending["width"] - 0.6 * bar["width"]) < 2

    page.select_option("#cmd-state", label="Command Failure")
    page.click("#cmd-filter")
    rows = page.locator("#device-commands-table .command-row")
    expect(rows).to_have_count(1)
    failed = CommandStatus.objects.select_related("device").get(pk=commands[1].pk)
    expect(rows.locator(".device-link")).to_have_text(failed.device.device_id)
    assert "/admin/inventory/device/" in str(rows.locator(".device-link").get_attribute("href"))
    expect(page.locator("#live-state")).to_have_text("PROCESSING")
    path = shot(page, "operation-page")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / "operation.png")

    rows.locator(".command-link").click()
    page.wait_for_url(re.compile(rf"/admin/commands/commandstatus/{failed.pk}/change/$"))
    history = page.locator("#history-group")
    expect(history).to_contain_text("Command In Progress")
    expect(history).to_contain_text("Command Failure")


def test_a_rollout_from_the_form_its_wave_bars_pause_and_resume(
    page: Any, tenant: Tenant, celery_worker: CeleryProcesses
) -> None:
    """Issue 13: an operation with a rollout made through the form; its page shows a bar per
    wave and each abort rule against its threshold, following the devices' reports without a
    reload; Pause holds it (the list shows it PAUSED, and filters it), Resume goes on."""
    bulk_import_devices(tenant.pk, [{"device_id": f"till-{i:02d}", "os": "android"} for i in range(10)])

    page.goto("/admin/operations/operation/add/")
    page.select_option("#id_operation_type", "INSTALL_APP")
    page.fill("#id_arguments", '{"package": "com.example.till"}')
    page.check("#id_all_devices")
    expect(page.locator("#preview-count")).to_have_text("10 devices match")
    page.fill("#id_waves", "20, 100")
    page.fill("#id_wave_success_percent", "50")
    page.fill("#id_max_per_minute", "100")
    page.select_option("#id_abort_1_failure_type", "FAILED")
    page.fill("#id_abort_1_threshold_percent", "50")
    page.fill("#id_abort_1_min_executed", "4")
    page.select_option("#id_retry_1_failure_type", "TIMED_OUT")
    page.fill("#id_retry_1_max_attempts", "3")
    page.fill("#id_in_progress_timeout_minutes", "30")
    page.fill("#id_max_per_minute", "0")  # first a refusal, in the API's words, on its field
    page.click("#create-operation")
    expect(page.locator(".field-max_per_minute .errorlist")).to_have_text(
        "rollout.max_per_minute: must be 1 to 100,000"
    )
    assert not Operation.objects.exists()
    shot(page, "operation-form-rollout-refused")
    page.fill("#id_max_per_minute", "100")
    page.check("#id_all_devices")  # a posted form comes back as it was sent
    page.click("#create-operation")

    page.wait_for_url(re.compile(r"/admin/operations/operation/[0-9a-f-]+/change/$"))
    operation = Operation.objects.get()
    assert operation.rollout is not None and operation.rollout["waves"] == [20, 100]
    expect(page.locator("#live-state")).to_have_text("DISPATCHED", timeout=60_000)
    first = page.locator('#rollout-waves tr[data-wave="1"]')
    second = page.locator('#rollout-waves tr[data-wave="2"]')
    expect(first).to_have_attribute("data-state", "OPEN")
    expect(first).to_have_class(re.compile(r"\brollout-current\b"))
    expect(second).to_have_attribute("data-state", "WAITING")
    wave_one = list(CommandStatus.objects.filter(operation=operation, wave=1).order_by("pk"))
    assert len(wave_one) == 2
    for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.SUCCESS):
        report(CommandStatus.objects.get(pk=wave_one[0].pk), state, actor="device")
    expect(first.locator('[data-part="success"]')).to_have_attribute("style", re.compile(r"width: ?50"))
    expect(page.locator('#rollout-abort [data-rule="1"] .abort-text')).to_have_text(
        "abort when at least 50 % fail, once at least 4 devices have finished; now 0 % (0 of 1 finished)"
    )
    expect(page.locator("#live-state")).to_have_text("PROCESSING")
    shot(page, "operation-rollout")

    page.click("#pause-operation")
    expect(page.locator(".messagelist .success")).to_contain_text("Paused operation")
    expect(page.locator("#live-state")).to_have_text("PAUSED")
    expect(page.locator("#resume-operation")).to_be_visible()
    assert page.locator("#pause-tool").is_hidden()
    page.goto("/admin/operations/operation/")
    expect(page.locator(".op-badge-paused")).to_have_text("PAUSED")
    expect(page.locator(".op-paused-reason")).to_have_text("paused from the console")
    page.click("#changelist-filter a[href='?state__exact=130']")
    page.wait_for_url(re.compile(r"\?state__exact=130$"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    shot(page, "operation-list-paused")

    page.goto(f"/admin/operations/operation/{operation.pk}/change/")
    page.click("#resume-operation")
    expect(page.locator(".messagelist .success")).to_contain_text("Resumed operation")
    expect(page.locator("#live-state")).to_have_text("PROCESSING")
    # wave 1 finishes: the page sees wave 2 open without a reload
    for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.SUCCESS):
        report(CommandStatus.objects.get(pk=wave_one[1].pk), state, actor="device")
    expect(first).to_have_attribute("data-state", "DONE")
    expect(second).to_have_attribute("data-state", "OPEN")
    expect(second).to_have_class(re.compile(r"\brollout-current\b"))
    expect(page.locator("#pause-operation")).to_be_visible()
    path = shot(page, "operation-rollout-wave-2")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / "rollout.png")


def test_upload_a_device_file_with_a_rejected_row_report(page: Any, tenant: Tenant) -> None:
    page.goto("/admin/inventory/device/")
    page.click("#import-devices")
    page.select_option("#id_tenant", str(tenant.pk))
    bad = (
        b"id,name,os,timezone,tags\nshop-1,Till 1,android,Europe/Berlin,till\nno spaces,Till 2,android,UTC,\n"
    )
    page.set_input_files("#id_file", {"name": "devices.csv", "mimeType": "text/csv", "buffer": bad})
    page.click("#import-form input[type=submit]")
    page.wait_for_selector("#import-report")
    assert "1 of 2 row(s) rejected" in text(page, "#import-report")
    assert "no spaces" in text(page, "#import-report")
    assert not Device.objects.exists()
    shot(page, "device-import-rejected")

    good = b"id,name,os,timezone,tags\nshop-1,Till 1,android,Europe/Berlin,till\nshop-2,Till 2,android,UTC,\n"
    page.select_option("#id_tenant", str(tenant.pk))
    page.set_input_files("#id_file", {"name": "devices.csv", "mimeType": "text/csv", "buffer": good})
    page.click("#import-form input[type=submit]")
    page.wait_for_selector("#import-done")
    assert "Imported 2 device(s)" in text(page, "#import-done")
    assert Device.objects.filter(tenant=tenant).count() == 2
    assert "shop-1," in page.locator("#import-tokens").input_value()
    shot(page, "device-import-done")


def test_issue_a_key_shown_once_with_a_copy_button(page: Any, tenant: Tenant) -> None:
    page.goto("/admin/inventory/apikey/add/")
    page.select_option("#id_tenant", str(tenant.pk))
    page.fill("#id_name", "deploy bot")
    page.select_option("#id_role", "operator")
    page.click("input[name=_save]")

    page.wait_for_url(re.compile(r"/admin/inventory/apikey/secret/[\w-]+/$"))
    plain = text(page, "#secret-value").strip()
    key = ApiKey.objects.get(name="deploy bot")
    assert plain.startswith(f"dok_{key.prefix}_")
    assert plain not in text(page, ".messagelist")  # the message names the key, never its value
    page.click("#copy-secret")
    expect(page.locator("#copy-status")).to_have_text(re.compile(r"\S"))
    if text(page, "#copy-status") == "Copied.":
        assert page.evaluate("navigator.clipboard.readText()") == plain
    shot(page, "api-key-issued")

    page.reload()  # the one-time page is gone, and so is the key's value
    page.wait_for_selector("#secret-gone")
    assert plain not in page.content()
    shot(page, "api-key-already-shown")

    page.goto("/admin/inventory/apikey/")  # the rotate action: the new key on a page of its own too
    page.check(f"input[name=_selected_action][value='{key.pk}']")
    page.select_option("select[name=action]", "rotate")
    page.click("button[name=index]")
    page.wait_for_url(re.compile(r"/admin/inventory/apikey/secret/[\w-]+/$"))
    rotated = text(page, "#secret-value").strip()
    new_key = ApiKey.objects.get(name="deploy bot", revoked_at__isnull=True)
    assert rotated.startswith(f"dok_{new_key.prefix}_") and new_key.pk != key.pk

    page.goto(f"/admin/inventory/apikey/{new_key.pk}/change/")
    assert rotated not in page.content()
    page.click("#revoke-key")
    page.wait_for_selector(".messagelist .success")
    new_key.refresh_from_db()
    assert new_key.revoked_at is not None


def test_dashboard(page: Any, tenant: Tenant) -> None:
    bulk_import_devices(
        tenant.pk,
        [{"device_id": f"k-{i}", "os": ["android", "linux", "ios"][i % 3]} for i in range(12)]
        + [{"device_id": "old-1", "os": "windows", "state": "inactive"}],
    )
    from operations.fanout import fan_out
    from operations.services import create_operation

    for operation_type, os_name in (("REBOOT", "android"), ("INSTALL_APP", "linux")):
        operation = create_operation(
            tenant.pk,
            {"operation_type": operation_type, "operation_device_query": {"filters": {"os": os_name}}},
            "demo",
        )
        fan_out(operation.pk)
        for index, command in enumerate(CommandStatus.objects.filter(operation=operation).order_by("pk")):
            if index == 3:
                continue  # still pending
            for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS):
                command, _ = report(command, state, actor="device")
            report(command, CommandState.FAILURE if index == 2 else CommandState.SUCCESS, actor="device")
    from operations.services import cancel_operation

    cancelled = create_operation(
        tenant.pk, {"operation_type": "LOCK", "operation_device_query": {"filters": {"os": "ios"}}}, "demo"
    )
    fan_out(cancelled.pk)
    cancel_operation(cancelled, "not needed after all", "demo")

    page.goto("/admin/")
    page.wait_for_selector("#command-chart[data-rendered=true]")
    # The chart takes the page's width (Django's index is 600 px wide), less the recent actions.
    assert page.locator("#command-chart").bounding_box()["width"] > 900
    assert "13" in text(page, "#fleet-size")
    assert "windows: 1" in text(page, "#fleet-os")
    assert text(page, "#active-operations").count("of 4") == 2
    assert "cancelled: 1 (100.0%)" in text(page, "#rates")
    path = shot(page, "dashboard")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / "dashboard.png")


def test_every_console_screen_and_the_docs_run_under_the_content_security_policy(
    page: Any, tenant: Tenant
) -> None:
    """Each screen the index links to (lists and add forms), an object's page, the login
    page and Swagger UI: the header is there and nothing is blocked (the fixture checks)."""
    bulk_import_devices(tenant.pk, [{"device_id": "csp-1", "os": "android"}])
    response = page.goto("/admin/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#command-chart[data-rendered=true]")
    links = page.eval_on_selector_all(
        "#content-main a[href^='/admin/'], #nav-sidebar a[href^='/admin/']",
        "links => [...new Set(links.map(a => a.getAttribute('href')))]",
    )
    assert any("/operations/operation/add/" in link for link in links), links
    for path in [*links, "/admin/inventory/device/csp-1/change/"]:
        answer = page.goto(path)
        assert answer.status == 200, path
        assert "content-security-policy" in answer.headers, path
        page.wait_for_load_state("load")

    # django-celery-beat's task form, whose inline script is a static file here: it still works.
    crontab = CrontabSchedule.objects.create(minute="0", hour="4")
    page.goto("/admin/django_celery_beat/periodictask/add/")
    page.select_option("#id_crontab", str(crontab.pk))
    expect(page.locator("#crontab-reading")).to_contain_text("04:00")

    answer = page.goto("/api/docs/")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .information-container .title")
    page.wait_for_selector(".opblock-tag-section")  # the operations, from /api/schema/
    shot(page, "api-docs")

    page.context.clear_cookies()  # and the login page, as someone not logged in sees it
    answer = page.goto("/admin/login/")
    assert "content-security-policy" in answer.headers
    page.wait_for_selector("#id_username")


def test_an_injected_inline_script_is_blocked_and_noticed(page: Any, csp_violations: list[str]) -> None:
    """The check the fixture makes can fail: what an XSS would inject (an inline script, an
    onload= handler) is refused by the browser and reported."""
    page.goto("/admin/")
    page.locator("body").evaluate(
        """body => {
            const script = document.createElement("script");
            script.textContent = "window.pwned = 'by a script'";
            body.appendChild(script);
            body.insertAdjacentHTML("beforeend", '<img id="probe" '
                + 'src="/static/admin/img/icon-yes.svg" onload="window.pwned = 1">');
        }"""
    )
    expect(page.locator("#probe")).to_have_js_property("complete", True)  # loaded: onload was due
    for _ in range(100):  # reports arrive as events; Playwright delivers them while it waits
        if {"script-src-elem", "script-src-attr"} <= {v.split()[1] for v in csp_violations if "event:" in v}:
            break
        page.wait_for_timeout(50)

    assert page.evaluate("window.pwned") is None
    assert any("inline" in violation for violation in csp_violations), csp_violations
    kinds = {violation.split()[1] for violation in csp_violations if violation.startswith("event:")}
    assert {"script-src-elem", "script-src-attr"} <= kinds, csp_violations
    csp_violations.clear()  # seen: the fixture's own check is for the pages, not for this


def _rows_for_every_list(tenant: Tenant) -> None:
    """A few rows behind every list the index links to, with values as long as real ones
    (long names, paths, user agents), so that every column renders at its real width."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth.models import Group as AuthGroup
    from django_celery_beat.models import ClockedSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

    from inventory.models import AuditEntry, ConsoleUser
    from tests.conftest import Org, make_org
    from tests.world import build_world

    org: Org = make_org(tenant.slug)
    world = build_world(org)
    bulk_import_devices(
        tenant.pk,
        [
            {
                "device_id": "kiosk-berlin-hauptbahnhof-entrance-north-0001",
                "name": "Ticket kiosk, Berlin Hauptbahnhof, north entrance, second from the left",
                "os": "android",
                "model": "Zebra ET40 enterprise tablet, 10 inch",
                "timezone": "America/Argentina/ComodRivadavia",
            }
        ],
    )
    for state in (CommandState.ACKNOWLEDGED, CommandState.IN_PROGRESS, CommandState.SUCCESS):
        report(CommandStatus.objects.get(pk=world.command.pk), state, actor="device")
    user = User.objects.create_user("operator-with-a-rather-long-name@example.com", is_staff=True)
    ConsoleUser.objects.create(user=user, tenant=tenant)
    AuthGroup.objects.create(name="Night-shift operators, Europe and Middle East")
    AuditEntry.objects.create(
        tenant=tenant,
        actor_kind="key",
        actor="deploy bot for the shop fleet (rotated 2026-11)",
        method="POST",
        path="/api/1.0/aggregates/maintenance-schedule/jobs/orgId/acme/jobId/" + "0" * 36,
        status_code=201,
        ip="2001:db8:85a3:0000:0000:8a2e:0370:7334",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131",
    )
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
    attempt = {"username": "someone@example.com", "ip_address": "2001:db8::1", "user_agent": agent}
    AccessAttempt.objects.create(
        **attempt, http_accept="text/html", path_info="/admin/login/", failures_since_start=3
    )
    AccessLog.objects.create(**attempt, http_accept="text/html", path_info="/admin/login/")
    AccessFailureLog.objects.create(**attempt, http_accept="text/html", path_info="/admin/login/")
    interval = IntervalSchedule.objects.create(every=15, period=IntervalSchedule.MINUTES)
    SolarSchedule.objects.create(event="sunrise", latitude=52.52, longitude=13.405)
    clocked = ClockedSchedule.objects.create(clocked_time=world.operation.created_at)
    PeriodicTask.objects.create(
        name="a one-off clean-up of the old command history", task="x.y", clocked=clocked, one_off=True
    )
    PeriodicTask.objects.create(name="every quarter of an hour", task="x.y", interval=interval)
    from operations.approvals import set_policy

    set_policy(tenant.pk, ["WIPE", "REMOVE_DEVICE"], 500, 48, "admin:root")


def test_every_list_fits_a_1366_by_768_screen(page: Any, tenant: Tenant) -> None:
    """Issue 16: every list the index links to, with rows in it, fits a laptop's screen:
    neither the page nor the list's table scrolls sideways (Django's changelist puts the
    table in a box that scrolls, so the page alone would not tell)."""
    _rows_for_every_list(tenant)
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/admin/")
    links = page.eval_on_selector_all(
        "#content-main a[href^='/admin/'], #nav-sidebar a[href^='/admin/']",
        "links => [...new Set(links.map(a => a.getAttribute('href')))]",
    )
    lists = sorted(
        link for link in links if not link.endswith("/add/") and link.count("/") == 4 and "?" not in link
    )
    assert len(lists) >= 15, lists
    too_wide: dict[str, str] = {}
    for path in lists:
        answer = page.goto(path)
        assert answer.status == 200, path
        expect(page.locator("#changelist")).to_be_visible()
        widths = page.evaluate(
            """() => {
                const table = document.querySelector('#result_list');
                const box = table && table.closest('.results');
                return {page: document.documentElement.scrollWidth, window: window.innerWidth,
                        table: table ? table.scrollWidth : 0, box: box ? box.clientWidth : 0,
                        rows: table ? table.tBodies[0].rows.length : 0};
            }"""
        )
        assert widths["rows"] > 0, f"{path}: no rows, so no column was measured"
        if widths["page"] > widths["window"] or widths["table"] > widths["box"]:
            too_wide[path] = f"table {widths['table']} px in {widths['box']}, page {widths['page']}"
        shot(page, "list-1366-" + path.strip("/").replace("/", "-"))
    assert too_wide == {}, "\n".join(f"{path}: {why}" for path, why in too_wide.items())


def test_the_operation_type_filter_is_a_drop_down(page: Any, tenant: Tenant) -> None:
    """Issue 16: the operation types are one <select> (the filter column fits the screen's
    height); choosing one opens the list filtered, by a static script the policy allows."""
    from operations.services import create_operation

    for operation_type in ("LOCK", "REBOOT"):
        create_operation(
            tenant.pk, {"operation_type": operation_type, "operation_device_query": {"all": True}}, "t"
        )
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto("/admin/operations/operation/")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    assert page.locator("#changelist-filter").bounding_box()["height"] < 768

    page.select_option("select[data-filter-select][aria-label='operation type']", label="Lock")

    page.wait_for_url(re.compile(r"\?operation_type__exact=LOCK$"))
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("select[data-filter-select][aria-label='operation type']")).to_have_value(
        "?operation_type__exact=LOCK"
    )
    shot(page, "operation-type-filter")


def console_page(browser: Any, web_server: str, username: str, violations: list[str]) -> Any:
    """A page logged in as ``username`` (password ``secret-pw``), in a browser context of its own."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=web_server)
    page = context.new_page()
    watch_for_csp_violations(page, violations)
    page.set_default_timeout(20_000)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r"/admin/$"))
    return page


def test_the_approvals_queue_approve_deny_and_no_buttons_for_the_requester(
    browser: Any, web_server: str, tenant: Tenant, csp_violations: list[str], celery_worker: CeleryProcesses
) -> None:
    """Issue 25: Alice asks for a WIPE in the console; she sees it waiting without buttons; Bob,
    another admin of the tenant, sees who asked and the devices it would reach, approves it
    (a worker fans it out) and denies a second one with a remark."""
    from django.contrib.auth.models import Permission

    from inventory.models import ConsoleUser
    from operations.services import create_operation

    bulk_import_devices(tenant.pk, [{"device_id": f"pos-{i}"} for i in range(4)])
    users = {}
    for name in ("alice", "bob"):
        user = User.objects.create_user(name, password="secret-pw", is_staff=True)
        user.user_permissions.set(Permission.objects.all())
        ConsoleUser.objects.create(user=user, tenant=tenant)
        users[name] = user
    alice = console_page(browser, web_server, "alice", csp_violations)
    bob = console_page(browser, web_server, "bob", csp_violations)

    alice.goto("/admin/operations/operation/add/")
    alice.select_option("#id_operation_type", "WIPE")
    alice.check("#id_all_devices")
    expect(alice.locator("#preview-count")).to_have_text("4 devices match")
    alice.click("#create-operation")
    alice.wait_for_url(re.compile(r"/admin/operations/operation/[0-9a-f-]+/change/$"))
    expect(alice.locator("#approval-box")).to_contain_text("Waits for the approval")
    wipe = Operation.objects.get()
    second = create_operation(
        tenant.pk,
        {"operation_type": "WIPE", "operation_device_query": {"devices": ["pos-3"]}},
        "admin:alice",
        f"user:{users['alice'].pk}",
    )

    alice.goto("/admin/operations/operation/approvals/")
    mine = alice.locator(f'tr[data-operation="{wipe.pk}"]')
    expect(mine.locator(".requested-by")).to_have_text("admin:alice")
    expect(mine).to_contain_text("another admin must approve")
    assert mine.locator("form.decide").count() == 0
    assert alice.locator("form.decide").count() == 0
    shot(alice, "approvals-requester")

    bob.goto("/admin/")
    expect(bob.locator("#awaiting-approval .big")).to_have_text("2")
    bob.click("#awaiting-approval .big a")
    bob.wait_for_url(re.compile(r"/approvals/$"))
    row = bob.locator(f'tr[data-operation="{wipe.pk}"]')
    expect(row.locator(".preview-count")).to_have_text("4")
    expect(row.locator(".preview-devices")).to_have_text("pos-0, pos-1, pos-2")
    expect(row.locator(".expires-at")).to_contain_text("UTC")
    shot(bob, "approvals-queue")
    row.locator("form.approve input[name=remark]").fill("store 12 is being refitted")
    row.locator("form.approve input[type=submit]").click()
    expect(bob.locator("ul.messagelist")).to_contain_text("Approved Wipe")
    expect(bob.locator(f'tr[data-operation="{wipe.pk}"]')).to_have_count(0)

    # Deny: the remark is required (the browser will not send the form without one)
    other = bob.locator(f'tr[data-operation="{second.pk}"]')
    other.locator("form.deny input[type=submit]").click()
    expect(other).to_have_count(1)
    other.locator("form.deny input[name=remark]").fill("pos-3 is not in the refit")
    other.locator("form.deny input[type=submit]").click()
    # asked first: what it would have touched, then denied
    expect(bob.locator("#confirmation")).to_contain_text("It matches 1 device now: none of them will run it.")
    bob.click("#confirm-yes")
    expect(bob.locator("ul.messagelist")).to_contain_text("Denied Wipe")
    expect(bob.locator("#approvals-queue tbody")).to_contain_text("nothing waits for approval")

    # the approved one went on as if just created: the worker fans it out
    bob.goto(f"/admin/operations/operation/{wipe.pk}/change/")
    expect(bob.locator("#live-state")).to_have_text("DISPATCHED", timeout=60_000)
    expect(bob.locator("#approval-box")).to_contain_text("APPROVED by admin:bob")
    second.refresh_from_db()
    assert second.state_name == "APPROVAL_DENIED" and second.reason == "pos-3 is not in the refit"
    bob.context.close()
    alice.context.close()
    assert csp_violations == [], csp_violations


def test_a_recurring_operation_from_a_template_with_its_next_five_runs_in_words(
    page: Any, tenant: Tenant
) -> None:
    """The template picker fills the form; "recurring" shows the expression in words and its
    next five runs while it is typed, as the maintenance page shows a schedule's."""
    from operations.models import OperationTemplate

    bulk_import_devices(tenant.pk, [{"device_id": f"kiosk-{i}", "os": "android"} for i in range(3)])
    template = OperationTemplate.objects.create(
        tenant=tenant,
        name="nightly-reboot",
        operation_type="REBOOT",
        arguments={"why": "{{why}}"},
        parameters={"why": {"type": "string", "default": "nightly"}},
        device_query={"filters": {"os__in": ["android"]}},
    )

    page.goto("/admin/operations/operation/add/")
    page.select_option("#id_template", str(template.pk))
    page.wait_for_url(re.compile(r"\?template="))
    expect(page.locator("#id_operation_type")).to_have_value("REBOOT")
    expect(page.locator("#preview-count")).to_have_text("3 devices match")
    assert page.locator("#recurring-fields").is_hidden()
    page.check("input[name=schedule_type][value=RECURRING]")
    assert page.locator("#recurring-fields").is_visible()
    page.fill("#id_time_expression", "0 30 2 ? * MON-FRI")
    expect(page.locator("#series-description")).to_have_text("At 02:30, Monday through Friday")
    expect(page.locator("#series-runs li")).to_have_count(5)
    assert all("02:30" in line for line in page.locator("#series-runs li").all_inner_texts())
    page.fill("#id_time_expression", "0 0 2 * * MON")
    expect(page.locator("#series-errors")).to_contain_text("schedule_args.time_expression")
    page.fill("#id_time_expression", "0 30 2 ? * MON-FRI")
    expect(page.locator("#series-runs li")).to_have_count(5)
    path = shot(page, "operation-form-recurring")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / "recurring-form.png")
    page.click("#create-operation")

    page.wait_for_url(re.compile(r"/admin/operations/operation/[0-9a-f-]+/change/$"))
    series = Operation.objects.get()
    assert series.schedule_type == "RECURRING" and series.template_id == template.pk
    assert series.arguments == {"why": "nightly"} and series.template_parameters == {"why": "nightly"}
    expect(page.locator(".series-upcoming li")).to_have_count(5)
