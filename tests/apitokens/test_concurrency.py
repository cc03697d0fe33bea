"""Simultaneous rotations of one user's token leave exactly one working token.

On PostgreSQL the threads overlap in the database and the lock on the user's row orders
them; on SQLite the write lock does.
"""

from __future__ import annotations

import pytest

from apitokens import services
from apitokens.models import ApiToken
from audit.models import AuditEvent
from tests.factories import make_token, make_user
from tests.signing.test_concurrency import run_concurrently

THREADS = 4


@pytest.mark.django_db(transaction=True)
def test_simultaneous_rotations_leave_one_token():
    user = make_user("busy")
    make_token(user)

    outcomes = run_concurrently(THREADS, lambda _n: services.rotate_token(user).token)

    assert [kind for kind, _ in outcomes] == ["ok"] * THREADS, outcomes
    issued = [token for _, token in outcomes]
    remaining = list(ApiToken.objects.filter(user=user).values_list("token_key", flat=True))
    assert len(remaining) == 1 and remaining[0] in {token[:15] for token in issued}
    assert AuditEvent.objects.filter(action="apitokens.token.created").count() == THREADS
    assert AuditEvent.objects.filter(action="apitokens.token.revoked").count() == THREADS
