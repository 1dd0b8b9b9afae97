"""``GET /v2/command-inbox/?device_id=X``: the hottest path of the server.

Every device polls it, so it is a plain Django view rather than a DRF one, on the device
views' one path (``device_requests``: the API's token resolution and error envelope without
DRF's request wrapping, negotiation and rendering). The common answer, "nothing new", is a
304 decided from the cache (``inbox_cache``) with no database query; ``last_seen`` is buffered (``presence``).
Figures are in docs/performance.md. While the cache cannot be reached, a poll is answered
from the database (the token looked up there too), without an empty ETag or a 304.
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from commands import coalesce, device_requests, inbox_cache, push
from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.principal import Principal
from config.cache import degraded
from config.errors import CacheUnavailable
from config.metrics import INBOX_EMPTY, INBOX_HANDED_OUT, INBOX_NOT_MODIFIED
from inventory.device_rows import DEVICE_ID_RE
from inventory.models import Device
from inventory.presence import record_seen


def _device_pk(principal: Principal, device_id: str) -> int | None:
    """The device a caller may poll for: a device token only its own; a key, its tenant's."""
    if principal.is_device:
        return principal.device_pk if device_id == principal.device_id else None
    # Not cached: nothing would drop the entry when the device is deleted or its id reused,
    # and devices poll with their own tokens, which carry their key already.
    return (
        Device.objects.filter(tenant_id=principal.tenant_id, device_id=device_id)
        .values_list("pk", flat=True)
        .first()
    )


def next_poll_seconds() -> int:
    base = settings.INBOX_POLL_SECONDS
    spread = base * settings.INBOX_POLL_JITTER
    return max(1, round(base + random.uniform(-spread, spread)))


@csrf_exempt
def command_inbox(request: HttpRequest) -> HttpResponse:
    # GET only: a poll hands commands out, and a HEAD answer has no body to carry them in.
    if request.method != "GET":
        refused = device_requests.error(405, f'Method "{request.method}" not allowed.')
        refused["Allow"] = "GET"
        return refused
    # A device token's tenant and device generations are read with its lookup, in one round
    # trip: an unchanged inbox costs no other, and a poll that runs the hand-out reads them
    # from there too (before its query, as the ETag needs).
    caller = device_requests.authenticate(request, inbox_cache.GENERATION_TEMPLATES)
    if isinstance(caller, HttpResponse):
        return caller
    principal, seen = caller
    device_id = request.GET.get("device_id", "")
    if not device_id:
        return device_requests.error(400, "This query parameter is required.", "device_id")
    if not DEVICE_ID_RE.match(device_id):  # no device has such an id; keeps cache keys clean
        return device_requests.error(400, "is not a valid device id.", "device_id")
    device_pk = _device_pk(principal, device_id)
    if device_pk is None:
        unknown = f"no device {device_id[:128]!r} visible to this token."
        return device_requests.error(400, unknown, "device_id", error_code="not_found_device")

    record_seen(device_pk)
    # Read before the query: a command committed meanwhile makes this answer's ETag stale. The
    # lookup read the token's own device's; a key (or a lookup not cached yet) needs a read.
    generation = _generations(principal, device_pk, seen)
    tag = inbox_cache.parse_empty_etag(request.headers.get("If-None-Match", ""))
    if (
        tag is not None
        and generation is not None
        and (tag.tenant_id, tag.device_pk) == (principal.tenant_id, device_pk)
        and tag.generations == generation
    ):
        response = HttpResponse(status=304)
        response["ETag"] = request.headers["If-None-Match"].strip()
        INBOX_NOT_MODIFIED.inc()  # in memory (or a memory-mapped file): no I/O on the hot path
        return response

    limit = settings.INBOX_BATCH
    commands, held = hand_out(principal.tenant_id, device_pk, device_id, limit, principal.label)
    etag: str | None = None
    if commands:
        etag = inbox_cache.content_etag([f"{c['id']}@{c['version']}" for c in commands])
        INBOX_HANDED_OUT.inc()
    else:
        # Held back for a while (a rollout's rate), or no generation to name: "nothing new"
        # must not be cached.
        if not held and generation is not None:
            etag = inbox_cache.empty_etag(principal.tenant_id, device_pk, generation)
        INBOX_EMPTY.inc()
    content = {
        "count": len(commands),
        "next": None,
        "previous": None,
        "results": commands,
        # A device with a live MQTT session hears of new commands by push: it polls rarely.
        "next_poll_seconds": (
            settings.MQTT_SAFETY_POLL_SECONDS if push.is_live(device_pk) else next_poll_seconds()
        ),
    }
    response = JsonResponse(DEFAULT_ENVELOPE.success(content, 200))
    if etag is not None:
        response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response


def _generations(principal: Principal, device_pk: int, seen: list[Any] | None) -> tuple[int, int] | None:
    """The tenant's and device's generations: read with the token's lookup, else read now;
    None while the cache cannot be reached (the poll then answers from the database alone)."""
    if seen is not None and device_pk == principal.device_pk:
        return inbox_cache.as_generations(seen)
    try:
        return inbox_cache.generations(principal.tenant_id, device_pk)
    except CacheUnavailable:
        degraded("inbox_304", "device polls are answered from the database, without 304s")
        return None


def hand_out(
    tenant_id: int, device_pk: int, device_id: str, limit: int, actor: str
) -> tuple[list[dict[str, Any]], bool]:
    """Hand out up to ``limit`` of the device's queued commands: them as the API shows command
    statuses, and whether some were held back for a while. Settled with the other hand-outs and
    reports this process has in flight, in one transaction (``commands.coalesce``: the hand-out
    statement of ``services.hand_out`` in ``batches.settle``), answered after its commit."""
    outcome = coalesce.hand_out(tenant_id, device_pk, device_id, actor, limit)
    if outcome.refused:  # a defect while settling it (logged there): Django's 500, as before
        raise RuntimeError(f"the hand-out of device {device_pk} could not be settled")
    return outcome.commands, outcome.held
