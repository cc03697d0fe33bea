"""Where a single-worker backfill spends its time, and how many queries it makes per image.

Run: /work/venv2/bin/python bench/profile_backfill.py [--images 100] [--postgres URL]
     [--sqlite] [--top 25]

Pushes N images to a real docker-registry (``bench/throughput.py``'s images and setup),
then runs ONE backfill over them (``signing.backfill``, what ``manage.py
backfill_signatures`` runs) under ``cProfile`` while Django's ``CaptureQueriesContext``
counts the database queries. Prints the queries per image, grouped by what they touch, and
the functions that took the most time (cumulative and own). The database is a fresh
PostgreSQL one (dropped at the end), or with ``--sqlite`` a throw-away SQLite file.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")

_ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
_ARGS.add_argument("--images", type=int, default=100)
_ARGS.add_argument("--batch-size", type=int, default=200)
_ARGS.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
_ARGS.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
_ARGS.add_argument("--top", type=int, default=25, help="functions listed in each profile")
_ARGS.add_argument("--save", default="", help="also write the profile here (pstats format)")
ARGS = _ARGS.parse_args()
_DATABASE_NAME = f"signet_profile_{os.getpid()}"

if ARGS.sqlite:
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='signet-profile-')}/db"
else:
    import psycopg

    with psycopg.connect(f"{ARGS.postgres}/postgres", autocommit=True) as _conn:
        _conn.execute(f"DROP DATABASE IF EXISTS {_DATABASE_NAME}")
        _conn.execute(f"CREATE DATABASE {_DATABASE_NAME}")
    os.environ["DATABASE_URL"] = f"{ARGS.postgres}/{_DATABASE_NAME}"

import logging  # noqa: E402

from django.db import connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.throughput import Registry, push, signet_setup  # noqa: E402
from signing import backfill  # noqa: E402
from signing.models import Signature, SignatureStatus  # noqa: E402

_TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)"?', re.IGNORECASE)


def query_kind(sql: str) -> str:
    """``SELECT signing_signature``, ``UPDATE kms_key``...: the verb and the first table."""
    verb = sql.lstrip().split(None, 1)[0].upper()
    table = _TABLE.search(sql)
    return f"{verb} {table.group(1) if table else ''}".strip()


def main() -> None:
    # One log line per signed image is the production default; it is not what is measured.
    logging.getLogger("signing").setLevel(logging.WARNING)
    registry = Registry()
    try:
        registry.start()
        images = push(registry, ARGS.images)
        instance = signet_setup(registry, images)
        scope = backfill.plan(instance=instance)
        before = registry.requests_so_far()
        profile = cProfile.Profile()
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            profile.enable()
            result = backfill.backfill(scope, batch_size=ARGS.batch_size, wait_seconds=0)
            profile.disable()
            seconds = time.perf_counter() - started
        signed = Signature.objects.filter(status=SignatureStatus.SIGNED).count()
        assert signed == len(images) and not result.failed, (signed, result)
        count = len(images)
        print(
            f"\n{count} images on {connection.vendor}, {seconds:.2f} s under the profiler, "
            f"{(registry.requests_so_far() - before) / count:.2f} registry requests/image, "
            f"{len(queries) / count:.2f} queries/image ({len(queries)} in all)"
        )
        for kind, number in Counter(query_kind(q["sql"]) for q in queries).most_common():
            print(f"  {number / count:6.2f}/image  {number:5d}  {kind}")
        if ARGS.save:
            profile.dump_stats(ARGS.save)
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(order).print_stats(ARGS.top)
            print(f"\n-- by {order} --")
            print("\n".join(out.getvalue().splitlines()[6:]))
    finally:
        registry.stop()
        connections.close_all()
        if not ARGS.sqlite:
            with psycopg.connect(f"{ARGS.postgres}/postgres", autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {_DATABASE_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
