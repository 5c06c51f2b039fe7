"""Behaviour of monitoring_agents on a database host: real scrapes, not package presence."""

from __future__ import annotations

import re


def _scrape(host, port):
    return host.check_output(f"curl -fsS http://127.0.0.1:{port}/metrics")


def test_exporters_listen_on_the_private_address_only(host):
    listening = host.check_output("ss -Htln")
    for port in (9100, 9187):
        addresses = re.findall(r"(\S+):%d\s" % port, listening)
        assert addresses == ["127.0.0.1"], (port, addresses)


def test_node_exporter_serves_locksmith_textfile_metrics(host):
    host.check_output(
        "printf '# TYPE locksmith_backup_last_status gauge\\nlocksmith_backup_last_status{database=\"app\"} 1\\n'"
        " > /var/lib/prometheus/node-exporter/.tmp && "
        "mv /var/lib/prometheus/node-exporter/.tmp /var/lib/prometheus/node-exporter/locksmith_verify.prom"
    )
    try:
        metrics = _scrape(host, 9100)
        assert 'locksmith_backup_last_status{database="app"} 1' in metrics
        assert "node_textfile_scrape_error 0" in metrics
        assert 'node_systemd_unit_state{name="postgresql.service"' in metrics
    finally:
        host.check_output("rm -f /var/lib/prometheus/node-exporter/locksmith_verify.prom")


def test_postgres_exporter_reaches_the_database(host):
    metrics = _scrape(host, 9187)
    assert re.search(r"^pg_up 1$", metrics, re.M), "postgres_exporter cannot connect"
    assert "pg_settings_max_connections" in metrics


def test_exporter_role_is_least_privilege(host):
    query = (
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
        "(SELECT string_agg(b.rolname, ',') FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
        "WHERE m.member = r.oid) FROM pg_roles r WHERE rolname = 'prometheus'"
    )
    row = host.check_output(f'runuser -u postgres -- psql -Atc "{query}"')
    assert row == "f|f|f|f|pg_monitor"
    # pg_monitor reads statistics but cannot write: a write as the exporter's role is refused.
    denied = host.run("runuser -u prometheus -- psql -h /run/postgresql -d postgres -c 'CREATE TABLE x (i int)'")
    assert denied.rc != 0 and "permission denied" in denied.stderr
