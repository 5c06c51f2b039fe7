"""A throwaway PostgreSQL 15 cluster on 127.0.0.1, run as the postgres user (initdb refuses root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .process import ServiceError, free_port

PG_BIN_DIR = Path(os.environ.get("LOCKSMITH_PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresCluster:
    """initdb + pg_ctl in a private directory; trust auth for the superuser on loopback only."""

    def __init__(self, base_dir: str | None = None, port: int | None = None, superuser: str = "postgres"):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.superuser = superuser
        self._own_dir = base_dir is None
        # pytest's tmp dirs are 0700 root: postgres could not enter them, so use a dir of its own.
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="locksmith-pg-"))
        self.datadir = self.base / "data"
        self.socket_dir = self.base / "run"
        self.log = self.base / "server.log"
        self.bin_dir = PG_BIN_DIR

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        result = subprocess.run(_as_postgres(argv), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def start(self) -> PostgresCluster:
        if not (self.bin_dir / "initdb").exists():
            raise ServiceError(f"PostgreSQL 15 binaries not found in {self.bin_dir}; run `make apt`")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chmod(self.base, 0o700)
            for path in (self.base, self.socket_dir):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        if not (self.datadir / "PG_VERSION").exists():
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.superuser,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            )
            with open(self.datadir / "postgresql.auto.conf", "a", encoding="utf-8") as conf:
                conf.write(
                    f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.socket_dir}'\nfsync = off\n"
                    "wal_level = replica\nmax_wal_senders = 4\narchive_mode = off\n"
                    "shared_preload_libraries = ''\n"
                )
        self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-w", "-t", "60", "start"]
        )
        return self

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                check=False,
            )
        if self._own_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    # What clients need ---------------------------------------------------------------------------
    def conn_params(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> dict:
        params = {"host": self.host, "port": self.port, "dbname": dbname, "user": user or self.superuser}
        if password is not None:
            params["password"] = password
        return params

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user={user or self.superuser}"

    def connect(self, dbname: str = "postgres", user: str | None = None, password: str | None = None, autocommit=True):
        import psycopg2

        conn = psycopg2.connect(**self.conn_params(dbname, user, password))
        conn.autocommit = autocommit
        return conn

    def query(self, sql, params=None, dbname: str = "postgres"):
        """Run one statement as the superuser; return all rows (or [] for statements without rows)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create a database with a fresh name (psycopg2.sql quoting); returns the name."""
        from psycopg2 import sql

        self.query(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        from psycopg2 import sql

        self.query(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
