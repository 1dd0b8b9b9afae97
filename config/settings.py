"""Settings for the device operations server, read from the environment.

PostgreSQL everywhere. With ``DATABASE_URL`` unset they point at the embedded PostgreSQL of
the zero-configuration run (``config/embedded_postgres.py``, data in ``var/postgres``), and
without ``REDIS_URL`` or ``CELERY_BROKER_URL`` they use a file cache and a filesystem Celery
broker under ``var/``, so a developer needs no server. ``DATABASE_URL`` and ``REDIS_URL``
point them at any PostgreSQL and Redis. Importing them starts and creates nothing: the
launcher (``make run``) starts the server and creates the folders. See README.md,
"Configuration".
"""

from __future__ import annotations

import datetime
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config import embedded_postgres, mosquitto
from config.env import env_bool, env_int, env_list, env_str, env_token, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = embedded_postgres.var_dir()  # env VAR_DIR, else <repo>/var; made by `make run`

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY and not env_str("DATABASE_URL"):
    # The zero-configuration run (no DATABASE_URL: the embedded PostgreSQL of `make run`): the
    # random key its launcher wrote, 0600, into var/, so `manage.py` runs beside it with DEBUG
    # off. A deployment sets DATABASE_URL, so it still must set SECRET_KEY.
    SECRET_KEY = embedded_postgres.read_secret_key(VAR_DIR)
if not SECRET_KEY:
    # Only a developer's machine (DEBUG=1) may run on a known key.
    if not DEBUG:
        hint = "" if env_str("DATABASE_URL") else "; make run writes one to var/secret_key"
        raise ImproperlyConfigured(
            f"SECRET_KEY must be set when DEBUG is off (DEBUG=1 for development{hint})"
        )
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
# Keys that seal secrets kept at rest (webhook secrets, kept idempotent answers holding a token
# or key): Fernet keys, newest first, comma-separated. Unset: one derived from SECRET_KEY
# (config/encryption.py; README, "Production").
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS", [])
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

# --- HTTPS and security headers (README, "Production") -----------------------------------------
# Always: no MIME sniffing, no framing, no referrer to other origins.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# SECURE_HTTPS=1 when clients reach the server over HTTPS (behind a TLS-terminating proxy
# that sets X-Forwarded-Proto): HSTS, redirect to HTTPS, cookies sent over HTTPS only. Off
# by default so a plain-HTTP deployment on a private network (and the test suites) work.
SECURE_HTTPS = env_bool("SECURE_HTTPS", False)
if SECURE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^$"]  # the health check, which load balancers call over HTTP
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [f"https://{host}" for host in ALLOWED_HOSTS])

# How many reverse proxies in front of the server append to X-Forwarded-For; the client's
# address is the N-th from its right (config/client.py). 0: the connection's peer, and the
# header, which anyone can send, is ignored. Read by the login lockout, the per-address limit
# of failed token checks and the audit log.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# Content-Security-Policy on every HTML page (django-csp; config/headers.py): scripts only
# from this server's own files, never inline, never eval'd, never from another host, so an
# injected <script> or onclick= does not run. The console's scripts are files under static/
# and the admin's; Swagger UI's start-up script is a file too (SpectacularSwaggerSplitView in
# server/urls.py). Inline *styles* are allowed: the admin's templates, the console's progress
# bars and Swagger UI set style attributes, and a style cannot run code. Images may be data:
# URIs (Swagger UI's icons). tests/test_console_browser.py fails on any violation Chromium reports.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],  # as X-Frame-Options: DENY
    }
}

INSTALLED_APPS = [
    "config.console.apps.ConsoleAdminConfig",  # django.contrib.admin with the console's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: /api/docs/ needs no internet
    "csp",
    "django_celery_beat",
    "axes",  # before inventory, whose admin makes axes' screens superuser-only
    "config.idempotency",  # the API's kept idempotent requests (plumbing: no app of the domain)
    "inventory",
    "operations",
    "commands",
    "maintenance",
    "server",  # the top floor: the URLconf, the dashboard, manage.py runstack (docs/architecture.md)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # The static files (the console's CSS and scripts, Chart.js, Swagger UI) from the web process.
    "config.static.StaticFilesMiddleware",
    # Content-Security-Policy (django-csp) on HTML answers: the console and the docs.
    "config.headers.PagePolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Below CommonMiddleware, so APPEND_SLASH still redirects: unmatched paths answer JSON 404s.
    "config.api.exceptions.UnmatchedPathMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A database or cache that is down: 503 JSON from plain views too (the inbox), not a 500.
    "config.api.unavailable.ServiceUnavailableMiddleware",
    # The audit log of the console's writes (the API's are recorded by its base view).
    "inventory.audit.ConsoleAuditMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# --- The console's login: brute-force lockout (django-axes; README, "Console") ------------------
# Axes' backend first: it refuses a locked-out user or address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# After this many failed logins a username is locked out from the client address they came from
# (that pair only), for the cool-off; each failure meanwhile starts it again. Per username alone,
# anyone who knew a username could keep its owner locked out from everywhere; per address alone,
# one person's typos behind an office NAT locked out the whole office.
CONSOLE_LOGIN_FAILURE_LIMIT = env_int("CONSOLE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
CONSOLE_LOGIN_COOLOFF_MINUTES = env_int("CONSOLE_LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AXES_FAILURE_LIMIT = CONSOLE_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = datetime.timedelta(minutes=CONSOLE_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a successful login forgets that user's earlier failures
AXES_CLIENT_IP_CALLABLE = "config.client.client_address"  # TRUSTED_PROXY_COUNT, as everywhere
AXES_LOCKOUT_TEMPLATE = "admin/login_locked.html"  # answered with 429
AXES_VERBOSE = False  # no log line per request; lockouts are in the console (Access attempts)

# The top floor (server/): it imports every app, so config/ names it here and imports it nowhere.
ROOT_URLCONF = "server.urls"
# The console's index page: counts and charts over every app (the top floor, like the URLconf).
CONSOLE_DASHBOARD = "server.dashboard.dashboard"
# The console's sidebar and index, by the operator's tasks (config/console/navigation.py).
CONSOLE_NAVIGATION = "server.navigation.SECTIONS"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
DATABASE_URL = env_url("DATABASE_URL", {"postgres", "postgresql", "pgsql"})
_db = dj_database_url.parse(
    # Unset: the embedded server of `make run` (the URL it wrote while it runs, else its socket).
    DATABASE_URL or embedded_postgres.configured_url(VAR_DIR),
    conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0),
)
if not _db["HOST"] and "host" in _db.get("OPTIONS", {}):
    # libpq's `?host=/socket/dir` (the embedded server's form) is Django's HOST.
    _db["HOST"] = str(_db["OPTIONS"].pop("host"))
    if not _db["OPTIONS"]:
        del _db["OPTIONS"]
_db["CONN_HEALTH_CHECKS"] = True
# Prepared statements run their generic plan at once (commands.services.prepared_cursor: the
# device's report and hand-out; Django's own queries are not prepared). Set at connection
# start, so no rolled-back transaction can undo it.
_db.setdefault("OPTIONS", {})["options"] = " ".join(
    filter(None, [_db.get("OPTIONS", {}).get("options", ""), "-c plan_cache_mode=force_generic_plan"])
)
if env_bool("DB_POOL", False):
    # psycopg's pool inside each process; persistent connections must then be off.
    _db["CONN_MAX_AGE"] = 0
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 2, minimum=1),
        "max_size": env_int("DB_POOL_MAX", 10, minimum=1),
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache and broker --------------------------------------------------------------------
REDIS_URL = env_url("REDIS_URL", {"redis", "rediss", "unix"})
CELERY_BROKER_URL = (
    env_url("CELERY_BROKER_URL", {"redis", "rediss", "amqp", "filesystem", "memory"}) or REDIS_URL
)
if REDIS_URL:
    # Short socket timeouts: a Redis whose host is gone (no refusal, only silence) must not hold
    # a request for minutes; every cache operation takes well under a millisecond. After a
    # failure config.cache fails operations at once for a second (docs/reliability.md, issue 23).
    CACHES = {
        "default": {
            "BACKEND": "config.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
        }
    }
else:
    # Shared by web, worker and beat processes on one machine, unlike the local-memory cache.
    CACHES = {
        "default": {
            "BACKEND": "config.cache.CountingFileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

if CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
else:
    # Folders made by the launcher (config/embedded_postgres.py), not here: only `make run` uses them.
    _broker = embedded_postgres.broker_folders(VAR_DIR)
    # A host, which the transport ignores: without one kombu warns "No hostname was supplied".
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker["queue"]),
        "data_folder_out": str(_broker["queue"]),
        "processed_folder": str(_broker["processed"]),
        "control_folder": str(_broker["control"]),  # kombu's default: control/ in the current folder
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}  # filled in below, once the periods are read
# Webhook delivery has a queue of its own, consumed by workers of its own
# (`celery -A config worker -Q webhooks`; README, "Running on PostgreSQL and Redis"): a receiver
# that is slow, or trickles its answer until the attempt's deadline, then holds a delivery
# worker, never the one that runs fan-outs, stops and sweeps (issue 23). The kick and the
# purge go there too, so a busy default queue cannot hold up deliveries either. Every other
# task stays on Celery's default queue, `celery`, which a worker without -Q consumes.
CELERY_TASK_DEFAULT_QUEUE = "celery"
WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_ROUTES = {
    "inventory.tasks.kick_webhooks": {"queue": WEBHOOK_QUEUE},
    "inventory.tasks.deliver_webhooks": {"queue": WEBHOOK_QUEUE},
    "inventory.tasks.purge_webhook_events": {"queue": WEBHOOK_QUEUE},
}
# The queues the workers of a deployment must consume between them (metrics read their lengths).
WORKER_QUEUES = (CELERY_TASK_DEFAULT_QUEUE, WEBHOOK_QUEUE)

# --- Internationalisation -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
# One way of writing a time on every console page, Django's own columns included (config/formats/).
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# The web process serves the static files itself (WhiteNoise, config/static.py): no web server to
# configure. `manage.py collectstatic` writes them into STATIC_ROOT compressed (gzip) with hashed
# names; with DEBUG off, pages then name the hashed files, served with a year's cache headers (a
# changed file gets a new name). Files not collected (development, or collectstatic not run yet)
# are served where they are found (static/, the installed apps'), with short cache headers.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "config.static.CollectedOrFoundStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["inventory.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.LimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.EnvelopedAutoSchema",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 20,
}
API_PAGE_SIZE_MAX = env_int("API_PAGE_SIZE_MAX", 1000, minimum=1)
# Largest request body. A bulk import of 100,000 devices is about 25 MB of JSON; Django's
# default of 2.5 MB would refuse it. A larger body answers 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_MB", 100, minimum=1) * 1024 * 1024
# Largest free-form field of a body (config/api/limits.py): a JSON blob (a command's details,
# an operation's arguments, headless parameters) in KB of compact JSON, free text (reasons, a
# group's description) in characters. Past them, 400 naming the field.
API_MAX_JSON_FIELD_KB = env_int("API_MAX_JSON_FIELD_KB", 64, minimum=1)
API_MAX_TEXT_FIELD_CHARS = env_int("API_MAX_TEXT_FIELD_CHARS", 2000, minimum=1)

SPECTACULAR_SETTINGS = {
    "TITLE": "Device Operations Server API",
    "DESCRIPTION": "Operations, command statuses, the device inbox, headless operations and "
    "maintenance schedules. Every endpoint takes `Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN: no internet needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DeviceStateEnum": "inventory.models.devices.DeviceState",
        # An operation's and a template's operation_type: one choice set, one name.
        "OperationTypeEnum": "operations.choices.OperationType",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "commands.inbox_schema.add_inbox_path",
        # OpenAPI links from each create to its object's operations (the stateful fuzz follows them).
        "config.api.schema.add_item_links",
        "maintenance.api.schema.add_job_links",
        # Swagger UI's groups: by resource, each with its description (last: it sees every path).
        "config.api.schema.tag_by_resource",
    ],
}

# Idempotency keys on POSTs (CONTRACT §11, docs/idempotency.md): a 2xx answer is kept this long.
IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24, minimum=1)
# How long a running request holds its key: a request that dies (its worker killed) blocks its
# key this long at most. Longer than the longest request (gunicorn's --timeout, 30 s by default;
# a 100,000-device bulk import takes 5-12 s); a request that outlives it and is taken over is
# rolled back rather than done twice.
IDEMPOTENCY_LEASE_SECONDS = env_int("IDEMPOTENCY_LEASE_SECONDS", 60, minimum=1)
# Period of the purge of expired keys and dead claims (config.idempotency.tasks).
IDEMPOTENCY_PURGE_SECONDS = env_int("IDEMPOTENCY_PURGE_SECONDS", 600, minimum=1)

# Minimum seconds between two writes of an API key's last_used_at.
API_KEY_LAST_USED_RESOLUTION = env_int("API_KEY_LAST_USED_RESOLUTION", 60, minimum=1)
# How long a resolved token is kept in the cache; revocation clears it at once.
AUTH_CACHE_SECONDS = env_int("AUTH_CACHE_SECONDS", 60, minimum=0)
# While Redis cannot be reached, device tokens are looked up in PostgreSQL as API keys are, and
# the inbox answers from the database without its 304s (true); false: device requests answer
# 503 with Retry-After until Redis is back, so a large fleet's polls do not all fall on
# PostgreSQL (docs/scaling.md, "A Redis outage").
CACHE_OUTAGE_SERVES_DEVICES = env_bool("CACHE_OUTAGE_SERVES_DEVICES", True)
# Requests per minute per API key and per device token (inventory/ratelimit.py); past it, 429
# with Retry-After. Generous, so benchmarks are not throttled; 0 turns a limit off.
RATE_LIMIT_KEY_PER_MINUTE = env_int("RATE_LIMIT_KEY_PER_MINUTE", 6000, minimum=0)
RATE_LIMIT_DEVICE_PER_MINUTE = env_int("RATE_LIMIT_DEVICE_PER_MINUTE", 600, minimum=0)
# Failed token checks per minute per client address; past it those failures answer 429 (a valid
# token from the same address still passes). 0 turns it off.
RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = env_int("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", 60, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Operations and the inbox -------------------------------------------------------------------
# Most device ids an operation may list explicitly; larger fleets are picked by groups or filters.
MAX_QUERY_DEVICES = env_int("MAX_QUERY_DEVICES", 10_000, minimum=1)
# Device key range per fan-out transaction (operations/fanout.py).
FANOUT_CHUNK_SIZE = env_int("FANOUT_CHUNK_SIZE", 50_000, minimum=1)
# Chunks of one fan-out written at the same time, each on its own database connection.
FANOUT_PARALLELISM = env_int("FANOUT_PARALLELISM", 2, minimum=1)
# A fan-out that wrote at least this many commands refreshes the planner's statistics of the
# command table (ANALYZE) after dispatch, instead of leaving stale ones until autovacuum.
FANOUT_ANALYZE_ROWS = env_int("FANOUT_ANALYZE_ROWS", 100_000, minimum=1)
# The longest a waiting advisory lock (config.locks.advisory_lock: the block of command ids a
# fan-out chunk takes) waits before it gives up (PostgreSQL's lock_timeout for that statement);
# the holder keeps it for one statement, so a wait this long means it is stuck.
ADVISORY_LOCK_TIMEOUT_MS = env_int("ADVISORY_LOCK_TIMEOUT_MS", 10_000, minimum=1)
# Period of ``recover_stuck_fan_outs``. It resends at once a started fan-out that runs nowhere
# (its advisory lock is free: the worker died or the run raised), and, after
# FANOUT_STUCK_SECONDS of standing still, one never started (its broker message was lost).
FANOUT_RECOVERY_SECONDS = env_int("FANOUT_RECOVERY_SECONDS", 5, minimum=1)
FANOUT_STUCK_SECONDS = env_int("FANOUT_STUCK_SECONDS", 60, minimum=1)
# Runs of one operation's fan-out that may start: one that raises or dies every time ends as
# FAILURE with the reason, instead of being resent forever.
FANOUT_MAX_ATTEMPTS = env_int("FANOUT_MAX_ATTEMPTS", 5, minimum=1)
# Unfinished commands a stop (cancel, timeout) moves per transaction (operations/stopping.py).
# Measured (bench/lists.py, docs/performance.md run E): 1,000,000 commands in 20.4-24.1 s, about
# 100-120 ms per batch of 5,000, each holding its rows and the operation row that long.
STOP_BATCH_SIZE = env_int("STOP_BATCH_SIZE", 5_000, minimum=1)
# A stop whose commands are still unfinished this long after it, and whose worker holds no
# lock (lost message, killed worker), is sent again by the sweep (operations.sweeps.resume_stops).
STOP_STUCK_SECONDS = env_int("STOP_STUCK_SECONDS", 30, minimum=1)
# Lists: an offset deeper than this is a 400 (page deeper with the ``cursor`` of ``next``), and
# a count above COUNT_ESTIMATE_THRESHOLD rows is the planner's estimate (``count_estimated``).
API_MAX_OFFSET = env_int("API_MAX_OFFSET", 1_000_000, minimum=0)
COUNT_ESTIMATE_THRESHOLD = env_int("COUNT_ESTIMATE_THRESHOLD", 100_000, minimum=1)
# Seconds a handed-out command may wait for its acknowledgement before it is handed out again.
INBOX_REDELIVERY_SECONDS = env_int("INBOX_REDELIVERY_SECONDS", 120, minimum=1)
# Hand-outs without acknowledgement before the command becomes Command TimeOut.
INBOX_MAX_DELIVERIES = env_int("INBOX_MAX_DELIVERIES", 5, minimum=1)
# Most commands one poll hands out.
INBOX_BATCH = env_int("INBOX_BATCH", 20, minimum=1)
# Suggested poll interval and its jitter (a fraction of it), so a fleet does not poll in step.
INBOX_POLL_SECONDS = env_int("INBOX_POLL_SECONDS", 30, minimum=1)
INBOX_POLL_JITTER = 0.2

# --- The device channel over MQTT (contract section 14; docs/mqtt.md) ---------------------------
# On when MQTT_URL is set: mqtt://user:password@host:port (mqtts:// for TLS), the user being the
# server's own broker login (on Mosquitto a dynamic-security admin). Unset, devices poll over HTTP.
MQTT_URL = env_url("MQTT_URL", {"mqtt", "mqtts"})
if not MQTT_URL and not env_str("DATABASE_URL"):
    # The zero-configuration run: the broker `make run` started, while it runs (its URL file,
    # config/mosquitto.py), so `manage.py shell` beside it sees the same broker.
    MQTT_URL = mosquitto.configured_url(VAR_DIR)
# The broker's address as devices reach it (the credentials block's "url"), when it differs from
# the server's (a load balancer, a public name); default: MQTT_URL without its login.
MQTT_DEVICE_URL = env_url("MQTT_DEVICE_URL", {"mqtt", "mqtts"})
# The bridge settles device updates in batches: up to this many, or after this long.
MQTT_BATCH_SIZE = env_int("MQTT_BATCH_SIZE", 1000, minimum=1)
MQTT_BATCH_MS = env_int("MQTT_BATCH_MS", 20, minimum=1)
# next_poll_seconds of an HTTP poll from a device with a live MQTT session: push makes polls rare.
MQTT_SAFETY_POLL_SECONDS = env_int("MQTT_SAFETY_POLL_SECONDS", 3600, minimum=1)
# Period of the reconcile of the devices' broker logins (inventory.broker_logins.reconcile, the
# same as `manage.py mqtt_sync_logins`): the net under the sync that follows each device change.
MQTT_LOGIN_RECONCILE_SECONDS = env_int("MQTT_LOGIN_RECONCILE_SECONDS", 300, minimum=1)
# Period of the sweeps (redelivery, windows, timeouts) and of the last_seen flush.
SWEEP_SECONDS = env_int("SWEEP_SECONDS", 10, minimum=1)
# How often the series sweep (operations.series) makes the runs of due firings of RECURRING
# operations: a run is made at most this late after its firing (docs/operations.md).
SERIES_SWEEP_SECONDS = env_int("SERIES_SWEEP_SECONDS", 5, minimum=1)
# Continuous operations look at device changes right after each device write commits; this
# sweep is the safety net (a lost nudge) and closes those past their end_datetime.
CONTINUOUS_SWEEP_SECONDS = env_int("CONTINUOUS_SWEEP_SECONDS", 5, minimum=1)
# Up to this many changed devices a look reads by key; more (a bulk import), in key chunks.
CONTINUOUS_SMALL_CHANGE = env_int("CONTINUOUS_SMALL_CHANGE", 10_000, minimum=0)

# --- Headless operations (docs/headless.md) -----------------------------------------------------
# Called with the listed operations when a GET asks for update_status=true, in this order.
HEADLESS_STATUS_HELPERS = env_list("HEADLESS_STATUS_HELPERS", ["operations.headless.update_from_commands"])
# A pending or running headless operation this long after it ran is failed as overdue.
HEADLESS_OVERDUE_SECONDS = env_int("HEADLESS_OVERDUE_SECONDS", 3600, minimum=1)

# --- Maintenance schedules (docs/maintenance.md) ------------------------------------------------
# Jobs one tenant may have, active or not: every run of any job repairs every tenant's counters,
# so a tenant's schedules are a load on all; one frequent incremental and one full build are
# what a tenant needs. Past it a create is 409 too_many_jobs.
MAINTENANCE_JOBS_PER_TENANT = env_int("MAINTENANCE_JOBS_PER_TENANT", 10, minimum=1)
# The shortest time between two fires of a full_build job: a full build recounts every
# operation, so one every minute is a scan of the command table every minute. A job that fires
# more often is 400 full_build_too_frequent. 1 allows every minute (beat's own floor).
MAINTENANCE_FULL_BUILD_MIN_MINUTES = env_int("MAINTENANCE_FULL_BUILD_MIN_MINUTES", 60, minimum=1)

# --- Retention and partitions (docs/retention.md) ----------------------------------------------
# Finished operations whose last change is older than this go, with their command statuses and
# history; so do internal commands, headless runs and maintenance executions of that age.
# 0 keeps them forever.
OPERATION_RETENTION_DAYS = env_int("OPERATION_RETENTION_DAYS", 90, minimum=0)
# Command history rows older than this go (whole weekly partitions). 0 keeps them forever.
COMMAND_HISTORY_RETENTION_DAYS = env_int("COMMAND_HISTORY_RETENTION_DAYS", 90, minimum=0)
# Period of the retention run (purge-expired) and rows deleted per batch (one transaction each)
# where a partition cannot be dropped whole; a run stops after RETENTION_MAX_BATCHES batches
# and the next one goes on.
RETENTION_INTERVAL_SECONDS = env_int("RETENTION_INTERVAL_SECONDS", 3600, minimum=1)
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 5000, minimum=1)
RETENTION_MAX_BATCHES = env_int("RETENTION_MAX_BATCHES", 200, minimum=1)
# Milliseconds the retention run waits for the table lock that detaching a partition takes
# (and the partition maker for the one that creating one takes): it gives up and tries again
# on the next run rather than make the inbox wait behind it.
PARTITION_LOCK_TIMEOUT_MS = env_int("PARTITION_LOCK_TIMEOUT_MS", 500, minimum=1)
# Weekly partitions of command statuses and history made ahead (make-partitions, hourly).
COMMAND_PARTITIONS_AHEAD = env_int("COMMAND_PARTITIONS_AHEAD", 4, minimum=1)
# --- Webhooks (CONTRACT §10, docs/events.md) -----------------------------------------------------
# Seconds to wait after each failed attempt; one more attempt than entries, then it is given up.
WEBHOOK_RETRY_SCHEDULE = [
    int(step)
    for step in env_list(
        "WEBHOOK_RETRY_SCHEDULE",
        ["5", "30", "120", "600", "1800", "3600", "10800", "21600", "43200", "86400"],
    )
]
if not WEBHOOK_RETRY_SCHEDULE or min(WEBHOOK_RETRY_SCHEDULE) < 0:
    raise ImproperlyConfigured("WEBHOOK_RETRY_SCHEDULE: a comma-separated list of seconds, each >= 0")
# Deliver to loopback/private/link-local addresses too (tests, single-host set-ups only).
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
# The whole of one attempt: connect, TLS, request, the answer's head and body (a deadline, not
# a timeout per read: inventory/webhooks/deadline.py).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
# Events sent per endpoint batch, between two writes of the attempts and the cursor.
WEBHOOK_BATCH_SIZE = env_int("WEBHOOK_BATCH_SIZE", 500, minimum=1)
# How long a worker holds an endpoint; a killed worker's claim expires after this. A live run
# renews it before any attempt that might outlast it, which needs room for one whole attempt
# and a margin of a quarter lease: at least twice the attempt's deadline.
WEBHOOK_LEASE_SECONDS = env_int("WEBHOOK_LEASE_SECONDS", 60, minimum=2)
if WEBHOOK_LEASE_SECONDS < 2 * WEBHOOK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"WEBHOOK_LEASE_SECONDS={WEBHOOK_LEASE_SECONDS} must be at least twice "
        f"WEBHOOK_TIMEOUT_SECONDS={WEBHOOK_TIMEOUT_SECONDS}, so that a lease outlasts a whole attempt"
    )
# Period of the beat's kick of endpoints with work.
WEBHOOK_POLL_SECONDS = env_int("WEBHOOK_POLL_SECONDS", 1, minimum=1)
WEBHOOK_EVENT_RETENTION_DAYS = env_int("WEBHOOK_EVENT_RETENTION_DAYS", 7, minimum=1)
WEBHOOK_PURGE_BATCH_SIZE = env_int("WEBHOOK_PURGE_BATCH_SIZE", 10_000, minimum=1)

CELERY_BEAT_SCHEDULE.update(
    {
        "make-partitions": {"task": "operations.tasks.make_partitions", "schedule": 3600.0},
        "purge-expired": {
            "task": "maintenance.tasks.purge_expired",
            "schedule": float(RETENTION_INTERVAL_SECONDS),
        },
        "sweep-commands": {"task": "operations.tasks.sweep_commands", "schedule": float(SWEEP_SECONDS)},
        "flush-last-seen": {"task": "inventory.tasks.flush_last_seen", "schedule": float(SWEEP_SECONDS)},
        "recover-stuck-fan-outs": {
            "task": "operations.tasks.recover_stuck_fan_outs",
            "schedule": float(FANOUT_RECOVERY_SECONDS),
        },
        "run-due-headless": {"task": "operations.tasks.run_due_headless", "schedule": float(SWEEP_SECONDS)},
        "resume-stops": {"task": "operations.tasks.resume_stops", "schedule": float(SWEEP_SECONDS)},
        # Approvals undecided past their expiry end in APPROVAL_DENIED (operations.approvals).
        "expire-approvals": {"task": "operations.tasks.expire_approvals", "schedule": float(SWEEP_SECONDS)},
        "fire-series": {"task": "operations.tasks.fire_series", "schedule": float(SERIES_SWEEP_SECONDS)},
        "sweep-continuous": {
            "task": "operations.tasks.sweep_continuous",
            "schedule": float(CONTINUOUS_SWEEP_SECONDS),
        },
        "kick-webhooks": {"task": "inventory.tasks.kick_webhooks", "schedule": float(WEBHOOK_POLL_SECONDS)},
        "purge-webhook-events": {"task": "inventory.tasks.purge_webhook_events", "schedule": 3600.0},
        "purge-idempotency-keys": {
            "task": "config.idempotency.tasks.purge_expired_keys",
            "schedule": float(IDEMPOTENCY_PURGE_SECONDS),
        },
        # The devices' broker logins, reconciled with the plugin (nothing without MQTT_URL).
        "reconcile-broker-logins": {
            "task": "inventory.tasks.reconcile_broker_logins",
            "schedule": float(MQTT_LOGIN_RECONCILE_SECONDS),
        },
    }
)

# --- Observability (docs/observability.md): probes, metrics, logs ----------------------------------
if SECURE_HTTPS:
    # The probes, which load balancers and orchestrators call over plain HTTP, are not redirected.
    SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^healthz$", r"^readyz$"]
# GET /metrics is the installation's, not a tenant's (every tenant's figures together): it answers
# `Authorization: Bearer $METRICS_TOKEN` and a superuser's console session; tenant keys get 403.
# Unset: only the superuser's session (config/api/metrics.py, docs/observability.md).
METRICS_TOKEN = env_token("METRICS_TOKEN", min_length=16)
# Every answer counted by route and status, with its time (Prometheus, GET /metrics): first
# of all middleware, so static files and early refusals are counted too.
MIDDLEWARE = ["config.metrics.RequestMetricsMiddleware", *MIDDLEWARE]
# A request id on every log line and in X-Request-ID, one line per answer (config/logs.py);
# before the metrics, so the id is known everywhere.
MIDDLEWARE = ["config.logs.RequestLogMiddleware", *MIDDLEWARE]

# --- The device path (issue 28; config/lean.py, docs/performance.md "The lean device path") ------
# The inbox poll and a device's status PUT are answered by a handler of their own in the same
# process, in front of the full one: the middleware below only (the request id and log line,
# the metrics, the security headers and HTTPS redirect, CommonMiddleware's host check and
# Content-Length, X-Frame-Options, the 503 of an outage), and a URLconf holding only the
# device views. The URLconf module also says which requests it serves (``serves(environ)``);
# everything else (an API key's PUT, an Idempotency-Key, a non-JSON body) goes to the full stack.
DEVICE_MIDDLEWARE = [
    "config.logs.RequestLogMiddleware",
    "config.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.api.unavailable.ServiceUnavailableMiddleware",
]
DEVICE_URLCONF = "commands.api.device_urls"
# LEAN_DEVICE_PATH=0 sends the device requests through the full stack too (to compare).
LEAN_DEVICE_PATH = env_bool("LEAN_DEVICE_PATH", True)
# DEVICE_GROUP_COMMIT=1: concurrent device reports and hand-outs of one web process settled
# together in one transaction (commands/coalesce.py). Off by default: on this project's 2-CPU
# benchmark box, with 4 threads a process, it made the writes slower (docs/performance.md, "The
# lean device path and group commit"); off, each request is its own one-statement transaction.
DEVICE_GROUP_COMMIT = env_bool("DEVICE_GROUP_COMMIT", False)
# At most this many in one batch.
DEVICE_BATCH_MAX = env_int("DEVICE_BATCH_MAX", 64, minimum=1)
# How many such batches one web process settles at once (each on its leader thread's connection);
# requests arriving while all are busy wait and go together in the next.
DEVICE_SETTLERS = env_int("DEVICE_SETTLERS", 1, minimum=1)

# LOG_FORMAT: `text` (readable lines, the default) or `json` (one JSON object a line, for log
# collectors). LOG_REQUESTS: `all` answers logged (default), `errors` (status >= 400) or `off`.
LOG_FORMAT = env_str("LOG_FORMAT", "text").strip().lower() or "text"
LOG_REQUESTS = env_str("LOG_REQUESTS", "all").strip().lower() or "all"
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: expected text or json")
if LOG_REQUESTS not in ("all", "errors", "off"):
    raise ImproperlyConfigured(f"LOG_REQUESTS={LOG_REQUESTS!r}: expected all, errors or off")
_LOG_FORMATTERS: dict[str, dict[str, object]] = {
    "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(levelname)s %(name)s %(message)s",
        "rename_fields": {"levelname": "level", "name": "logger"},
        "timestamp": True,
    },
}
LOGGING["filters"] = {"request_id": {"()": "config.logs.RequestIdFilter"}}
LOGGING["formatters"] = {LOG_FORMAT: _LOG_FORMATTERS[LOG_FORMAT]}
LOGGING["handlers"] = {
    "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}
}
if LOG_FORMAT == "json":
    # Celery workers log through the root handler above (JSON), not their own format.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
