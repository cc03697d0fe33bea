"""Settings of a Signet process a test starts to serve as deployed: the test settings, but
signing in the in-process pool after the webhook answers, by a registered worker."""

from config.settings_test import *  # noqa: F403

SIGNING_DISPATCH = "thread"
SIGNING_REGISTER_WORKERS = True
