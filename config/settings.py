"""Signet settings. Everything comes from the environment (see .env.example).

With ``DEBUG`` off (production), a missing or malformed required variable stops
the process at start with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.environment import (
    BASE_DIR,
    DEBUG,
    env,
    flag,
    interval,
    proxy_ssl_header,
    setting,
    throttle_rate,
    token_ttl,
)

SECRET_KEY = setting(
    "SECRET_KEY", env.str, "insecure-development-key-only", required_in_production=True
)
if not DEBUG and len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters when DEBUG is off.")
ALLOWED_HOSTS = setting(
    "ALLOWED_HOSTS",
    env.list,
    ["127.0.0.1", "localhost", "[::1]", "testserver"],
    required_in_production=True,
)
CSRF_TRUSTED_ORIGINS = setting("CSRF_TRUSTED_ORIGINS", env.list, [])


# --- HTTPS ---------------------------------------------------------------------------


# With DEBUG off the session and CSRF cookies travel over HTTPS only; a plain-HTTP
# loopback setup turns them off explicitly (SESSION_COOKIE_SECURE=0, CSRF_COOKIE_SECURE=0).
SESSION_COOKIE_SECURE = flag("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = flag("CSRF_COOKIE_SECURE", not DEBUG)

# Sessions stay in the database, but its table holds only a hash of each session key (the
# cookie value), so a dump or backup of it lets nobody sign in (see config/sessions.py).
SESSION_ENGINE = "config.sessions"
# How long an admin sign-in lasts, in seconds (default 12 hours, not Django's two weeks):
# a stolen cookie is worth less the sooner it expires.
SESSION_COOKIE_AGE = setting("SESSION_COOKIE_AGE", env.int, 12 * 60 * 60)
if SESSION_COOKIE_AGE < 60:
    raise ImproperlyConfigured("SESSION_COOKIE_AGE must be at least 60 (seconds).")


# Set it only behind a proxy that overwrites the header on every request: a client could
# otherwise claim HTTPS. Then request.is_secure() is true for proxied HTTPS requests, and
# every absolute URL Signet builds (the webhook URL and `notifications:` block shown for an
# instance) starts with https://.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header()
SECURE_SSL_REDIRECT = flag("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = setting("SECURE_HSTS_SECONDS", env.int, 0)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must not be negative.")
SECURE_HSTS_INCLUDE_SUBDOMAINS = flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = flag("SECURE_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "config.apps.SignetAdminConfig",  # django.contrib.admin with our admin.site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",  # the API lists' query parameters (config/filters.py)
    "knox",  # API tokens, stored as hashes (see apitokens)
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "kms",
    "registry",
    "signing",
    "audit",
    "accounts",
    "apitokens",
    "axes",  # admin sign-in limits (accounts/login_limits.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (collected into STATIC_ROOT) before anything touches the session.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "config.middleware.RejectNulCharactersMiddleware",
    # API requests that meet an unreachable database answer a JSON 503 with Retry-After.
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out sign-in into the lock-out page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# Sub-accounts' per-instance roles (accounts.InstanceMembership) answer has_perm after the
# plain Django permissions.
# AxesStandaloneBackend comes first: it refuses a locked-out sign-in before any password
# is checked (it authenticates nobody itself).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.MembershipBackend",
]
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
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

try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except (ImproperlyConfigured, ValueError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL: readers never block the writer, nor it them. Writers still take turns (one
    # write lock per file), waiting up to the busy timeout. That wait is skipped for a
    # connection still holding a read snapshot older than the last commit: its write
    # fails at once with "database is locked", so long-running code reads in complete
    # pages between its writes and never keeps a cursor (.iterator()) open across them.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        # IMMEDIATE: a transaction takes the write lock when it starts, so two writers
        # queue on the busy timeout instead of one failing with "database is locked".
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# One date format on every page ("2026-11-30 15:30 UTC"): config/formats/en/formats.py.
FORMAT_MODULE_PATH = ["config.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Where `collectstatic` (scripts/serve runs it) gathers the admin's and the API docs'
# assets; whitenoise serves them from there, compressed and with far-future cache headers
# (the file names carry a hash of their content).
STATIC_ROOT = Path(setting("SIGNET_STATIC_ROOT", env.str, str(BASE_DIR / ".local" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


# Rate limits of the costly endpoints (DRF ScopedRateThrottle; counters in the default
# cache, so per process with the default local-memory cache): "sign" covers manual
# signing (signing/sign/, registry/tags/<id>/sign/, signatures/<id>/retry/), "bulk-sign"
# a policy's resign/retry, "verify" image and KMS verification, "kms-sign" the KMS
# SignByAsymmetricKey endpoint (which the registry signer calls once per image when
# KMS_BACKEND=http, hence its higher default).
THROTTLE_RATES = {
    "sign": throttle_rate("SIGNET_THROTTLE_SIGN", "120/min"),
    "bulk-sign": throttle_rate("SIGNET_THROTTLE_BULK_SIGN", "30/min"),
    "verify": throttle_rate("SIGNET_THROTTLE_VERIFY", "120/min"),
    "kms-sign": throttle_rate("SIGNET_THROTTLE_KMS_SIGN", "1200/min"),
}


# API tokens (django-rest-knox keeps only their SHA-512 hash). A new token lives this long;
# "never" makes tokens that do not expire (see apitokens).
API_TOKEN_TTL = token_ttl("API_TOKEN_TTL", "30")
REST_KNOX = {
    "TOKEN_TTL": API_TOKEN_TTL,
    "AUTH_HEADER_PREFIX": "Token",  # the header clients (and KMS_HTTP_TOKEN) already send
    "AUTO_REFRESH": False,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apitokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Bounded ?limit= (at most 1000) and ?offset=: out-of-range values answer 400.
    "DEFAULT_PAGINATION_CLASS": "config.pagination.BoundedLimitOffsetPagination",
    # Each view's ``filterset_class`` (<app>/filtersets.py); bad values answer 400.
    "DEFAULT_FILTER_BACKENDS": ["config.filters.FilterBackend"],
    # JSON nested too deeply answers 400 (not a RecursionError); forms as DRF's defaults.
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Only views with a ``throttle_scope`` are limited (see THROTTLE_RATES).
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": THROTTLE_RATES,
}

# OpenAPI schema at /api/v1/schema/, docs at /api/v1/docs/ (both need a signed-in user
# or a token); the docs page's assets come from drf-spectacular-sidecar (no CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "Signet API",
    "DESCRIPTION": (
        "Container-image signing: KMS keys, registry instances and their push events, "
        "signing policies, signatures and verification. Every error answers "
        "`{code, message, fields?, details?}` (the ErrorResponse schema); `code` is stable "
        "and meant to be programmed against. Authenticate with `Authorization: Token <token>` "
        "(or a session); the registry webhook uses the instance's own bearer token."
    ),
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": [
        "apitokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.add_error_responses",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Health ------------------------------------------------------------------------
# Dotted paths of callables returning a dict merged into /healthz's JSON (apps above
# config add theirs, e.g. the age of the oldest pending signature).
HEALTH_REPORTS: list[str] = []
# Dotted paths of callables run once when a process starts serving (config/wsgi.py:
# runserver, gunicorn), e.g. to register it as a signing worker.
SERVING_STARTED_HOOKS: list[str] = []

# --- Admin sign-in limits (django-axes, see accounts/login_limits.py) -----------------
# After SIGNET_LOGIN_FAILURE_LIMIT failed sign-ins for one user name, or from one address,
# that name or address is locked out for SIGNET_LOGIN_LOCKOUT_MINUTES (429 with a page
# saying so). 0 turns the limit off. Attempts are counted in the database, so every
# process shares them.
SIGNET_LOGIN_FAILURE_LIMIT = setting("SIGNET_LOGIN_FAILURE_LIMIT", env.int, 5)
SIGNET_LOGIN_LOCKOUT_MINUTES = setting("SIGNET_LOGIN_LOCKOUT_MINUTES", env.int, 15)
if SIGNET_LOGIN_FAILURE_LIMIT < 0:
    raise ImproperlyConfigured("SIGNET_LOGIN_FAILURE_LIMIT must not be negative (0: off).")
if SIGNET_LOGIN_LOCKOUT_MINUTES < 1:
    raise ImproperlyConfigured("SIGNET_LOGIN_LOCKOUT_MINUTES must be at least 1.")
AXES_ENABLED = SIGNET_LOGIN_FAILURE_LIMIT > 0
AXES_FAILURE_LIMIT = max(SIGNET_LOGIN_FAILURE_LIMIT, 1)
AXES_COOLOFF_TIME = timedelta(minutes=SIGNET_LOGIN_LOCKOUT_MINUTES)
# Two independent counters: one per user name (guessing one account's password from many
# addresses) and one per address (trying many accounts from one place).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not wipe the counters: with one valid account of their own, an attacker
# could otherwise reset their address's counter between guesses at other accounts.
AXES_RESET_ON_SUCCESS = False
# A lock-out ends on time even while someone keeps trying.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The address the audit log records (same proxy rule, AUDIT_TRUST_X_FORWARDED_FOR).
AXES_CLIENT_IP_CALLABLE = "audit.context.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.login_limits.lockout_response"
# No admin pages of its own (lift a lock-out with manage.py axes_reset_username /
# axes_reset_ip), and no log of every successful sign-in.
AXES_ENABLE_ADMIN = False
AXES_DISABLE_ACCESS_LOG = True

# --- KMS ---------------------------------------------------------------------
# KMS_MASTER_KEY is a keyring: "VERSION:BASE64KEY[,VERSION:BASE64KEY...]". The
# first entry seals new material; the others only open material sealed before a
# rotation (see `manage.py rotate_master_key`). A bare base64 key is version 1.
KMS_MASTER_KEY = setting("KMS_MASTER_KEY", env.str, "", required_in_production=True)
KMS_MASTER_KEY_FILE = setting(
    "KMS_MASTER_KEY_FILE", env.str, str(BASE_DIR / ".local" / "master.key")
)
if not KMS_MASTER_KEY and DEBUG and Path(KMS_MASTER_KEY_FILE).is_file():
    KMS_MASTER_KEY = Path(KMS_MASTER_KEY_FILE).read_text().strip()
# Its format is checked when the kms app starts (kms.apps.check_master_key).
KMS_BACKEND = setting("KMS_BACKEND", env.str, "local")
if KMS_BACKEND not in {"local", "http"}:
    raise ImproperlyConfigured(f"KMS_BACKEND must be 'local' or 'http', not {KMS_BACKEND!r}.")
KMS_HTTP_URL = setting("KMS_HTTP_URL", env.str, "")
KMS_HTTP_TOKEN = setting("KMS_HTTP_TOKEN", env.str, "")
KMS_HTTP_TIMEOUT = setting("KMS_HTTP_TIMEOUT", env.float, 5.0)
if KMS_BACKEND == "http" and not (KMS_HTTP_URL and KMS_HTTP_TOKEN):
    raise ImproperlyConfigured("KMS_BACKEND=http needs KMS_HTTP_URL and KMS_HTTP_TOKEN.")
KMS_REGIONS = setting(
    "KMS_REGIONS",
    env.list,
    ["ap-guangzhou", "ap-shanghai", "ap-beijing", "ap-chengdu", "ap-hongkong", "ap-singapore"],
)
KMS_DEFAULT_REGION = setting("KMS_DEFAULT_REGION", env.str, KMS_REGIONS[0] if KMS_REGIONS else "")
if KMS_DEFAULT_REGION not in KMS_REGIONS:
    raise ImproperlyConfigured("KMS_DEFAULT_REGION must be one of KMS_REGIONS.")
KMS_KEY_CACHE_SIZE = setting("KMS_KEY_CACHE_SIZE", env.int, 256)
# Dotted paths of callables ``guard(key)`` run before a key may be scheduled for
# deletion; each raises a DomainError to refuse (later apps register theirs).
KMS_KEY_DELETION_GUARDS: list[str] = []
# Dotted paths of callables run by `rotate_master_key` after the keys are re-sealed, for
# other material sealed under the master key (returning how many items they re-sealed).
KMS_MASTER_KEY_ROTATION_HOOKS: list[str] = []

# --- Metrics (GET /metrics, see config/metrics.py) ----------------------------------
# Prometheus scrapes with "Authorization: Bearer <SIGNET_METRICS_TOKEN>"; unset, the
# endpoint answers 403 to every request. Processes that share PROMETHEUS_MULTIPROC_DIR (the
# environment variable prometheus_client reads) are counted together.
SIGNET_METRICS_TOKEN = setting("SIGNET_METRICS_TOKEN", env.str, "")
if SIGNET_METRICS_TOKEN and len(SIGNET_METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("SIGNET_METRICS_TOKEN must be at least 32 characters.")
_metrics_dir = setting("PROMETHEUS_MULTIPROC_DIR", env.str, "")
if _metrics_dir:
    # prometheus_client opens its files there from a process's first count.
    try:
        Path(_metrics_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR cannot be created: {exc}") from None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Registry ------------------------------------------------------------------
# Largest notification body the registry webhook accepts (413 above it).
REGISTRY_WEBHOOK_MAX_BODY_BYTES = setting("REGISTRY_WEBHOOK_MAX_BODY_BYTES", env.int, 1024 * 1024)
# Networks Signet never connects to for a registry (backend URL, token realm, blob
# storage), checked when an instance is saved and after DNS resolution on every connection.
# Default: link-local, where cloud metadata services live. Empty ("") turns the check off.
REGISTRY_BACKEND_DENY_NETWORKS = [
    value.strip()
    for value in setting(
        "REGISTRY_BACKEND_DENY_NETWORKS", env.list, ["169.254.0.0/16", "fe80::/10"]
    )
    if value.strip()
]
for _network in REGISTRY_BACKEND_DENY_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"REGISTRY_BACKEND_DENY_NETWORKS is malformed: {_network!r} is not an IP network "
            "like 169.254.0.0/16."
        ) from None
# Plain-http token realms (``http://auth.internal:5001``) the registry client may use
# besides https realms and the registry's own origin.
REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS = setting("REGISTRY_TOKEN_REALM_ALLOWED_ORIGINS", env.list, [])
# Reach registries through the proxies (HTTPS_PROXY, NO_PROXY...), .netrc and CA bundle
# (REQUESTS_CA_BUNDLE) the environment names. Off: each request would look them up.
REGISTRY_TRUST_ENV = setting("REGISTRY_TRUST_ENV", env.bool, False)
# Dotted paths of ``handler(*, instance, manifests, tags, source)`` called inside the
# transaction that records pushes, and of ``handler(*, instance, manifests, source)``
# called before recorded manifests are deleted (contract in registry/services/handlers.py).
REGISTRY_PUSH_HANDLERS: list[str] = []
REGISTRY_DELETE_HANDLERS: list[str] = []

# --- Signing -------------------------------------------------------------------
# The signing app hooks into the registry and the KMS through their extension points.
REGISTRY_PUSH_HANDLERS = ["signing.services.hooks.on_manifests_pushed"]
REGISTRY_DELETE_HANDLERS = ["signing.services.hooks.on_manifests_deleted"]
KMS_KEY_DELETION_GUARDS = ["signing.services.policies.refuse_deleting_policy_keys"]
HEALTH_REPORTS = ["signing.selectors.pending_report"]
SERVING_STARTED_HOOKS = ["signing.services.recovery.start_serving_worker"]
KMS_MASTER_KEY_ROTATION_HOOKS = ["registry.services.reseal_instance_secrets"]
# The broker that carries signing work to `celery -A config worker` processes on any
# number of machines: redis://host:6379/0 (Redis) or amqp://user:pw@host:5672// (RabbitMQ).
# Unset: no Celery; signing runs in an in-process pool (the embedded default of `make run`).
CELERY_BROKER_URL = setting("CELERY_BROKER_URL", env.str, "")
# "celery": sign after commit in a Celery worker (the default with a broker);
# "thread": sign after commit in an in-process pool (the webhook answers at once; the
# default without a broker); "inline": sign on the spot, in the caller's thread.
SIGNING_DISPATCH = setting("SIGNING_DISPATCH", env.str, "celery" if CELERY_BROKER_URL else "thread")
if SIGNING_DISPATCH not in {"celery", "thread", "inline"}:
    raise ImproperlyConfigured("SIGNING_DISPATCH must be 'celery', 'thread' or 'inline'.")
if SIGNING_DISPATCH == "celery" and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("SIGNING_DISPATCH=celery needs CELERY_BROKER_URL.")
SIGNING_WORKER_THREADS = setting("SIGNING_WORKER_THREADS", env.int, 2)
if SIGNING_WORKER_THREADS < 1:
    raise ImproperlyConfigured("SIGNING_WORKER_THREADS must be at least 1.")
# Each signing process registers a worker and renews its heartbeat (and the claims it
# holds) this often; a worker silent for the lease is dead and its rows are taken over.
# Off, signing claims rows for CLAIM_SECONDS with no worker (the test suite's own process,
# whose tables are flushed under it, turns it off).
SIGNING_REGISTER_WORKERS = setting("SIGNING_REGISTER_WORKERS", env.bool, True)
SIGNING_WORKER_HEARTBEAT_SECONDS = setting("SIGNING_WORKER_HEARTBEAT_SECONDS", env.float, 5.0)
SIGNING_WORKER_LEASE_SECONDS = setting("SIGNING_WORKER_LEASE_SECONDS", env.float, 15.0)
if not 0 < 2 * SIGNING_WORKER_HEARTBEAT_SECONDS <= SIGNING_WORKER_LEASE_SECONDS:
    raise ImproperlyConfigured(
        "SIGNING_WORKER_LEASE_SECONDS must be at least twice SIGNING_WORKER_HEARTBEAT_SECONDS."
    )
# A pending row nobody tried this long after it was recorded was never handed to a worker
# (its process died first): recovery hands it over.
SIGNING_RECOVERY_GRACE_SECONDS = setting("SIGNING_RECOVERY_GRACE_SECONDS", env.float, 5.0)
# Manual/bulk requests sign up to this many images before answering; the rest goes to
# the background (the pool or the Celery workers).
SIGNING_SYNC_LIMIT = setting("SIGNING_SYNC_LIMIT", env.int, 50)
if SIGNING_SYNC_LIMIT < 0:
    raise ImproperlyConfigured("SIGNING_SYNC_LIMIT must not be negative.")
# Failed signatures are retried after base * 2^(attempts-1) seconds, capped.
SIGNING_RETRY_BASE_SECONDS = setting("SIGNING_RETRY_BASE_SECONDS", env.int, 30)
SIGNING_RETRY_MAX_SECONDS = setting("SIGNING_RETRY_MAX_SECONDS", env.int, 3600)
# An image the registry does not hold (or whose bytes do not match its digest) is tried
# this many times, then stays failed until someone asks again.
SIGNING_MANIFEST_CHECK_ATTEMPTS = setting("SIGNING_MANIFEST_CHECK_ATTEMPTS", env.int, 5)
if SIGNING_MANIFEST_CHECK_ATTEMPTS < 1:
    raise ImproperlyConfigured("SIGNING_MANIFEST_CHECK_ATTEMPTS must be at least 1.")

# --- Task engine (Celery; CELERY_BROKER_URL is read with SIGNING_DISPATCH above) -----
# What the environment sets; how tasks are delivered (JSON, acks late, prefetch 1, ...)
# is fixed in config/celery.py.
# The queue Signet's tasks go to and its workers consume (one per Signet deployment when
# several share a broker).
CELERY_TASK_DEFAULT_QUEUE = setting("CELERY_TASK_DEFAULT_QUEUE", env.str, "signet")
# Seconds a task may run before its worker process is replaced (a task is at most
# SIGNING_TASK_BATCH_SIZE images); rows it held are taken over when their claim lapses.
CELERY_TASK_TIME_LIMIT = setting("CELERY_TASK_TIME_LIMIT", env.int, 600)
if CELERY_TASK_TIME_LIMIT < 1:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be at least 1 (seconds).")
# Redis only: seconds after which a task a worker took and never acknowledged (it died)
# is delivered again. Longer than any task may run, or a running task is delivered twice.
_visibility_timeout = setting(
    "CELERY_VISIBILITY_TIMEOUT", env.int, 2 * max(CELERY_TASK_TIME_LIMIT, 600)
)
if _visibility_timeout <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT."
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _visibility_timeout}
# Images per "sign these rows" task: bigger requests are split so many workers share them.
SIGNING_TASK_BATCH_SIZE = setting("SIGNING_TASK_BATCH_SIZE", env.int, 50)
if SIGNING_TASK_BATCH_SIZE < 1:
    raise ImproperlyConfigured("SIGNING_TASK_BATCH_SIZE must be at least 1.")


# Periodic work, sent by `celery -A config beat` (one beat per deployment). A run that no
# worker takes before the next one is due expires: a stopped worker finds one, not a pile.
SIGNING_RETRY_INTERVAL_SECONDS = interval("SIGNING_RETRY_INTERVAL_SECONDS", 30)
SIGNING_RECOVERY_INTERVAL_SECONDS = interval("SIGNING_RECOVERY_INTERVAL_SECONDS", 15)
KMS_PURGE_INTERVAL_SECONDS = interval("KMS_PURGE_INTERVAL_SECONDS", 3600)
CELERY_BEAT_SCHEDULE = {
    "retry-due-signatures": {
        "task": "signing.tasks.retry_due",
        "schedule": SIGNING_RETRY_INTERVAL_SECONDS,
        "options": {"expires": SIGNING_RETRY_INTERVAL_SECONDS},
    },
    "recover-stalled-signatures": {
        "task": "signing.tasks.recover_stale",
        "schedule": SIGNING_RECOVERY_INTERVAL_SECONDS,
        "options": {"expires": SIGNING_RECOVERY_INTERVAL_SECONDS},
    },
    "purge-deleted-keys": {
        "task": "kms.tasks.purge_deleted_keys",
        "schedule": KMS_PURGE_INTERVAL_SECONDS,
        "options": {"expires": KMS_PURGE_INTERVAL_SECONDS},
    },
}
# Where beat keeps the time of each entry's last run (one beat per deployment).
CELERY_BEAT_SCHEDULE_FILENAME = setting(
    "CELERY_BEAT_SCHEDULE_FILENAME", env.str, str(BASE_DIR / ".local" / "celerybeat-schedule")
)

# --- Audit ---------------------------------------------------------------------
# Take the client address from X-Forwarded-For (only behind a proxy that sets it).
AUDIT_TRUST_X_FORWARDED_FOR = setting("AUDIT_TRUST_X_FORWARDED_FOR", env.bool, False)
# How many trusted proxies append to X-Forwarded-For: the client is the N-th address from
# the right (what the outermost trusted proxy appended); anything left of it is whatever
# the client sent and is ignored.
AUDIT_TRUSTED_PROXY_COUNT = setting("AUDIT_TRUSTED_PROXY_COUNT", env.int, 1)
if AUDIT_TRUSTED_PROXY_COUNT < 1:
    raise ImproperlyConfigured("AUDIT_TRUSTED_PROXY_COUNT must be at least 1.")
# Keys of events' changes/details shown only to holders of the permission (audit.redaction).
AUDIT_RESTRICTED_FIELDS: dict[str, dict] = {
    "registry.instance": {
        "permission": "registry.change_instance",
        "fields": ["backend_url", "username", "env_variable"],
    },
}
