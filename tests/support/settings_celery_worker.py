"""Settings of a ``celery -A config worker`` a test starts to run as deployed: the test
settings, but registered as a signing worker (heartbeat, short claims), and sending the
work it hands on (an index's children, recovered rows) to the broker as production does."""

from config.settings_test import *  # noqa: F403

SIGNING_DISPATCH = "celery"
SIGNING_REGISTER_WORKERS = True
