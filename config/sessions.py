"""Database sessions whose table holds only a hash of each session key (SESSION_ENGINE).

Django's database backend stores the session key, which is the cookie value, in clear:
anyone who reads a database dump or backup could sign in to the admin (and, through
SessionAuthentication, the API) with any live row. Here ``django_session.session_key``
holds ``stored_key(cookie)`` instead; every lookup, existence check, insert, update and
delete hashes the key first, so the cookie value never reaches the database, and a
stored value sent back as a cookie is hashed again and matches nothing.

Why an unkeyed hash (BLAKE2b, 160 bits, 40 hex characters: the column's max_length) and
not an HMAC under SECRET_KEY: a session key is 32 random characters from 36 symbols
(about 165 bits), far beyond guessing, so a secret adds nothing against a dump; and a
keyed hash would sign everyone out whenever SECRET_KEY is rotated. The ``person``
parameter keeps these digests apart from any other BLAKE2b use of the same value.

Rows written by Django's own backend (clear keys, 32 characters) match no hashed lookup:
after the upgrade everyone signs in again (accounts migration 0003 removes those rows).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.contrib.sessions.backends import db
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone

STORED_KEY_LENGTH = 40


def stored_key(session_key: str) -> str:
    """What the sessions table holds for the session whose cookie value is ``session_key``."""
    return hashlib.blake2b(
        session_key.encode(), digest_size=STORED_KEY_LENGTH // 2, person=b"signet.session"
    ).hexdigest()


class SessionStore(db.SessionStore):
    """``db.SessionStore`` with every database access by key going through ``stored_key``.

    ``self.session_key`` stays the cookie value (the middleware sends it to the browser);
    only what is written to or looked up in the table is hashed. ``create``, ``save``,
    ``cycle_key`` and their async variants reach the table only through the methods
    below.
    """

    def _lookup(self) -> dict[str, Any]:
        # Django loads a session from the table only once it has a key
        # (SessionBase._get_session); a new session without one is never looked up.
        assert self.session_key is not None
        return {"session_key": stored_key(self.session_key), "expire_date__gt": timezone.now()}

    def _forget(self, exc: Exception) -> None:
        if isinstance(exc, SuspiciousOperation):
            logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
        self._session_key = None

    def _get_session_from_db(self) -> Any:
        try:
            return self.model.objects.get(**self._lookup())
        except (self.model.DoesNotExist, SuspiciousOperation) as exc:
            self._forget(exc)
            return None

    async def _aget_session_from_db(self) -> Any:
        try:
            return await self.model.objects.aget(**self._lookup())
        except (self.model.DoesNotExist, SuspiciousOperation) as exc:
            self._forget(exc)
            return None

    def exists(self, session_key: str) -> bool:
        return super().exists(stored_key(session_key))

    async def aexists(self, session_key: str) -> bool:
        return await super().aexists(stored_key(session_key))

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        row = super().create_model_instance(data)
        row.session_key = stored_key(row.session_key)
        return row

    async def acreate_model_instance(self, data: dict[str, Any]) -> Any:
        row = await super().acreate_model_instance(data)
        row.session_key = stored_key(row.session_key)
        return row

    def delete(self, session_key: str | None = None) -> None:
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            super().delete(stored_key(session_key))

    async def adelete(self, session_key: str | None = None) -> None:
        session_key = self.session_key if session_key is None else session_key
        if session_key is not None:
            await super().adelete(stored_key(session_key))
