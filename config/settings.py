"""Pulse settings: one file, configured from the environment.

Every setting has a safe local default so `make run` works with no environment at all.
`PULSE_ENV` picks the mode:

- ``development`` (default): SQLite, a filesystem Celery broker, console email, DEBUG on.
- ``test``: PostgreSQL and Redis for real (pytest sets this through pytest-env).
- ``production``: refuses to start without SECRET_KEY and CREDENTIALS_ENCRYPTION_KEY, or with
  DEBUG on; secure cookies, HSTS, SSL redirect and a content security policy.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"  # local runtime state (SQLite, broker folders); git-ignored

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)  # optional, never committed

PULSE_ENV = env.str("PULSE_ENV", default="development")
if PULSE_ENV not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"PULSE_ENV must be development, test or production, not {PULSE_ENV!r}")
PRODUCTION = PULSE_ENV == "production"
TESTING = PULSE_ENV == "test"

PULSE_VERSION = env.str("PULSE_VERSION", default="0.1.0")

# ---------------------------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------------------------
DEBUG = env.bool("DEBUG", default=PULSE_ENV == "development")
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in production (unset DEBUG or set DEBUG=false).")

if PRODUCTION:
    # No default: a production deployment without its own secret must not start.
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY is required in production.")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-local-development-key-do-not-use-in-production")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Absolute base for links in emails sent outside a request (Celery tasks).
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")

DJANGO_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
]
THIRD_PARTY_APPS = [
    "allauth",
    "allauth.account",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "compressor",
    "anymail",
]
LOCAL_APPS = [
    "accounts",
    "benchmarks",
    "costs",
    "alerts",
    "gateway",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Right after SecurityMiddleware: JSON errors (404, 405, 413, 500…) under /api/ and /v1/.
    "lib.json_errors.JSONErrorsMiddleware",
    # Before anything reads request.GET/POST: query strings are UTF-8 whatever charset is declared.
    "lib.request_charset.UTF8RequestsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "csp.context_processors.nonce",
                "accounts.context_processors.tenancy",
                "alerts.context_processors.unread_alerts",
            ],
        },
    }
]

# ---------------------------------------------------------------------------------------------
# Database and cache
# ---------------------------------------------------------------------------------------------
_default_database = (
    "postgres://postgres@127.0.0.1:5432/pulse" if TESTING else f"sqlite:///{VAR_DIR / 'pulse.sqlite3'}"
)
if PRODUCTION and not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL is required in production (postgres://…).")
DATABASES = {"default": env.db_url("DATABASE_URL", default=_default_database)}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0 if TESTING else 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Two checkouts testing on one machine (a developer's and CI's) get their own test database and
# cache keys, so one run cannot flush or reuse the other's data.
CHECKOUT_ID = hashlib.sha256(str(BASE_DIR).encode()).hexdigest()[:8]
if TESTING:
    DATABASES["default"]["TEST"] = {"NAME": f"test_pulse_{CHECKOUT_ID}"}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and beat share one SQLite file under `make run`.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0" if TESTING else "")
if PRODUCTION and not REDIS_URL:
    # The serverless filesystem broker and per-process cache are for one laptop, not a deployment.
    raise ImproperlyConfigured("REDIS_URL is required in production (redis://…).")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Tests share the developer's Redis; a prefix keeps their keys apart.
            "KEY_PREFIX": f"pulse-test-{CHECKOUT_ID}" if TESTING else "pulse",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# ---------------------------------------------------------------------------------------------
# Authentication (django-allauth)
# ---------------------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
SIGNUP_OPEN = env.bool("SIGNUP_OPEN", default=True)
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_TIMEOUT = 10 * 60  # the emailed code and the one-click link share it
ACCOUNT_LOGIN_BY_CODE_MAX_ATTEMPTS = 3
ACCOUNT_SESSION_REMEMBER = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_RATE_LIMITS = {
    # Sign-in limits, counted in accounts/signin_limits.py. A browser that signed in to the
    # account before (a known device) counts only against itself, so no one else can lock its
    # owner out. Other requests count per address over all accounts, per (account, address),
    # and against a per-account ceiling. Password failures only; code requests when sent.
    "login_failed": "10/m/ip",
    "login_failed_here": "5/5m/key",
    "login_failed_account": "50/h/key",
    "login_failed_device": "5/5m/key",
    "request_login_code": "20/m/ip",
    "login_code_here": "3/m/key",
    "login_code_account": "20/h/key",  # stops bombing an inbox; known devices still get codes
    "login_code_device": "3/m/key",
    "login": "30/m/ip",
    "signup": "20/h/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
}
# Behind N reverse proxies, the client's address is the N-th from the right in X-Forwarded-For;
# without this every sign-in would come from the proxy's address and share its limits (so one
# guesser could lock out everyone). 0 (the default) ignores the header, which clients can forge.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT  # REST_FRAMEWORK["NUM_PROXIES"] too
ACCOUNT_FORMS = {"request_login_code": "accounts.forms.RequestLoginCodeForm"}
SESSION_COOKIE_AGE = int(timedelta(days=7).total_seconds())
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# ---------------------------------------------------------------------------------------------
# API (Django REST framework, drf-spectacular)
# ---------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.throttling.ApiTokenRateThrottle"],
    # DRF reads the client's address for throttling like allauth does; unset, it would take a
    # forged X-Forwarded-For at face value.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "api_token": env.str("API_THROTTLE_RATE", default="1200/min"),
        "ingest": env.str("INGEST_THROTTLE_RATE", default="6000/min"),  # requests; a batch is one
    },
    "DEFAULT_PAGINATION_CLASS": "lib.pagination.PageNumberPagination",  # ?page= as documented
    "PAGE_SIZE": 50,
    # drf-spectacular's, plus the 4xx every operation can answer with (accounts/api_schema.py).
    "DEFAULT_SCHEMA_CLASS": "accounts.api_schema.AutoSchema",
    # DRF's JSON renderer, made unable to fail on a lone surrogate (lib/json_renderer.py).
    "DEFAULT_RENDERER_CLASSES": ["lib.json_renderer.JSONRenderer"]
    + ([] if PRODUCTION else ["rest_framework.renderers.BrowsableAPIRenderer"]),
    "EXCEPTION_HANDLER": "accounts.api_errors.exception_handler",
    # JSON only (no endpoint takes forms or files: anything else is a 415), size- and depth-bounded.
    # Form encoding cannot say null, a list or an empty value (DRF reads an empty form field as
    # absent), so the schema could not describe form bodies either.
    "DEFAULT_PARSER_CLASSES": ["lib.json_parser.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# The largest request body, API included (lib/json_parser.py enforces it on JSON bodies, a JSON
# 413 above it). It must fit the largest batch the API documents: 1,000 events with every field
# at its limit and 20 tags of 64-character keys and 128-character values. Written as Python's
# json.dumps writes it by default (non-ASCII as \uXXXX escapes, 6 bytes per character) with an
# indent, that is 17.7 MB (4.9 MB in ASCII; tests/costs/test_hostile_input.py measures it);
# 24 MiB leaves 40% headroom. Only a batch whose long strings are mostly escaped characters
# outside the BMP (emoji: 12 bytes each) can exceed it; it gets a 413 saying to split it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=24 * 1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "Pulse API",
    "DESCRIPTION": "Benchmarks, costs and budgets for the LLMs your team uses. "
    "Authenticate with `Authorization: Bearer pk_live_…` (a project API token).",
    "VERSION": PULSE_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `source` field with different choices; name each enum.
    "ENUM_NAME_OVERRIDES": {
        "CostEventSourceEnum": "costs.models.CostEvent.Source",
        "CostSourceEnum": "costs.models.CostEvent.CostSource",
        "PriceSourceEnum": "benchmarks.models.Price.Source",
        # "kind" and "status" mean one thing on providers/targets and runs, another on alerts
        # and deliveries; the first keep the names they had before alerts existed.
        "KindEnum": "benchmarks.models.ProviderKind",
        "StatusEnum": "benchmarks.models.Run.Status",
        "AlertKindEnum": "alerts.models.Alert.Kind",
        "DeliveryStatusEnum": "alerts.models.Delivery.Status",
    },
    # Swagger UI is served from our own static files (no CDN; the docs work offline).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# ---------------------------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
    # A task taken by a worker that dies before acknowledging it (acks late, below) goes back to
    # the queue once it has been unacknowledged this long; longer than any task's run or ETA.
    _visibility_timeout = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "visibility_timeout": _visibility_timeout,
        # Look for such tasks every tenth of the timeout (at most once a minute) rather than
        # kombu's default of every ~100 s, so one is redelivered within about 1.1x the timeout.
        "unacked_restore_interval": max(1, min(60, _visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    }
else:
    # A broker that needs no server: messages are files under var/broker.
    CELERY_BROKER_URL = "filesystem://"
    CELERY_RESULT_BACKEND = None
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # else kombu writes ./control/
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True  # a task survives a worker crash: it is redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# ---------------------------------------------------------------------------------------------
# Email: console locally, SMTP via EMAIL_URL (e.g. the mail catcher), an ESP via anymail.
# ---------------------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Pulse <pulse@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ANYMAIL_ESP = env.str("ANYMAIL_ESP", default="")
if ANYMAIL_ESP:
    # ANYMAIL_ESP=brevo|postmark|mailgun|amazon_ses|sendgrid|resend|…; every other ANYMAIL_*
    # variable becomes an anymail setting, e.g. ANYMAIL_BREVO_API_KEY -> ANYMAIL["BREVO_API_KEY"].
    EMAIL_BACKEND = f"anymail.backends.{ANYMAIL_ESP}.EmailBackend"
    ANYMAIL = {
        key.removeprefix("ANYMAIL_"): value
        for key, value in env.ENVIRON.items()
        if key.startswith("ANYMAIL_") and key != "ANYMAIL_ESP"
    }
elif env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# ---------------------------------------------------------------------------------------------
# Static files: whitenoise serves them; django-compressor bundles Chart.js and our JS/CSS.
# ---------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "compressor.finders.CompressorFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION  # serve straight from static/ without collectstatic locally
COMPRESS_ENABLED = env.bool("COMPRESS_ENABLED", default=not DEBUG)
COMPRESS_OFFLINE = env.bool("COMPRESS_OFFLINE", default=PRODUCTION)
COMPRESS_ROOT = STATIC_ROOT

# ---------------------------------------------------------------------------------------------
# Internationalization
# ---------------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------------------------
# Secrets at rest: provider credentials are encrypted with Fernet (comma-separated keys rotate;
# the first encrypts). Production refuses to start without a real key.
# ---------------------------------------------------------------------------------------------
CREDENTIALS_ENCRYPTION_KEYS = env.list("CREDENTIALS_ENCRYPTION_KEY", default=[])
if PRODUCTION and not CREDENTIALS_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("CREDENTIALS_ENCRYPTION_KEY is required in production (a Fernet key).")
if not CREDENTIALS_ENCRYPTION_KEYS:
    # A fixed development key so local data stays readable across restarts. Never used in production.
    CREDENTIALS_ENCRYPTION_KEYS = ["cHVsc2UtZGV2LW9ubHkta2V5LW5ldmVyLWluLXByb2Q="]
for _key in CREDENTIALS_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError as _error:
        raise ImproperlyConfigured(
            "CREDENTIALS_ENCRYPTION_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated; "
            "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from _error

# ---------------------------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------------------------
BENCHMARK_PROMPT = env.str(
    "BENCHMARK_PROMPT",
    default="Explain, in about 150 words, why time to first token matters for chat applications.",
)
BENCHMARK_MAX_TOKENS = env.int("BENCHMARK_MAX_TOKENS", default=256)
BENCHMARK_TIMEOUT_S = env.float("BENCHMARK_TIMEOUT_S", default=120.0)  # per request, whole response
BENCHMARK_READ_TIMEOUT_S = env.float("BENCHMARK_READ_TIMEOUT_S", default=30.0)  # silence between chunks

# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------
# Tag keys that get their own rollup rows (breakdowns by these are instant; other tags are kept
# on each event and filterable in the activity log, but not summarized).
COST_ROLLUP_TAG_KEYS = env.list("COST_ROLLUP_TAG_KEYS", default=["feature", "environment", "end_user", "team"])
# Daily exchange rates (USD to GBP and EUR): fetched when a key is set, else the stored or
# bundled rates are used and shown with their date.
EXCHANGE_RATES_API_KEY = env.str("EXCHANGE_RATES_API_KEY", default="")
EXCHANGE_RATES_URL = env.str("EXCHANGE_RATES_URL", default="https://openexchangerates.org/api/latest.json")
# URLs tenants type (benchmark targets' base URLs, webhooks, gateway upstreams) may not reach
# private, loopback, link-local or reserved addresses in production: lib/egress.py checks the
# address of every connection. Development and tests talk to 127.0.0.1. One organization can be
# allowed in the admin (Organization.allow_private_egress); cloud metadata addresses never are.
TENANT_EGRESS_ALLOW_PRIVATE = env.bool("TENANT_EGRESS_ALLOW_PRIVATE", default=not PRODUCTION)

# ---------------------------------------------------------------------------------------------
# Security
# ---------------------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^health$"]  # load balancers probe over plain HTTP
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
if not PRODUCTION:
    # DRF's browsable API and Swagger UI use inline scripts; only production is strict about it.
    CONTENT_SECURITY_POLICY_REPORT_ONLY = CONTENT_SECURITY_POLICY
    CONTENT_SECURITY_POLICY = None

# ---------------------------------------------------------------------------------------------
# Gateway (gateway/): the OpenAI-compatible proxy, its own ASGI process
# ---------------------------------------------------------------------------------------------
PULSE_GATEWAY_PORT = env.int("PULSE_GATEWAY_PORT", default=8001)
# The base URL callers give the OpenAI SDK, shown on the Gateway page and in snippets.
GATEWAY_PUBLIC_URL = env.str("GATEWAY_PUBLIC_URL", default=f"http://127.0.0.1:{PULSE_GATEWAY_PORT}/v1").rstrip("/")
# Redis holding the gateway's shared state (cache, limits, budgets, breaker, the call stream).
# Unset (make run): an in-process stand-in (fakeredis), so one gateway process still caches,
# limits and records correctly, and drains its own call stream.
GATEWAY_REDIS_URL = env.str("GATEWAY_REDIS_URL", default=REDIS_URL)
# Every gateway key starts with this (tests: this checkout's prefix, cleared before each test).
GATEWAY_KEY_PREFIX = env.str("GATEWAY_KEY_PREFIX", default=f"pulse-test-{CHECKOUT_ID}:gw" if TESTING else "pulse:gw")
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=8 * 1024 * 1024)
GATEWAY_CONNECT_TIMEOUT_S = env.float("GATEWAY_CONNECT_TIMEOUT_S", default=5.0)
# Until the upstream's response headers (a streaming upstream's first byte comes later).
GATEWAY_FIRST_BYTE_TIMEOUT_S = env.float("GATEWAY_FIRST_BYTE_TIMEOUT_S", default=120.0)
# Between two chunks of a streamed answer, and for a whole non-streamed body.
GATEWAY_READ_TIMEOUT_S = env.float("GATEWAY_READ_TIMEOUT_S", default=600.0)
GATEWAY_MAX_ATTEMPTS = env.int("GATEWAY_MAX_ATTEMPTS", default=3)
GATEWAY_RETRY_BUDGET_S = env.float("GATEWAY_RETRY_BUDGET_S", default=30.0)
GATEWAY_BREAKER_FAILURES = env.int("GATEWAY_BREAKER_FAILURES", default=5)
GATEWAY_BREAKER_COOLDOWN_S = env.float("GATEWAY_BREAKER_COOLDOWN_S", default=30.0)
# A hard budget reserves a request's maximum cost before forwarding it: its max_tokens, or this.
GATEWAY_RESERVE_OUTPUT_TOKENS = env.int("GATEWAY_RESERVE_OUTPUT_TOKENS", default=4096)
# How long a process trusts its in-memory copy of a project's configuration (a revoked token
# stops working within this); Redis holds the shared copy, invalidated on every change.
GATEWAY_STATE_LOCAL_TTL_S = env.float("GATEWAY_STATE_LOCAL_TTL_S", default=1.0)
GATEWAY_STATE_REDIS_TTL_S = env.int("GATEWAY_STATE_REDIS_TTL_S", default=300)
GATEWAY_CALL_STREAM = env.str("GATEWAY_CALL_STREAM", default=f"{GATEWAY_KEY_PREFIX}:calls")
GATEWAY_CONSUMER_BATCH = env.int("GATEWAY_CONSUMER_BATCH", default=500)
# A record a consumer claimed but did not acknowledge (it died) is taken over after this.
GATEWAY_CONSUMER_CLAIM_IDLE_S = env.float("GATEWAY_CONSUMER_CLAIM_IDLE_S", default=30.0)

# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
