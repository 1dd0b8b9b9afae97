"""Idempotency keys (CONTRACT §11, docs/idempotency.md): the kept requests and their answers.

Plumbing, not an app of the domain: the API's base view (``config.api.views``) claims a key
before a POST runs and keeps the answer after a 2xx, for every view alike, so no endpoint
(the webhooks' included) can forget it. It lives under ``config/`` rather than as a model of
``inventory`` registered through a hook, because nothing above the base view ever reads or
writes it: a hook would only route plumbing's own table through a floor that has no say in
it. The tenant is therefore a plain ``tenant_id`` column, not a foreign key into
``inventory`` (which ``config/`` may not import), and the principal that owns the key a plain
string (``Principal.identity``); rows of a deleted tenant, key or device simply expire.
"""
