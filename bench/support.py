"""Shared by the benchmarks: a fresh PostgreSQL database of the run's own."""

from __future__ import annotations

import os


def create_database(server_url: str, prefix: str) -> tuple[str, str]:
    """A fresh database ``<prefix>_<pid>`` on the server ``server_url`` (no database name
    in it): (its URL, its name). Dropped first if a crashed run left it behind."""
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server_url}/{name}", name


def drop_database(server_url: str, name: str) -> None:
    """Drop the database, ending the connections still open to it."""
    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
