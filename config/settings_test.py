"""Settings for the test suite: production settings with fixed, throw-away secrets."""

import os

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-" + "x" * 32)
os.environ.setdefault("ALLOWED_HOSTS", "*")
# A fixed throw-away keyring: version 1, 32 zero-free bytes.
os.environ.setdefault("KMS_MASTER_KEY", "1:dGVzdC1tYXN0ZXIta2V5LTAxMjM0NTY3ODlhYmNkZWY=")
os.environ["SIGNET_ENV_FILE"] = "/nonexistent"

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Signing work runs in the caller's thread so tests see its result deterministically;
# tests of the asynchronous path switch to "thread" explicitly.
SIGNING_DISPATCH = "inline"
# No worker registration in the test process (its tables are flushed under a registered
# worker); tests of workers turn it on, processes a test starts use settings_serving.
SIGNING_REGISTER_WORKERS = False

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the in-memory default: the live server, the signing threads and the test
    # share it through WAL and the busy timeout, exactly as a deployed SQLite Signet does.
    (BASE_DIR / ".local").mkdir(exist_ok=True)  # noqa: F405
    # One per process: two test runs in one checkout must not share (and clobber) it.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(BASE_DIR / ".local" / f"test-db-{os.getpid()}.sqlite3")  # noqa: F405
    }

# Nothing runs collectstatic before the tests: {% static %} names the files as they are
# (the production manifest storage would refuse names missing from its manifest), and
# whitenoise finds an (empty) STATIC_ROOT.
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
