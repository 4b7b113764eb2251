"""Settings of krait's browser-test site: a Django site set up as it would be
deployed, with krait alone in front (TLS, HTTP/2, static files from Go).

Everything that differs per run comes from the environment:

- DJANGOSITE_DATA_DIR: directory of the SQLite database (db.sqlite3)
- DJANGOSITE_STATIC_ROOT: where collectstatic puts the files that
  krait serves with --static /static=$DJANGOSITE_STATIC_ROOT
- DJANGOSITE_CSRF_TRUSTED_ORIGINS: comma-separated origins, e.g.
  https://127.0.0.1:8443
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
_default_dir = Path(tempfile.gettempdir()) / "krait-djangosite"

SECRET_KEY = "krait-browser-tests-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # First, so that it logs every request that reaches the app (the tests
    # check that static files never do).
    "krsite.requestlog.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "krsite.urls"
WSGI_APPLICATION = "krsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path(os.environ.get("DJANGOSITE_DATA_DIR", _default_dir)) / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
USE_I18N = True
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"

# Static files: collectstatic writes content-hashed names (base.1a2b3c4d5e6f.css)
# and a manifest; {% static %} resolves through the manifest, and krait's
# static handler serves the hashed names as immutable.
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGOSITE_STATIC_ROOT", str(_default_dir / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}

# HTTPS only, as a real deployment: krait terminates TLS itself and tells the
# app (wsgi.url_scheme / scope["scheme"]), so request.is_secure() is true
# without SECURE_PROXY_SSL_HEADER. Were it not, SECURE_SSL_REDIRECT would
# redirect every page to itself.
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("DJANGOSITE_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"djangosite": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
