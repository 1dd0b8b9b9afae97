"""Which devices have a login on the MQTT broker (contract section 14, docs/mqtt.md)."""

from __future__ import annotations

from django.db import models

from inventory.models.devices import Device


class BrokerLogin(models.Model):
    """A device that asked for its broker login (``GET /v2/mqtt-credentials/``): from then on the
    server keeps a login on the broker for it (``inventory.broker_logins``), in step with the
    device. Devices that never ask get none, so a fleet that polls costs the broker nothing.

    No password here: it is derived from the device's current token (``broker_logins.password``),
    so nothing on the server's side holds it, and a token rotation changes it."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, primary_key=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"broker login of device {self.device_id}"
