"""The test PostgreSQL server itself: it starts from Debian's binaries, even as root, on loopback."""

from __future__ import annotations

import psycopg


def test_a_fresh_database_per_test_on_loopback(pg_server, pg_url):
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0].startswith("t_test_a_fresh_database")
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    assert pg_url.startswith("postgresql://postgres@127.0.0.1:")
