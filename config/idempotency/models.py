"""One row per idempotency key of a principal: a claim while its request runs, then the kept answer."""

from __future__ import annotations

from django.db import models


class IdempotentRequest(models.Model):
    """A POST made with an ``Idempotency-Key``.

    While the request runs, ``status_code`` is null and ``expires_at`` is the end of its lease
    (``IDEMPOTENCY_LEASE_SECONDS``): a request that dies (its worker killed) leaves a claim
    that any later request with the key takes over once the lease has passed. After a 2xx,
    the row keeps the answer until ``expires_at`` (``IDEMPOTENCY_TTL_HOURS`` after it was
    kept). ``claim`` names the request holding the row, so that one whose lease was taken
    over cannot keep its answer (it is rolled back instead: ``config.idempotency.store``).
    """

    tenant_id = models.BigIntegerField()
    #: Who sent the key (``Principal.identity``: ``key:<id>``, ``device:<device id>``, a device
    #: id being up to 128 characters): a key belongs to its principal, and another one of the
    #: tenant never gets its answer (CONTRACT §11). A plain string, like ``tenant_id``:
    #: plumbing has no foreign key into ``inventory``.
    principal = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    #: SHA-256 (hex) of the method, the path with its query string and the body's SHA-256.
    fingerprint = models.CharField(max_length=64)
    #: The request that holds the key, for the 422 that names what the key was used for.
    method = models.CharField(max_length=8)
    path = models.TextField()
    claim = models.UUIDField()
    #: Null while the request runs; the answer's status once it is kept.
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=200, blank=True)
    #: The answer's body, sealed (``config.encryption.seal``): it may hold a device token, an
    #: API key or a webhook secret.
    body = models.TextField(blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Every lookup names all three (config.idempotency.store): the claim's ON CONFLICT
            # and its SELECT, and the PUT/PATCH/DELETE check.
            models.UniqueConstraint(
                fields=["tenant_id", "principal", "key"],
                name="%(app_label)s_%(class)s_unique_tenant_principal_key",
            )
        ]
        indexes = [
            # The purge: DELETE ... WHERE expires_at <= now() ORDER BY expires_at LIMIT n.
            models.Index(fields=["expires_at"], name="idempotency_expires_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.principal}/{self.key}"
