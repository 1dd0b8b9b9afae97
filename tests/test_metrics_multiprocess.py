"""``/metrics`` in multi-process mode, as deployed: gunicorn with two workers and a Celery
worker sharing one ``PROMETHEUS_MULTIPROC_DIR``. Whichever web process answers the scrape,
it counts every web process's requests and the Celery worker's fan-out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Org, add_device, purge_broker, wait_until
from tests.faults import Processes, free_port, wait_port
from tests.test_metrics import METRICS_TOKEN

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0


@pytest.fixture
def served(transactional_db: None, tmp_path: Path) -> Iterator[tuple[str, Path, Processes]]:
    purge_broker()
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    procs = Processes(tmp_path, env)
    try:
        port = free_port()
        procs.start("web", "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2")
        procs.worker(concurrency=1)
        wait_port(port)
        yield f"http://127.0.0.1:{port}", folder, procs
    finally:
        procs.stop_all()


def sample_sum(text: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_every_process_is_counted(org: Org, served: tuple[str, Path, Processes]) -> None:
    base, folder, procs = served
    key = {"Authorization": f"Bearer {org.admin.token}"}
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}  # the installation's, as Prometheus sends it
    for i in range(3):
        add_device(org.tenant, f"mp-{i}")

    probes = 12
    for _ in range(probes):  # a new connection each: the two web processes share them
        assert requests.get(f"{base}/healthz", timeout=TIMEOUT).status_code == 200

    created = requests.post(
        f"{base}/v0/operations/",
        json={"operation_type": "REBOOT", "operation_device_query": {"devices": ["mp-0", "mp-1", "mp-2"]}},
        headers=key,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    operation_id = created.json()["content"]["id"]

    def dispatched() -> bool:
        got = requests.get(f"{base}/v0/operations/{operation_id}/", headers=key, timeout=TIMEOUT)
        return got.json()["content"]["state"] == "DISPATCHED"

    wait_until(dispatched, timeout=60, what=f"DISPATCHED\n{procs.log('worker')[-3000:]}")

    def scraped() -> Any:
        text = requests.get(f"{base}/metrics", headers=scraper, timeout=TIMEOUT).text
        rows = sample_sum(text, "dos_fanout_rows_total")
        return text if rows == 3 else None  # the worker's count may land a moment after DISPATCHED

    for _ in range(4):  # several scrapes: each web process, whichever answers, sees it all
        text = wait_until(scraped, timeout=10, what="the worker's fan-out rows in /metrics")
        assert sample_sum(text, "dos_http_requests_total", route="/healthz", status="200") == probes
        assert sample_sum(text, "dos_http_requests_total", route="/v0/operations/", status="201") == 1
        assert sample_sum(text, "dos_fanout_duration_seconds_count", outcome="ok") == 1
        assert sample_sum(text, "dos_operations", state="dispatched") == 1

    # The web processes and the worker's pool process each wrote their own file.
    pids = {path.stem.rsplit("_", 1)[-1] for path in folder.glob("*.db")}
    assert len(pids) >= 3, sorted(path.name for path in folder.glob("*.db"))
