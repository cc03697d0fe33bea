"""Inserting rows that may already exist, in one statement.

``insert_missing`` is ``INSERT ... ON CONFLICT (<unique fields>) DO NOTHING RETURNING``
(PostgreSQL, and SQLite from 3.35): where ``get_or_create`` makes four round trips
(SELECT, SAVEPOINT, INSERT, RELEASE) it makes one, and a conflict is no error, so it needs
no savepoint. The registry webhook records pushes with it: the registry waits for each
answer before it sends the next event, so the webhook's time per event paces how soon
Signet hears of every push in a burst.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from django.db import connection
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)


def insert_missing(rows: Sequence[M], *, unique: Sequence[str]) -> list[M]:
    """INSERT each of ``rows`` (unsaved instances of one model) unless a row with the same
    ``unique`` fields (a unique constraint of the model) exists; the rows inserted, their
    primary keys set.

    PostgreSQL first waits for a concurrent transaction inserting the same key: a row
    left out is then committed, and the caller's next statement reads it. Of two rows
    given with the same key, only the first can be inserted. Values are computed as
    ``save()`` computes them (``auto_now_add`` included); fields with a ``db_default``
    are not supported.
    """
    if not rows:
        return []
    meta = rows[0]._meta
    fields = [field for field in meta.concrete_fields if field is not meta.auto_field]
    batch = max(connection.ops.bulk_batch_size(fields, rows), 1)
    done: list[M] = []
    for start in range(0, len(rows), batch):
        done += _insert_batch(rows[start : start + batch], fields, unique)
    return done


def _column(field: Field | object) -> str:
    assert isinstance(field, Field) and field.column, field
    return field.column


def _attname(field: Field | object) -> str:
    assert isinstance(field, Field), field
    return field.attname


def _insert_batch(rows: Sequence[M], fields: list[Field], unique: Sequence[str]) -> list[M]:
    meta = rows[0]._meta
    keys = [meta.get_field(name) for name in unique]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(_column(field)) for field in fields)
    values = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(rows))
    targets = ", ".join(quote(_column(key)) for key in keys)
    returning = ", ".join(quote(_column(field)) for field in [meta.pk, *keys])
    # Only the model's own (quoted) table and column names are interpolated; every value
    # is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {values} "  # noqa: S608
        f"ON CONFLICT ({targets}) DO NOTHING RETURNING {returning}"
    )
    params = [
        field.get_db_prep_save(field.pre_save(row, True), connection)
        for row in rows
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted = {tuple(found[1:]): found[0] for found in cursor.fetchall()}
    done = []
    for row in rows:
        pk = inserted.pop(tuple(getattr(row, _attname(key)) for key in keys), None)
        if pk is not None:
            row.pk = pk
            row._state.adding = False
            row._state.db = connection.alias
            done.append(row)
    return done
