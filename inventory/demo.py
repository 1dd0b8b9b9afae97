"""The demo of the zero-configuration run (``make run``): its data and the credentials to use it.

``make run`` creates the tenant ``default``, a few devices, two console users (``admin`` and
``approver``, so that one can approve what the other asks for) and an admin API key, and
shows how to log in once the servers are up. A plain token or password is shown once and
stored only as a hash, so the credentials are kept in ``VAR_DIR/credentials.txt`` (mode
0600, like an SSH key): the next run reads them back, checks each against the database, and
shows the ones that still work, or makes a new key (and says so) when the saved one was
revoked, expired or lost. The file is the framed block that is printed; it is read
back by its labels (:func:`read_saved`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.embedded_postgres import write_private
from inventory import tokens
from inventory.models import ApiKey, ConsoleUser, Device, Tenant
from inventory.services import bulk_import_devices, create_api_key, get_or_create_tenant

TENANT = "default"
KEY_NAME = "demo admin key"
#: The second console user: a staff user of tenant ``default`` allowed to approve, so that an
#: operation ``admin`` asks for (a WIPE waits for approval) can be approved by another person
#: at once (docs/approvals.md).
APPROVER = "approver"
DEFAULT_ADDR = "127.0.0.1:8000"
DEMO_DEVICES = [
    {"device_id": "kiosk-berlin-01", "os": "android", "model": "Kiosk 10", "timezone": "Europe/Berlin"},
    {"device_id": "kiosk-berlin-02", "os": "android", "model": "Kiosk 10", "timezone": "Europe/Berlin"},
    {"device_id": "pos-nyc-01", "os": "linux", "model": "POS T2", "timezone": "America/New_York"},
    {"device_id": "phone-tokyo-01", "os": "ios", "model": "iPhone 15", "timezone": "Asia/Tokyo"},
    {"device_id": "router-sp-01", "os": "linux", "model": "Edge R1", "timezone": "America/Sao_Paulo"},
]
#: How to get a new console password; shown when the saved one no longer works.
RESET_PASSWORD = ".venv/bin/python manage.py setup_demo --reset-password"


def credentials_file() -> Path:
    """``VAR_DIR/credentials.txt``: the block of the last ``setup_demo``, mode 0600."""
    return Path(settings.VAR_DIR) / "credentials.txt"


@dataclass
class DemoCredentials:
    """What a user needs to try the server; ``password`` is None when it is not known."""

    addr: str
    username: str
    password: str | None
    api_key: str
    device_tokens: dict[str, str] = field(default_factory=dict)
    #: The second console user (:data:`APPROVER`) and their password (None when not known).
    approver: str = APPROVER
    approver_password: str | None = None
    #: Sentences about what changed since the saved credentials (a new key, a new password).
    notes: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.addr}"


def browsable_addr(addrport: str) -> str:
    """The ``host:port`` a browser on this machine uses for runserver's ``addrport``.

    runserver takes ``8001``, ``0:8001`` or ``0.0.0.0:8001`` (every interface); a browser
    needs a real address, so those become the loopback one."""
    host, _, port = addrport.rpartition(":")
    if host in {"", "0", "0.0.0.0"}:
        host = "127.0.0.1"
    elif host in {"[::]", "::"}:
        host = "[::1]"
    return f"{host}:{port or '8000'}"


#: The single-value labels of the block.
LABELS = {"server", "user", "password", "api-key", "approver", "approver-pw"}


def read_saved(path: Path) -> dict[str, str]:
    """The labelled values of a saved block: ``server``, ``user``, ``password``, ``api-key``,
    ``approver``, ``approver-pw`` and one ``device:<id>`` per device token; ``{}`` if there
    is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    saved: dict[str, str] = {}
    for line in text.splitlines():
        words = line.strip().removeprefix("|").removesuffix("|").split()
        if len(words) >= 2 and words[0] in {
            "server",
            "user",
            "password",
            "api-key",
            "approver",
            "approver-pw",
        }:
            saved.setdefault(words[0], words[1])
        elif len(words) >= 3 and words[0] == "device":
            saved[f"device:{words[1]}"] = words[2]
    return saved


def _key_works(plain: str, tenant: Tenant) -> bool:
    """Whether ``plain`` is a live admin key of ``tenant`` (not revoked, not expired)."""
    parsed = tokens.split(plain)
    if parsed is None or parsed[0] != tokens.API_KEY_KIND:
        return False
    key = (
        ApiKey.objects.filter(tenant=tenant, prefix=parsed[1], role="admin", revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
        .first()
    )
    return key is not None and tokens.same_hash(tokens.hash_token(plain), key.key_hash)


def _device_token_works(plain: str, tenant: Tenant, device_id: str) -> bool:
    parsed = tokens.split(plain)
    if parsed is None or parsed[0] != tokens.DEVICE_TOKEN_KIND:
        return False
    device = Device.objects.filter(
        tenant=tenant, device_id=device_id, token_prefix=parsed[1], token_revoked=False
    ).first()
    return device is not None and tokens.same_hash(tokens.hash_token(plain), device.token_hash)


@transaction.atomic
def ensure_demo(
    addr: str | None = None, username: str = "admin", reset_password: bool = False
) -> DemoCredentials:
    """Create what is missing of the demo and return credentials that work now.

    Saved credentials that still work are reused; a saved key that no longer works (or none)
    is replaced by a new admin key. The console password is never changed behind the user's
    back: a user made now gets a random one, an existing user keeps theirs, and only
    ``reset_password`` sets a new one (``password`` is None when the saved one is stale)."""
    saved = read_saved(credentials_file())
    tenant, _ = get_or_create_tenant(TENANT, "Default organisation")
    notes: list[str] = []

    existing = set(
        Device.objects.filter(
            tenant=tenant, device_id__in=[row["device_id"] for row in DEMO_DEVICES]
        ).values_list("device_id", flat=True)
    )
    new_rows = [dict(row, tags=["demo"]) for row in DEMO_DEVICES if row["device_id"] not in existing]
    known = {
        device_id: saved[f"device:{device_id}"]
        for device_id in existing
        if f"device:{device_id}" in saved
        and _device_token_works(saved[f"device:{device_id}"], tenant, device_id)
    }
    if new_rows:
        known.update(bulk_import_devices(tenant.pk, new_rows).created)
    device_tokens = {
        row["device_id"]: known[row["device_id"]] for row in DEMO_DEVICES if row["device_id"] in known
    }

    password = _console_password(username, saved.get("user"), saved.get("password"), reset_password, notes)
    approver_password = _console_password(
        APPROVER, saved.get("approver"), saved.get("approver-pw"), reset_password, notes, tenant=tenant
    )

    api_key = saved.get("api-key", "")
    if not _key_works(api_key, tenant):
        _, api_key = create_api_key(tenant, "admin", KEY_NAME)
        if saved:
            notes.append("New admin API key: the saved one was revoked, expired or deleted.")

    saved_addr = saved.get("server", "").removeprefix("http://").rstrip("/")
    return DemoCredentials(
        addr=browsable_addr(addr or saved_addr or DEFAULT_ADDR),
        username=username,
        password=password,
        api_key=api_key,
        device_tokens=device_tokens,
        approver_password=approver_password,
        notes=notes,
    )


def _console_password(
    username: str,
    saved_user: str | None,
    saved_password: str | None,
    reset: bool,
    notes: list[str],
    tenant: Tenant | None = None,
) -> str | None:
    """The console user ``username``, made if missing, and a password that works now (None
    when it is not known). Without ``tenant``: a superuser (``admin``); with one: a staff user
    of that tenant with every permission, approving included (:data:`APPROVER`)."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        password = secrets.token_urlsafe(12)
        if tenant is None:
            user_model.objects.create_superuser(username, "", password)
        else:
            user = user_model.objects.create_user(username, "", password, is_staff=True)
            user.user_permissions.set(Permission.objects.all())
            ConsoleUser.objects.create(user=user, tenant=tenant)
        return password
    if reset:
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
        notes.append(f"New console password for {username}.")
        return password
    if saved_user == username and saved_password and user.check_password(saved_password):
        return saved_password
    notes.append(f"The console password of {username} is not known here; a new one: {RESET_PASSWORD}")
    return None


def render(credentials: DemoCredentials) -> str:
    """The framed block: where the server is, how to log in and how to call the API."""
    url = credentials.base_url
    lines = [
        f"server      {url}/",
        "",
        f"console     {url}/admin/",
        f"user        {credentials.username}",
        f"password    {credentials.password or '(unknown: see below)'}",
        f"approver    {credentials.approver}",
        f"approver-pw {credentials.approver_password or '(unknown: see below)'}",
        "            (a second admin of tenant default: approves what the other asks for)",
        "",
        f"api-key     {credentials.api_key}",
        "            (admin key of tenant default: the example under this box)",
    ]
    if credentials.device_tokens:
        lines += ["", "Device tokens (Bearer, on /v2/command-inbox/?device_id=<id>):"]
        width = max(len(device_id) for device_id in credentials.device_tokens)
        lines += [
            f"device {device_id:<{width}}  {token}" for device_id, token in credentials.device_tokens.items()
        ]
        # Push (docs/mqtt.md): with the same token a device gets its own broker login.
        lines += ["Broker login (when make run says push: on), with the device's token:"]
        lines += ["            /v2/mqtt-credentials/?device_id=<id>"]
    lines += ["", *credentials.notes] if credentials.notes else []
    lines += [
        "",
        f"Kept in {_shown_path(credentials_file())} (mode 0600) and shown on every make run.",
        f"New console password: {RESET_PASSWORD}",
    ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    # The example stays out of the box: with the whole key it is wider than most terminals.
    example = f'curl -H "Authorization: Bearer {credentials.api_key}" {url}/v0/devices/'
    return "\n".join([rule, *(f"| {line:<{width}} |" for line in lines), rule, example]) + "\n"


def _shown_path(path: Path) -> str:
    """``path`` relative to the current folder when it is inside it (``var/credentials.txt``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def save(credentials: DemoCredentials) -> str:
    """Render the block, write it to :func:`credentials_file` (created 0600) and return it."""
    block = render(credentials)
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, block)
    return block
