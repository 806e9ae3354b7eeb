"""A private PostgreSQL for the replica rows: the test suite's throw-away server (tests.pgserver).

Its own server, so that the outage row can stop it without touching anything else. Durable
(fsync on), unlike the tests', since the rows measure what production would see. `BENCH_PG_BIN`
names the server binaries' directory; else they are found as the tests find them.
"""

from __future__ import annotations

import os

from tests.pgserver import PostgresUnavailable, server_binaries
from tests.pgserver import PrivatePostgres as _Server

__all__ = ["PostgresUnavailable", "PrivatePostgres"]


class PrivatePostgres(_Server):
    def __init__(self) -> None:
        found = server_binaries(os.environ.get("BENCH_PG_BIN"))
        super().__init__(found, max_connections=300, fast=False)

    def new_database(self, prefix: str = "bench") -> str:
        return super().new_database(prefix)
