"""psimexport settings: every value comes from the environment (see README, "Configuration")."""

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from psimexport.env import (
    envbool,
    envchoice,
    envfloat,
    envint,
    envlist,
    envsecret,
    envstr,
    generated_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(envstr("PSIMEXPORT_DATA", str(BASE_DIR / "var"))).expanduser().resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
EXPORTS_DIR = DATA_DIR / "exports"
DEMO_DIR = DATA_DIR / "demo"

SECRET_KEY = envsecret("SECRET_KEY") or generated_secret(DATA_DIR / "secret_key")
DEBUG = envbool("DEBUG", False)

HOST = envstr("HOST", "127.0.0.1")
PORT = envint("PORT", 8000, minimum=1)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", HOST])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

TIME_ZONE = envstr("TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE={TIME_ZONE!r} is not an IANA time zone") from None
USE_TZ = True
USE_I18N = False
LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["psimexport.formats"]  # 24-hour times with seconds in the admin

INSTALLED_APPS = [
    # Admin modules are discovered by urls.py, not at start-up: a management command such as
    # export_archive would otherwise import every admin module (and what they import) first.
    "django.contrib.admin.apps.SimpleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_rq",
    "exports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "psimexport.urls"
WSGI_APPLICATION = "psimexport.wsgi.application"

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

_SQLITE_URL = f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(envstr("DATABASE_URL") or _SQLITE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server and worker are separate processes: WAL lets readers run beside one writer,
    # IMMEDIATE transactions avoid "database is locked" on lock upgrades.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file-backed test database, so a worker process or a live server can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cameras"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# Redis and the job queue. `make run` starts an embedded Redis and sets REDIS_URL when unset.
START_EMBEDDED_REDIS = not envstr("REDIS_URL")
REDIS_URL = envstr("REDIS_URL") or "redis://127.0.0.1:6379/0"
RQ_QUEUES = {
    # Housekeeping has its own queue, which every worker serves first (see exports/worker.py).
    "maintenance": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
    "exports": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}
RQ = {"WORKER_CLASS": "exports.worker.ExportWorker"}
RQ_SHOW_ADMIN_LINK = True

# Export behaviour (names fixed in INTERFACES.md).
PSIMEXPORT_CONTAINER_FORMAT = envchoice(
    "PSIMEXPORT_CONTAINER_FORMAT", "mp4", ("mp4", "avi", "flv", "mov", "asf", "mkv")
)
PSIMEXPORT_RETENTION_HOURS = envint("PSIMEXPORT_RETENTION_HOURS", 24, minimum=1)
PSIMEXPORT_MAX_RANGE_HOURS = envint("PSIMEXPORT_MAX_RANGE_HOURS", 168, minimum=1)
# A longer range is exported as parts of at most this span (memory stays that of one part).
PSIMEXPORT_PART_HOURS = 24
PSIMEXPORT_MAX_BYTES = envint("PSIMEXPORT_MAX_BYTES", None, minimum=0)
PSIMEXPORT_MIN_FREE_BYTES = envint("PSIMEXPORT_MIN_FREE_BYTES", 1024**3, minimum=0)
PSIMEXPORT_MAX_CONCURRENT = envint("PSIMEXPORT_MAX_CONCURRENT", 2, minimum=1)
# Tasks one user may have queued or running at once (Created + InProgress); 429 beyond.
PSIMEXPORT_MAX_QUEUED_PER_USER = envint("PSIMEXPORT_MAX_QUEUED_PER_USER", 100, minimum=1)
# Failed sign-ins per user name and per address in a minute before 429 (exports/throttle.py).
PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE = envint(
    "PSIMEXPORT_LOGIN_FAILURES_PER_MINUTE", 10, minimum=1
)
# A running export keeps a lease in Redis this long (renewed a few times within it); a task
# InProgress without one has lost its worker and maintenance re-queues it.
PSIMEXPORT_JOB_LEASE_SECONDS = envint("PSIMEXPORT_JOB_LEASE_SECONDS", 30, minimum=1)
# How long a job keeps reconnecting to a database that went away before it gives up.
PSIMEXPORT_DB_RETRY_SECONDS = envint("PSIMEXPORT_DB_RETRY_SECONDS", 120, minimum=0)
# An export that reports no progress for this long is stuck on its archive (a network mount
# gone away): the job interrupts it and fails the task with a clear message.
PSIMEXPORT_STALL_SECONDS = envfloat("PSIMEXPORT_STALL_SECONDS", 120.0, minimum=1)
# Live H.264 proxy encodes of the review page at once, across all server processes.
PSIMEXPORT_PROXY_SLOTS = envint("PSIMEXPORT_PROXY_SLOTS", 2, minimum=1)
PSIMEXPORT_ALLOW_ANONYMOUS = envbool("PSIMEXPORT_ALLOW_ANONYMOUS", False)
PSIMEXPORT_TRUST_PROXY = envbool("PSIMEXPORT_TRUST_PROXY", False)
PSIMEXPORT_DEMO = envbool("PSIMEXPORT_DEMO", True)
# The Ed25519 key that signs export manifests (PEM); unset: generated once into the data dir.
PSIMEXPORT_SIGNING_KEY_FILE = envstr("PSIMEXPORT_SIGNING_KEY_FILE").strip()
# The superuser `make run` creates if absent (manage.py ensure_superuser).
DJANGO_SUPERUSER_USERNAME = envstr("DJANGO_SUPERUSER_USERNAME")
DJANGO_SUPERUSER_PASSWORD = envsecret("DJANGO_SUPERUSER_PASSWORD")
DJANGO_SUPERUSER_EMAIL = envstr("DJANGO_SUPERUSER_EMAIL")
if PSIMEXPORT_TRUST_PROXY:
    USE_X_FORWARDED_HOST = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = envchoice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "exports": {"level": LOG_LEVEL},
        "psimexport": {"level": LOG_LEVEL},
        "rq.worker": {"level": LOG_LEVEL},
    },
}
