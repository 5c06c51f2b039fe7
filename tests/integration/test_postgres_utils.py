"""module_utils/_postgres.py against a real server: connecting, errors, identifiers on the wire."""

from __future__ import annotations

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _postgres


def _params(cluster, **over):
    params = {k: v.get("default") for k, v in _postgres.postgres_argument_spec().items()}
    params.update(login_host=cluster.host, login_port=cluster.port, ssl_mode="disable", connect_timeout=3)
    params.update(over)
    return params


def test_connect_and_query_with_quoted_identifiers(pg_cluster, pg_database):
    conn = _postgres.connect(_params(pg_cluster), pg_database, autocommit=True)
    try:
        assert _postgres.server_version(conn) // 10000 == 15
        schema, table = _postgres.split_qualified("public.Mixed", "tables[0]")
        with conn.cursor() as cur:
            cur.execute(_postgres.sql.SQL("CREATE TABLE {} (id int)").format(_postgres.identifier(schema, table)))
        rows = _postgres.fetch_all(
            conn, "SELECT relname FROM pg_class WHERE relname = %(name)s AND relkind = 'r'", {"name": "Mixed"}
        )
        assert rows == [{"relname": "Mixed"}]
    finally:
        conn.close()


def test_unknown_database_names_the_fix(pg_cluster):
    with pytest.raises(_postgres.PostgresError, match=r"/no_such_db as postgres: .*check the database name"):
        _postgres.connect(_params(pg_cluster), "no_such_db")


def test_refused_port_names_host_and_port(pg_cluster):
    from tests.harness.process import free_port

    with pytest.raises(_postgres.PostgresError, match="check login_host and login_port"):
        _postgres.connect(_params(pg_cluster, login_port=free_port()), "postgres")
