"""A PostgreSQL cluster that asks every role but the superuser for a scram-sha-256 password on 127.0.0.1.

The superuser keeps trust on loopback, so the harness helpers (query, create_database) work unchanged; any other
role must log in with its password, as on a hardened server (roles/postgresql_hardening).
"""

from __future__ import annotations

from .postgres import PostgresCluster


class PasswordPostgresCluster(PostgresCluster):
    """PostgresCluster whose pg_hba.conf requires scram-sha-256 passwords for every role but the superuser."""

    def start(self) -> PasswordPostgresCluster:
        super().start()
        with open(self.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
            conf.write("password_encryption = 'scram-sha-256'\n")
        (self.datadir / "pg_hba.conf").write_text(
            f"local all {self.superuser} trust\n"
            f"host all {self.superuser} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-w", "reload"])
        return self

    def create_login_role(self, name: str, password: str, *grants: str) -> str:
        """A login role with a scram-sha-256 password and the given role memberships (psycopg2.sql quoting)."""
        from psycopg2 import sql

        self.query(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        for grant in grants:
            self.query(sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant), sql.Identifier(name)))
        return name
