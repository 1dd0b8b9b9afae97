"""The devices' logins on the MQTT broker, kept in step with the devices (contract section 14).

Mosquitto's dynamic-security plugin holds them (``inventory.dynsec`` speaks to it); the server
is the truth and the plugin a copy:

- **Who has one.** A device gets a login when it first asks for it
  (``GET /v2/mqtt-credentials/``, :func:`issue`), recorded as a :class:`BrokerLogin` row, not
  when it is created: a fleet of a million devices that poll over HTTP costs the broker
  nothing, and the plugin, which rewrites its whole file on every change, holds only the
  devices that use MQTT.
- **Its name.** Username and client id are both ``{tenant}/{device}`` (:func:`username`), and
  the login is bound to that client id, so a device can neither log in as another nor take
  over another's session by its client id. Neither a slug nor a device id holds ``/``, so the
  name parses back to one device.
- **Its password** is never stored on the server's side: it is an HMAC of the device's
  current token hash under a key derived from ``SECRET_KEY`` (:func:`password`). Asking twice
  gives the same password; rotating the token changes it. The plugin keeps only its salted
  hash, and the login's ``textdescription`` carries a short digest of it (:func:`stamp`), so a
  sync can tell a stale password without reading it back.
- **Its rights.** One role per device, of the same name, allowing exactly its own topics
  (``inventory.device_topics.allowed``); the plugin's default is to deny publishing,
  subscribing and receiving (:data:`DEFAULT_ACCESS`). A single shared role with ``%u``
  patterns would be lighter, but Mosquitto (2.0.11, tested) refuses a pattern's substitution
  for a username or client id holding ``/``, and the topic tree needs the tenant and the
  device as two levels.
- **In step.** A device deleted, deactivated or whose token is rotated or revoked: the
  services call :func:`follow` in their transaction; after commit a Celery task
  (``inventory.tasks.sync_broker_logins``) applies the change, retrying while the broker is
  down, so a login ends within seconds of the change (deleting or disabling a login, or
  changing its password, also disconnects its live session: the plugin kicks it).
  :func:`reconcile` (``manage.py mqtt_sync_logins`` and a periodic task) repairs any drift:
  a lost task, a login removed by hand, a stray one, a changed ``SECRET_KEY``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet

from config import mosquitto
from config.errors import CacheUnavailable
from config.locks import LockSpace, LockTimeout, advisory_lock
from inventory import device_topics, dynsec
from inventory.dynsec import BrokerUnavailable
from inventory.models import BrokerLogin, Device, DeviceState

logger = logging.getLogger(__name__)

__all__ = [
    "BrokerRunning",
    "BrokerUnavailable",
    "Change",
    "follow",
    "issue",
    "provision_offline",
    "reconcile",
    "sync",
]

#: What the plugin allows a client whose roles say nothing about a topic: nothing.
DEFAULT_ACCESS = [
    {"acltype": acltype, "allow": False}
    for acltype in ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe")
]
#: Usernames of devices hold one ``/``; the server's own login (``dos-server``) and any other
#: login made by hand hold none, and a sync never touches them.
SEPARATOR = "/"
#: Usernames per sync task: one task per 1,000 devices of a bulk delete.
TASK_BATCH = 1000
#: The plugin's words for a login or role that exists already, or is gone already.
_ALREADY = {"Client already exists", "Role already exists", "Client not found", "Role not found"}

Sender = Callable[[list[str]], None]
_sender: Sender | None = None


def register_sender(sender: Sender) -> None:
    """How :func:`follow` hands usernames to sync after commit (``inventory.apps`` registers the
    Celery task's ``delay``, which this module may not import: tasks import it)."""
    global _sender
    _sender = sender


def enabled() -> bool:
    """Whether the server has an MQTT channel (``MQTT_URL`` set)."""
    return bool(settings.MQTT_URL)


def _url() -> str:
    if not settings.MQTT_URL:
        raise BrokerUnavailable("MQTT_URL is unset: the server has no broker")
    return str(settings.MQTT_URL)


def username(tenant_slug: str, device_id: str) -> str:
    return f"{tenant_slug}{SEPARATOR}{device_id}"


def is_device_login(name: str) -> bool:
    return name.count(SEPARATOR) == 1 and all(name.split(SEPARATOR))


def _password_key() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"dos/mqtt-device-password/v1", hashlib.sha256).digest()


def password(device_pk: int, token_hash: str) -> str:
    """The device's broker password: derived, never stored. The same for the same token, a new
    one when the token is rotated; unknowable without ``SECRET_KEY``."""
    mac = hmac.new(_password_key(), f"{device_pk}:{token_hash}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def stamp(secret: str) -> str:
    """What the login's ``textdescription`` holds: a short digest of its password, enough to tell
    a stale one (64 bits of a hash of a 256-bit value: nothing to learn the password from)."""
    return "dos " + hashlib.sha256(f"stamp:{secret}".encode()).hexdigest()[:16]


def acls(tenant_slug: str, device_id: str) -> list[dict[str, Any]]:
    """The role of one device: subscribe to and receive its own reply and notify topics, publish
    its own requests; nothing else (:data:`DEFAULT_ACCESS`). A filter is allowed as a literal
    subscription (what the device subscribes to) and as a pattern (a subscription to one of the
    topics it covers, such as one command's replies)."""
    topics = device_topics.allowed(tenant_slug, device_id)
    rules: list[dict[str, Any]] = []
    for topic in topics.subscribe:
        rules += [
            {"acltype": "subscribeLiteral", "topic": topic, "allow": True},
            {"acltype": "subscribePattern", "topic": topic, "allow": True},
            {"acltype": "publishClientReceive", "topic": topic, "allow": True},
            {"acltype": "unsubscribeLiteral", "topic": topic, "allow": True},
        ]
    rules += [{"acltype": "publishClientSend", "topic": topic, "allow": True} for topic in topics.publish]
    return rules


@dataclass(frozen=True)
class Wanted:
    """A login as the server wants it on the broker."""

    username: str
    tenant_slug: str
    device_id: str
    password: str
    active: bool


@dataclass(frozen=True)
class Held:
    """A login as the plugin holds it."""

    username: str
    stamp: str
    disabled: bool


@dataclass
class Change:
    """What a sync changed on the broker, by username."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    enabled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.created, self.updated, self.disabled, self.enabled, self.deleted))

    def summary(self) -> str:
        parts = [
            f"{len(names)} {name}"
            for name in ("created", "updated", "enabled", "disabled", "deleted")
            if (names := getattr(self, name))
        ]
        return ", ".join(parts) or "nothing to change"


# --- what the server wants ----------------------------------------------------------------------

_FIELDS = ("pk", "device_id", "tenant__slug", "token_hash", "state", "token_revoked")


def _wanted(row: dict[str, Any]) -> Wanted:
    return Wanted(
        username=username(row["tenant__slug"], row["device_id"]),
        tenant_slug=row["tenant__slug"],
        device_id=row["device_id"],
        password=password(row["pk"], row["token_hash"]),
        active=row["state"] == DeviceState.ACTIVE and not row["token_revoked"],
    )


def _with_login() -> QuerySet[Device]:
    return Device.objects.filter(pk__in=BrokerLogin.objects.values("device_id"))


def wanted(usernames: Iterable[str] | None = None) -> dict[str, Wanted]:
    """The logins the server wants, by username: every device with a :class:`BrokerLogin`, or
    only those of ``usernames`` (a name with no such device is not in the answer)."""
    devices = _with_login()
    if usernames is not None:
        by_tenant: dict[str, list[str]] = {}
        for name in usernames:
            if is_device_login(name):
                slug, device_id = name.split(SEPARATOR)
                by_tenant.setdefault(slug, []).append(device_id)
        if not by_tenant:
            return {}
        match = Q()
        for slug, device_ids in by_tenant.items():
            match |= Q(tenant__slug=slug, device_id__in=device_ids)
        devices = devices.filter(match)
    found = (_wanted(row) for row in devices.values(*_FIELDS).iterator(chunk_size=2000))
    return {login.username: login for login in found}


def usernames_of(devices: QuerySet[Device] | Sequence[int]) -> list[str]:
    """The usernames of those of ``devices`` (a queryset or primary keys) that have a login."""
    chosen = devices if isinstance(devices, QuerySet) else Device.objects.filter(pk__in=list(devices))
    rows = chosen.filter(pk__in=BrokerLogin.objects.values("device_id")).values_list(
        "tenant__slug", "device_id"
    )
    return [username(slug, device_id) for slug, device_id in rows]


def follow(devices: QuerySet[Device] | Sequence[int]) -> None:
    """Devices are changing in this transaction (deleted, deactivated or reactivated, renamed,
    their token rotated or revoked): bring their logins in step after it commits. Call before
    a delete (the names are read now) and after a rename (the new name) as well as before it.
    Nothing without MQTT, or for devices that never asked for a login."""
    if not enabled() or _sender is None:
        return
    names = usernames_of(devices)
    if names:
        sender = _sender
        transaction.on_commit(lambda: _send(sender, names))


def _send(sender: Sender, names: list[str]) -> None:
    for start in range(0, len(names), TASK_BATCH):
        try:
            sender(names[start : start + TASK_BATCH])
        except Exception:  # the change is committed; the periodic reconcile catches up
            logger.warning("could not queue the sync of %d broker logins", len(names), exc_info=True)


# --- what the plugin holds ----------------------------------------------------------------------


def _check(answers: Iterable[dynsec.Answer]) -> None:
    for answer in answers:
        if answer.error and answer.error not in _ALREADY:
            raise dynsec.CommandFailed(f"{answer.command}: {answer.error}")


def _held(answer: dynsec.Answer) -> Held | None:
    client = answer.data.get("client")
    if answer.error or not isinstance(client, dict):
        return None
    return Held(str(client["username"]), str(client.get("textdescription", "")), bool(client.get("disabled")))


def held(control: dynsec.Control, usernames: Sequence[str] | None = None) -> dict[str, Held]:
    """The device logins the plugin holds: those of ``usernames``, or all of them."""
    if usernames is None:
        listed = control.run([{"command": "listClients", "verbose": False, "count": -1}])
        _check(listed)
        usernames = [name for name in listed[0].data.get("clients", []) if is_device_login(name)]
    answers = control.run([{"command": "getClient", "username": name} for name in usernames])
    return {login.username: login for answer in answers if (login := _held(answer)) is not None}


# --- bringing one in step with the other --------------------------------------------------------


def _create(login: Wanted) -> list[dict[str, Any]]:
    commands: list[dict[str, Any]] = [
        {
            "command": "createRole",
            "rolename": login.username,
            "acls": acls(login.tenant_slug, login.device_id),
        },
        {
            "command": "createClient",
            "username": login.username,
            "clientid": login.username,
            "password": login.password,
            "textdescription": stamp(login.password),
            "roles": [{"rolename": login.username}],
        },
    ]
    if not login.active:
        commands.append({"command": "disableClient", "username": login.username})
    return commands


def plan(
    wanted: dict[str, Wanted],
    held: dict[str, Held],
    among: Iterable[str],
    create: bool = True,
    passwords: bool = False,
) -> tuple[list[dict[str, Any]], Change]:
    """The commands that make the plugin's logins of ``among`` what the server wants, and what
    they change. Without ``create`` a wanted login the plugin lacks is left alone (a targeted
    sync: only :func:`issue` and :func:`reconcile` create). A password is changed where the
    login's stamp is not its password's, or everywhere with ``passwords`` (one set by hand
    keeps its stamp: the plugin never shows a password)."""
    commands: list[dict[str, Any]] = []
    change = Change()
    for name in sorted(set(among)):
        want, have = wanted.get(name), held.get(name)
        if want is None and have is not None:
            # Deleting the login disconnects its session; the role goes with it.
            commands += [
                {"command": "deleteClient", "username": name},
                {"command": "deleteRole", "rolename": name},
            ]
            change.deleted.append(name)
        elif want is not None and have is None:
            if create:
                commands += _create(want)
                change.created.append(name)
        elif want is not None and have is not None:
            if not want.active and not have.disabled:
                commands.append({"command": "disableClient", "username": name})  # kicks its session
                change.disabled.append(name)
            if passwords or have.stamp != stamp(want.password):
                # A new password (a rotated token) kicks the session that logged in with the old.
                commands.append(
                    {
                        "command": "modifyClient",
                        "username": name,
                        "password": want.password,
                        "textdescription": stamp(want.password),
                    }
                )
                change.updated.append(name)
            if want.active and have.disabled:
                commands.append({"command": "enableClient", "username": name})
                change.enabled.append(name)
    return commands, change


def _prepare(control: dynsec.Control) -> None:
    """Deny by default. The project's broker starts so (``config.mosquitto.prepare``); the
    reconcile says it again for a broker set up by hand. Not on every login: each command that
    changes something makes the plugin rewrite its whole file."""
    _check(control.run([{"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS}]))


@contextmanager
def _one_change_at_a_time() -> Iterator[None]:
    """Serialise every change of the broker's device logins (sync, issue, reconcile), across
    workers, web processes and machines, and have each read the broker's state before the
    devices' (``held`` then ``wanted``).

    Two unserialised runs could undo each other: a token rotated twice, each sync computing
    its password, the older one applied last; a reconcile that read a device before its
    deletion re-creating the login the deletion's sync had just removed. Serialised, a run
    sees what every earlier run did; reading the devices last, it never acts on a device state
    older than the broker's, and a device change committed after that read queues a sync of
    its own (``follow``), which runs after this one. Waiting longer than
    ``ADVISORY_LOCK_TIMEOUT_MS`` (a long reconcile) is a :class:`BrokerUnavailable`: the task
    retries, the credentials request answers 503 with Retry-After."""
    try:
        with advisory_lock(LockSpace.BROKER_LOGINS, "device-logins"):
            yield
    except LockTimeout as error:
        raise BrokerUnavailable(f"another change of the broker's logins is under way: {error}") from None


# --- what the broker is known to hold ---------------------------------------------------------
#
# A credentials request that found the device's login in step on the broker remembers so in the
# cache (the stamp of its password): the next request for that login answers from the memo,
# without the broker round trip and the lock that serialises every change of the logins (about
# 35 devices a second at best, one after the other: a fleet connecting for the first time, or
# again after a rotation of many tokens, waited minutes). Any change that may touch a login
# (``sync``: deletion, deactivation, rename, rotation, revocation; ``reconcile`` repairing
# drift) forgets its memo first, and a rotated token gives another password, so another stamp:
# the memo is only ever trusted for the very password the broker was seen to hold. A broker
# that lost its logins behind the server's back (a file restored) is repaired by the periodic
# reconcile, which forgets what it changes; the memo lapses after :data:`MEMO_SECONDS` anyway.

MEMO_KEY = "mqtt:login:{broker}:{username}"
MEMO_SECONDS = 3600


def _memo_key(username: str) -> str:
    """The memo of ``username`` on this server's broker (another ``MQTT_URL``, another memo)."""
    broker = hashlib.sha256(_url().encode()).hexdigest()[:12]
    return MEMO_KEY.format(broker=broker, username=username)


def _remember(logins: Iterable[Wanted]) -> None:
    held_now = {_memo_key(w.username): stamp(w.password) for w in logins if w.active}
    if held_now:
        with contextlib.suppress(CacheUnavailable):  # then the next request asks the broker
            cache.set_many(held_now, timeout=MEMO_SECONDS)


def _forget(usernames: Iterable[str]) -> None:
    keys = [_memo_key(name) for name in usernames]
    if keys:
        try:
            cache.delete_many(keys)
        except CacheUnavailable:
            logger.warning("broker login memos not forgotten (cache unavailable): %d", len(keys))


def known(device: Device, tenant_slug: str) -> Wanted | None:
    """The device's login when the broker was last seen holding it with its current password
    (see above); None when that is not known (then :func:`issue`)."""
    login = _wanted(
        {
            "pk": device.pk,
            "device_id": device.device_id,
            "tenant__slug": tenant_slug,
            "token_hash": device.token_hash,
            "state": device.state,
            "token_revoked": device.token_revoked,
        }
    )
    if not login.active:
        return None
    try:
        remembered = cache.get(_memo_key(login.username))
    except CacheUnavailable:
        return None
    return login if remembered == stamp(login.password) else None


def sync(usernames: Sequence[str]) -> Change:
    """Bring the logins of ``usernames`` in step with their devices: delete those of gone
    devices, disable those of inactive devices or revoked tokens, change stale passwords.
    Idempotent. Raises :class:`BrokerUnavailable` while the broker is down."""
    if not enabled() or not usernames:
        return Change()
    _forget(usernames)
    with _one_change_at_a_time(), dynsec.connect(_url()) as control:
        have = held(control, [name for name in usernames if is_device_login(name)])
        want = wanted(usernames)  # after the broker's state: see _one_change_at_a_time
        commands, change = plan(want, have, usernames, create=False)
        if commands:
            _check(control.run(commands))
        _forget(usernames)  # again, under the lock: a memo written meanwhile is of before
    if change:
        logger.info("broker logins: %s", change.summary())
    return change


def issue(device: Device, tenant_slug: str) -> Wanted:
    """The device's login, made on the broker if it has none (or brought in step if it has):
    what ``GET /v2/mqtt-credentials/`` answers. Raises :class:`BrokerUnavailable`."""
    BrokerLogin.objects.get_or_create(device_id=device.pk)
    name = username(tenant_slug, device.device_id)
    with _one_change_at_a_time(), dynsec.connect(_url()) as control:
        have = held(control, [name])
        want = wanted([name])
        commands, _ = plan(want, have, [name])
        if commands:
            _check(control.run(commands))
        if name in want:  # in step now, as read under the lock
            _remember([want[name]])
    if name not in want:  # deleted meanwhile: the sync queued by its deletion removes the login
        raise Device.DoesNotExist(name)
    return want[name]


def reconcile(dry_run: bool = False, passwords: bool = False) -> Change:
    """Make the plugin hold exactly the logins the server wants: create the missing, delete the
    stray (device logins of no device with a login), disable, enable and change passwords where
    they differ (every password with ``passwords``: that disconnects every device). Idempotent:
    a second run changes nothing. ``dry_run`` reports without changing. Raises
    :class:`BrokerUnavailable`."""
    if not enabled():
        return Change()
    with _one_change_at_a_time(), dynsec.connect(_url()) as control:
        if not dry_run:
            _prepare(control)
        have = held(control)
        want = wanted()
        commands, change = plan(want, have, set(want) | set(have), passwords=passwords)
        if commands and not dry_run:
            _forget(_touched(change))
            _check(control.run(commands))
    if change and not dry_run:
        logger.info("broker logins reconciled: %s", change.summary())
    return change


def _touched(change: Change) -> list[str]:
    return [*change.created, *change.updated, *change.disabled, *change.enabled, *change.deleted]


class BrokerRunning(Exception):
    """A Mosquitto runs on the dynamic-security file :func:`provision_offline` was to write."""


def provision_offline(path: Path, dry_run: bool = False, force: bool = False) -> Change:
    """Give every active device a login, and make the logins of the plugin's file at ``path``
    exactly what the server wants (what :func:`reconcile` does), by writing the file once while
    its broker is stopped.

    Why: the plugin rewrites its whole file after every change, so :func:`reconcile` on a
    running broker takes minutes for a few thousand new logins and grows with their square
    (docs/mqtt.md, "Many devices at once"). Here the same commands (:func:`plan`: the same
    username, client id, derived password, role and ACLs) are applied to the file by
    ``dynsec.apply_offline``, with the password hashed as the plugin hashes it, so a login
    made here cannot be told from one made on the running broker. Unlike the online path, every
    active device gets a login now (a :class:`BrokerLogin` row), not on its first
    ``GET /v2/mqtt-credentials/``, and the logins are remembered as held (:func:`known`, for an
    hour; not with ``force``, where a running broker may write its own copy over the file), so
    the fleet's first credentials requests answer without asking the broker one by one. The
    server's own login, its role and any login made by hand are left alone. Idempotent: a
    second run changes nothing and leaves the file as it is.

    Raises :class:`BrokerRunning` when a broker on this machine loads the file (its next
    change would write back what it holds in memory over this one), unless ``force``."""
    if not force and (pid := mosquitto.running_on(path)) is not None:
        raise BrokerRunning(
            f"mosquitto (pid {pid}) runs on {path}: stop it first (it would overwrite the file), or force"
        )
    document: dict[str, Any] = json.loads(path.read_text())
    if not dry_run:
        active = Device.objects.filter(state=DeviceState.ACTIVE, token_revoked=False)
        missing = active.exclude(pk__in=BrokerLogin.objects.values("device_id")).values_list("pk", flat=True)
        BrokerLogin.objects.bulk_create(
            (BrokerLogin(device_id=pk) for pk in missing.iterator(chunk_size=5000)),
            batch_size=5000,
            ignore_conflicts=True,
        )
    want = wanted()
    if dry_run:  # the logins a run would add, as if their rows were there
        active = Device.objects.filter(state=DeviceState.ACTIVE, token_revoked=False)
        rows = active.exclude(pk__in=BrokerLogin.objects.values("device_id")).values(*_FIELDS)
        want.update((login.username, login) for login in map(_wanted, rows.iterator(chunk_size=2000)))
    have = {
        name: Held(name, description, disabled)
        for name, (description, disabled) in dynsec.held_offline(document).items()
        if is_device_login(name)
    }
    commands, change = plan(want, have, set(want) | set(have))
    default = {acl["acltype"]: acl["allow"] for acl in DEFAULT_ACCESS}
    if document.get("defaultACLAccess") != default:
        commands.insert(0, {"command": "setDefaultACLAccess", "acls": DEFAULT_ACCESS})
    if commands and not dry_run:
        _check(dynsec.apply_offline(document, commands))
        _write(path, document)
        logger.info("broker logins written to %s: %s", path, change.summary())
    if not dry_run and not force:  # the broker started on this file holds these
        _remember(want.values())
    return change


def _write(path: Path, document: dict[str, Any]) -> None:
    """Replace the file in one step (a crash leaves the old file or the new, never half of
    one), keeping its mode: it holds the admin login's password hash."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent="\t"))
    os.chmod(temporary, path.stat().st_mode & 0o777)
    os.replace(temporary, path)
