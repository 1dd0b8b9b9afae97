"""Devices stored with a pseudo-zone move to UTC (issue 23, item 9).

``Factory`` (tzdata's "zone not set yet", ``-00``), ``localtime`` (whatever the server's clock is
set to, so it differed from machine to machine), ``posixrules`` and the ``posix/`` and ``right/``
copies of the database were accepted until issue 12 item 8 b refused them for new devices; the
devices stored before still carried them into device-local windows. UTC is what a device without
a zone gets (the field's default), so it is what these get. The names are frozen here, not read
from ``inventory.models.devices.PSEUDO_ZONES``: a migration must do tomorrow what it did today.
One UPDATE; no event is emitted (a migration runs outside the services), ``updated_at`` moves so
that a client listing changed devices sees them.
"""

from typing import Any

from django.db import migrations
from django.db.models import Q
from django.db.models.functions import Now

PSEUDO_ZONES = ("Factory", "localtime", "posixrules")
PSEUDO_PREFIXES = ("posix/", "right/")


def pseudo_zone() -> Q:
    """The devices whose zone is no place on Earth."""
    condition = Q(timezone__in=PSEUDO_ZONES)
    for prefix in PSEUDO_PREFIXES:
        condition |= Q(timezone__startswith=prefix)
    return condition


def move_pseudo_zones_to_utc(apps: Any, schema_editor: Any) -> int:
    """Set every such device's zone to UTC; returns how many moved."""
    device = apps.get_model("inventory", "Device")
    return int(device.objects.filter(pseudo_zone()).update(timezone="UTC", updated_at=Now()))


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0011_approvals"),
    ]

    operations = [
        # Not reversible in meaning (which device had which pseudo-zone is gone), and nothing
        # needs it back: going back leaves the devices in UTC.
        migrations.RunPython(move_pseudo_zones_to_utc, migrations.RunPython.noop, elidable=True),
    ]
