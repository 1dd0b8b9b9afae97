"""``config.transitions.swap``, the one compare-and-swap of the state machines' writers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.transitions import Swapped, swap
from inventory.models import Device
from tests.command_factories import run_in_threads
from tests.conftest import Org, add_device, make_org


def _deactivate(device: Device, then: Callable[[list[Swapped]], None] | None = None) -> list[Swapped]:
    return swap(Device.objects.filter(pk=device.pk), "state", ["active"], {"state": "inactive"}, then=then)


def test_a_move_is_made_once_and_names_the_state_it_left(org: Org) -> None:
    device = add_device(org.tenant, "dev-swap").device
    seen: list[list[Swapped]] = []

    assert _deactivate(device, then=seen.append) == [Swapped(device.pk, "active")]
    assert _deactivate(device, then=seen.append) == []

    device.refresh_from_db()
    assert device.state == "inactive"
    assert seen == [[Swapped(device.pk, "active")]]


def test_what_follows_the_move_commits_with_it_or_neither_does(org: Org) -> None:
    device = add_device(org.tenant, "dev-swap").device

    def fails(_moved: list[Swapped]) -> None:
        raise RuntimeError("the event could not be written")

    with pytest.raises(RuntimeError):
        _deactivate(device, then=fails)

    device.refresh_from_db()
    assert device.state == "active"


def test_concurrent_writers_make_the_move_once(transactional_db: None) -> None:
    device = add_device(make_org("swaps").tenant, "dev-swap").device

    results = run_in_threads([lambda: _deactivate(device) for _ in range(8)])

    assert sorted(len(moved) for moved in results) == [0] * 7 + [1]
