"""Role locksmith.ops.audit against a real PostgreSQL 15: triggers per database, auditor grants, idempotence."""

from __future__ import annotations

import uuid
from pathlib import Path


def _play(cluster, database, auditor, **overrides):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [
                {
                    "role": "locksmith.ops.audit",
                    "vars": {
                        "audit_become": False,
                        "audit_login_unix_socket": str(cluster.socket_dir),
                        "audit_login_port": cluster.port,
                        "audit_retention_timer_enabled": False,
                        "audit_auditor_role": auditor,
                        "audit_databases": [
                            {"database": database, "tables": ["users"], "exclude_columns": ["password_hash"]},
                            {"database": database, "tables": ["notes"], "diff_only": True, "retention_days": 30},
                        ],
                        **overrides,
                    },
                }
            ],
        }
    ]


def test_role_applies_triggers_and_grants_once(pg_cluster, pg_database, ansible):
    auditor = "auditor_%s" % uuid.uuid4().hex[:8]
    pg_cluster.query('CREATE ROLE "%s"' % auditor)
    try:
        pg_cluster.query(
            "CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text);"
            "CREATE TABLE notes (id int PRIMARY KEY, body text)",
            dbname=pg_database,
        )
        first = ansible.run_playbook(_play(pg_cluster, pg_database, auditor))
        assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert first.changed() >= 1
        again = ansible.run_playbook(_play(pg_cluster, pg_database, auditor))
        assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
        check = ansible.run_playbook(_play(pg_cluster, pg_database, auditor), check=True)
        assert check.rc == 0 and check.changed() == 0
        rows = pg_cluster.query(
            "SELECT c.relname, count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE 'locksmith_audit_%%' GROUP BY 1 ORDER BY 1",
            dbname=pg_database,
        )
        assert rows == [("notes", 4), ("users", 4)]
        assert pg_cluster.query(
            "SELECT has_table_privilege(%s, 'audit.log', 'SELECT'), has_table_privilege(%s, 'audit.log', 'DELETE')",
            (auditor, auditor),
            dbname=pg_database,
        ) == [(True, False)]
        bad = ansible.run_playbook(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "roles": [
                        {
                            "role": "locksmith.ops.audit",
                            "vars": {"audit_databases": [{"database": "shop; rm -rf /", "tables": ["users"]}]},
                        }
                    ],
                }
            ]
        )
        assert bad.rc != 0 and "audit_databases[0]" in bad.stdout
        # A calendar systemd cannot parse is refused before any trigger or unit is written.
        typo = ansible.run_playbook(
            _play(
                pg_cluster,
                pg_database,
                auditor,
                audit_retention_timer_enabled=True,
                audit_retention_on_calendar="dialy",
            )
        )
        assert typo.rc != 0, typo.stdout[-3000:]
        assert "audit_retention_on_calendar is 'dialy', which systemd does not accept" in typo.stdout
        assert not list(Path("/etc/systemd/system").glob("locksmith-audit-retention-*"))
    finally:
        pg_cluster.query(
            'REASSIGN OWNED BY "%s" TO postgres; DROP OWNED BY "%s"' % (auditor, auditor), dbname=pg_database
        )
        pg_cluster.query('DROP ROLE "%s"' % auditor)
