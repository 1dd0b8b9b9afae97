"""The maintenance API's OpenAPI links: a job made by ``POST .../jobs/orgId/{org_id}`` is
changed and deleted under another path (seed 004's), so the generic create-to-item links of
``config.api.schema.add_item_links`` cannot find it; this hook adds them."""

from __future__ import annotations

from typing import Any

_CREATE = "/aggregates/maintenance/scheduler/jobs/orgId/{org_id}"
_JOB = "/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{org_id}/jobId/{job_id}"
_OPERATIONS = {"patch": "maintenance_job_set_active", "delete": "maintenance_job_delete"}


def add_job_links(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """From the create to the job's activation and deletion, and between those two."""
    paths = result.get("paths", {})
    create = paths.get(_CREATE, {}).get("post")
    job = paths.get(_JOB, {})
    if create is None or not {"patch", "delete"} <= set(job):
        return result
    org = {"org_id": "$request.path.org_id"}
    _links(
        create["responses"]["200"], ["patch", "delete"], {**org, "job_id": "$response.body#/response/job_id"}
    )
    same = {**org, "job_id": "$request.path.job_id"}
    _links(job["patch"]["responses"]["200"], ["delete"], same)
    _links(job["delete"]["responses"]["200"], ["patch"], same)  # then 404: it is gone
    return result


def _links(response: dict[str, Any], methods: list[str], parameters: dict[str, str]) -> None:
    for method in methods:
        operation = _OPERATIONS[method]
        response.setdefault("links", {})[operation] = {
            "operationId": operation,
            "parameters": parameters,
            "description": f"The same job, for {method.upper()} {_JOB}.",
        }
