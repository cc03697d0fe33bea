from __future__ import annotations

import pytest

from kms import services as kms_services

pytest_plugins = ["tests.support.registry_fixtures", "tests.support.live_signet"]


@pytest.fixture(autouse=True)
def _fresh_key_cache():
    """Each test starts with an empty private-key cache (it is per process)."""
    kms_services.key_cache.clear()
    yield
    kms_services.key_cache.clear()
