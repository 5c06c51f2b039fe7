"""Behaviour of role audit on the converged host: what the triggers log, who may touch the log, and the
retention timer's service really dropping an old partition."""

import json
import time

import pytest

DATABASE = "shop"
APP, AUDITOR = "shop_app", "auditor"
PASSWORD = "molecule-only-4udit-pw"  # noqa: S105 - the throwaway container's test password (prepare.yml)
TIMER = f"locksmith-audit-retention-{DATABASE}.timer"
SERVICE = f"locksmith-audit-retention-{DATABASE}.service"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # the role's default (molecule.yml sets no metrics variable)
PROM = f"{TEXTFILE_DIR}/locksmith_audit_{DATABASE}.prom"
RAN = "SELECT floor(extract(epoch FROM ran_at))::bigint FROM audit.retention_run"


def psql(host, sql, role=None):
    """Run sql in one session: as the superuser over the socket, or as role over TCP (so client_addr is set)."""
    if role is None:
        return host.run("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d %s -c %s", DATABASE, sql)
    return host.run(
        "PGPASSWORD=%s psql -X -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U %s -d %s -c %s", PASSWORD, role, DATABASE, sql
    )


def value(host, sql, role=None):
    result = psql(host, sql, role)
    assert result.rc == 0, result.stderr
    return result.stdout.strip()


def _show(host, unit, *properties):
    out = host.check_output("systemctl show %s --property=%s", unit, ",".join(properties))
    return dict(line.split("=", 1) for line in out.splitlines())


def test_every_listed_table_has_enabled_audit_triggers(host):
    rows = value(
        host,
        "SELECT c.relname || ':' || string_agg(t.tgname || '=' || t.tgenabled::text, ',' ORDER BY t.tgname) "
        "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'locksmith_audit_%' "
        "GROUP BY c.relname ORDER BY 1",
    ).splitlines()
    expected = ",".join(f"locksmith_audit_{op}=O" for op in ("delete", "insert", "truncate", "update"))
    assert rows == [f"orders:{expected}", f"users:{expected}"]


def test_application_writes_are_logged_with_the_app_user_id(host):
    # A fresh id on every verify, so the scenario can be verified again on the same container.
    key = int(time.time() * 1000) % 1_000_000_000
    writes = psql(
        host,
        f"SET app.user_id = 'user-{key}'; "  # noqa: S608 - key is an int made just above
        f"INSERT INTO users VALUES ({key}, 'ann', 'secret-hash-1'); "
        f"INSERT INTO orders VALUES ({key}, {key}, 10); "
        f"UPDATE users SET name = 'anna' WHERE id = {key}; "
        f"UPDATE users SET password_hash = 'secret-hash-2' WHERE id = {key}; "
        f"DELETE FROM orders WHERE id = {key}",
        role=APP,
    )
    assert writes.rc == 0, writes.stderr
    rows = [
        json.loads(line)
        for line in value(
            host,
            "SELECT json_build_object('op', operation, 'table', table_name, 'old', old_data, 'new', new_data, "  # noqa: S608
            "'role', db_role, 'user', app_user_id, 'addr', host(client_addr)) FROM audit.log "
            f"WHERE record_key = '{{\"id\": {key}}}' ORDER BY id",
        ).splitlines()
    ]
    assert [(r["op"], r["table"]) for r in rows] == [
        ("INSERT", "users"),
        ("INSERT", "orders"),
        ("UPDATE", "users"),  # the password-only update is not logged
        ("DELETE", "orders"),
    ]
    assert rows[2]["old"] == {"id": key, "name": "ann"} and rows[2]["new"] == {"id": key, "name": "anna"}
    assert rows[3]["old"] == {"id": key, "user_id": key, "total": 10} and rows[3]["new"] is None
    assert {(r["role"], r["user"], r["addr"]) for r in rows} == {(APP, f"user-{key}", "127.0.0.1")}
    assert value(host, "SELECT count(*) FROM audit.log WHERE log::text LIKE '%secret-hash%'") == "0"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.log SET app_user_id = 'someone else'",
        "DELETE FROM audit.log",
        "TRUNCATE audit.log",
        "SELECT count(*) FROM audit.log",
    ],
)
def test_application_role_cannot_touch_the_log(host, statement):
    denied = psql(host, statement, role=APP)
    assert denied.rc != 0
    assert "permission denied" in denied.stderr, denied.stderr


def app_writes_one_row(host):
    """One logged INSERT by the application role, whatever ran before."""
    value(host, "INSERT INTO users SELECT COALESCE(max(id), 0) + 1, 'new user' FROM users", role=APP)


def test_auditor_reads_the_log_and_cannot_change_it(host):
    app_writes_one_row(host)
    assert int(value(host, "SELECT count(*) FROM audit.log", role=AUDITOR)) > 0
    for statement in ("DELETE FROM audit.log", "UPDATE audit.log SET app_user_id = 'x'", "TRUNCATE audit.log"):
        denied = psql(host, statement, role=AUDITOR)
        assert denied.rc != 0 and "permission denied" in denied.stderr, (statement, denied.stderr)


def published(host):
    """{metric name: value} of the database in the textfile the role and the retention service write."""
    out = {}
    for line in host.file(PROM).content_string.splitlines():
        if line and not line.startswith("#"):
            series, number = line.rsplit(" ", 1)
            assert series.endswith(f'{{database="{DATABASE}"}}'), line
            out[series.split("{")[0]] = int(number)
    return out


def start_service(host):
    """systemctl start of the retention service; True when it completed (ExecStart and ExecStartPost)."""
    host.run("systemctl reset-failed %s", SERVICE)
    host.run("systemctl start %s", SERVICE)
    return _show(host, SERVICE, "Result")["Result"] == "success"


def test_the_converge_published_the_recorded_retention_run_and_its_max_age(host):
    # Published by default, into a directory the role made (prepare.yml does not).
    directory = host.file(TEXTFILE_DIR)
    assert directory.is_directory and directory.user == "root" and directory.mode == 0o755
    prom = host.file(PROM)
    assert prom.exists and prom.user == "root" and prom.mode == 0o644
    metrics = published(host)
    assert metrics["locksmith_audit_retention_last_run_timestamp_seconds"] == int(value(host, RAN))
    assert metrics["locksmith_audit_retention_max_age_seconds"] == 176400
    assert metrics["locksmith_audit_log_bytes"] > 0


def test_a_failing_retention_run_publishes_nothing_and_the_next_completed_one_does(host):
    try:
        # Recorded three days ago; a view on a partition past the retention keeps maintain() from dropping it.
        # Inside the try: a failure from here on must not leave the view to break the next tests' retention runs.
        value(
            host,
            "UPDATE audit.retention_run SET ran_at = now() - interval '3 days'; "
            "SELECT audit.create_partition('2019-01-01'); "
            "CREATE OR REPLACE VIEW public.keeps_2019 AS SELECT * FROM audit.log_p201901",
        )
        aged = int(value(host, RAN))
        published_before = published(host)["locksmith_audit_retention_last_run_timestamp_seconds"]
        assert start_service(host) is False, "maintain() should fail on the view"
        journal = host.run("journalctl -u %s --no-pager -n 30", SERVICE).stdout
        assert "depend" in journal, journal
        assert int(value(host, RAN)) == aged
        assert published(host)["locksmith_audit_retention_last_run_timestamp_seconds"] == published_before
    finally:
        value(host, "DROP VIEW IF EXISTS public.keeps_2019")
    started = int(time.time())
    assert start_service(host) is True
    ran = int(value(host, RAN))
    assert ran >= started - 5
    assert published(host)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran


def test_retention_timer_is_active_and_starts_the_retention_service(host):
    timer = _show(host, TIMER, "UnitFileState", "ActiveState", "TimersCalendar", "Unit", "Persistent")
    assert timer["UnitFileState"] == "enabled" and timer["ActiveState"] == "active"
    assert timer["Unit"] == SERVICE
    assert "OnCalendar=*-*-* 03:17:00" in timer["TimersCalendar"]
    assert timer["Persistent"] == "yes"
    assert f"{SERVICE}" in host.check_output("systemctl list-timers --all --no-pager")


def test_retention_service_drops_a_planted_old_partition_and_logs_it(host):
    # A month of 2020, far past the 90-day retention, with one entry, and this month's entries kept.
    value(
        host,
        "SELECT audit.create_partition('2020-01-01'); "
        "INSERT INTO audit.log (logged_at, operation, schema_name, table_name, record_key) "
        "VALUES ('2020-01-15 12:00+00', 'INSERT', 'public', 'users', '{\"id\": -1}')",
    )
    assert value(host, "SELECT to_regclass('audit.log_p202001') IS NOT NULL") == "t"
    app_writes_one_row(host)
    kept = int(value(host, "SELECT count(*) FROM audit.log WHERE logged_at > now() - interval '1 day'"))
    assert kept > 0
    before = int(value(host, "SELECT count(*) FROM audit.log WHERE operation = 'RETENTION'"))

    started = host.run("systemctl start %s", SERVICE)
    assert started.rc == 0, started.stderr + host.run("journalctl -u %s --no-pager -n 30", SERVICE).stdout
    assert _show(host, SERVICE, "Result")["Result"] == "success"

    assert value(host, "SELECT to_regclass('audit.log_p202001') IS NULL") == "t"
    assert value(host, "SELECT count(*) FROM audit.log WHERE record_key = '{\"id\": -1}'") == "0"
    assert int(value(host, "SELECT count(*) FROM audit.log WHERE logged_at > now() - interval '1 day'")) >= kept
    entries = value(
        host, "SELECT new_data FROM audit.log WHERE operation = 'RETENTION' ORDER BY id DESC LIMIT 1"
    ).splitlines()
    assert int(value(host, "SELECT count(*) FROM audit.log WHERE operation = 'RETENTION'")) == before + 1
    entry = json.loads(entries[0])
    assert "log_p202001" in entry["dropped_partitions"] and entry["retention_days"] == 90
    # The completed run published its own recorded end, after it.
    ran = int(value(host, RAN))
    assert published(host)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran
    assert value(host, "SELECT 'log_p202001' = ANY(dropped_partitions) FROM audit.retention_run") == "t"


def test_a_database_no_longer_listed_loses_its_retention_units_and_its_metrics_file(host, run_role):
    """Taken off audit_databases, a database kept its timer, whose service rewrote its metrics file every night (its
    log stays), or the file aged and AuditRetentionOverdue fired for ever. Runs the role again; the end puts the
    converged state back."""
    retired = "retired_shop"
    units = [f"/etc/systemd/system/locksmith-audit-retention-{retired}.{kind}" for kind in ("timer", "service")]
    retired_prom = f"{TEXTFILE_DIR}/locksmith_audit_{retired}.prom"
    shop = {"database": DATABASE, "tables": ["users", "orders"], "exclude_columns": ["password_hash"]}
    created = host.run("runuser -u postgres -- createdb %s", retired)
    assert created.rc == 0, created.stderr
    try:
        table = host.run(
            "runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -d %s -c %s",
            retired,
            "CREATE TABLE users (id int PRIMARY KEY, name text)",
        )
        assert table.rc == 0, table.stderr
        rc, output = run_role({"audit_databases": [shop, {"database": retired, "tables": ["users"]}]})
        assert rc == 0, output
        assert host.file(retired_prom).exists and all(host.file(unit).exists for unit in units)
        ran = host.run("systemctl start locksmith-audit-retention-%s.service", retired)
        assert ran.rc == 0, ran.stderr

        rc, output = run_role()
        assert rc == 0, output
        assert not any(host.file(unit).exists for unit in units)
        gone = _show(host, f"locksmith-audit-retention-{retired}.timer", "LoadState", "ActiveState")
        assert gone == {"LoadState": "not-found", "ActiveState": "inactive"}, gone
        assert not host.file(retired_prom).exists
        assert host.file(PROM).exists and _show(host, TIMER, "ActiveState")["ActiveState"] == "active"
        rc, output = run_role()
        assert rc == 0 and "changed=0" in output, output
    finally:
        host.run("systemctl disable --now locksmith-audit-retention-%s.timer", retired)
        host.run("rm -f %s %s %s; systemctl daemon-reload", *units, retired_prom)
        host.run("runuser -u postgres -- dropdb --if-exists %s", retired)
