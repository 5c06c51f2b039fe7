"""Behaviour of monitoring_agents on a database and web host: real scrapes, not package presence."""

from __future__ import annotations

import re
import time

ACCESS_LOG = "/var/log/nginx/access.log"


def _scrape(host, port):
    return host.check_output(f"curl -fsS http://127.0.0.1:{port}/metrics")


def test_exporters_listen_on_the_private_address_only(host):
    listening = host.check_output("ss -Htln")
    for port in (9100, 9187, 3903, 9121):
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


def _value(metrics, name):
    """The value of one sample line (name with labels), 0 when mtail has not exported it yet."""
    match = re.search(r"^%s (\S+)$" % re.escape(name), metrics, re.M)
    return float(match.group(1)) if match else 0.0


def test_mtail_counts_requests_and_latency_from_the_access_log(host):
    names = [
        'locksmith_http_requests_total{status="200",status_class="2xx"}',
        'locksmith_http_requests_total{status="503",status_class="5xx"}',
        'locksmith_http_request_duration_seconds_bucket{le="0.005"}',
        'locksmith_http_request_duration_seconds_bucket{le="0.5"}',
        'locksmith_http_request_duration_seconds_bucket{le="+Inf"}',
        "locksmith_http_request_duration_seconds_count",
        "locksmith_http_log_lines_unparsed_total",
    ]
    before = _scrape(host, 3903)
    start = {name: _value(before, name) for name in names}
    lines = [
        '10.0.0.7 - - [27/Nov/2026:04:00:43 +0000] "GET / HTTP/2.0" 200 612 "-" "curl/8" rt=0.000 ut="-" host=a',
        '10.0.0.7 - - [27/Nov/2026:04:00:44 +0000] "GET /a HTTP/2.0" 200 612 "-" "curl/8" rt=0.500 ut="0.499" host=a',
        '10.0.0.7 - - [27/Nov/2026:04:00:45 +0000] "GET /b HTTP/2.0" 503 197 "-" "curl/8" rt=0.501 ut="0.500" host=a',
        "a line in nginx's default combined format is not an SLI sample",
    ]
    # Appended as nginx's worker would (www-data); mtail reads the 0640 file through group adm.
    host.check_output("runuser -u www-data -- tee -a %s > /dev/null <<'EOF'\n%s\nEOF" % (ACCESS_LOG, "\n".join(lines)))
    expected = {
        names[0]: 2,  # two 200s
        names[1]: 1,  # one 503
        names[2]: 1,  # rt=0.000 lands in the first bucket (observed as 0.5 ms)
        names[3]: 2,  # 0.000 and 0.500 are within 0.5 s, 0.501 is not
        names[4]: 3,
        names[5]: 3,
        names[6]: 1,
    }
    deadline = time.time() + 30
    while True:
        metrics = _scrape(host, 3903)
        got = {name: _value(metrics, name) - start[name] for name in names}
        if got == expected or time.time() > deadline:
            break
        time.sleep(1)
    assert got == expected


def test_redis_exporter_authenticates_with_the_vaulted_password(host):
    metrics = _scrape(host, 9121)
    # redis requires the password (prepare.yml): redis_up is 1 only if the exporter sent it.
    assert re.search(r"^redis_up 1$", metrics, re.M), "redis_exporter cannot authenticate to redis"
    unauthenticated = host.run("redis-cli -h 127.0.0.1 ping")
    assert "NOAUTH" in unauthenticated.stdout + unauthenticated.stderr
    env = host.file("/etc/default/prometheus-redis-exporter")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    pid = host.check_output("systemctl show -p MainPID --value prometheus-redis-exporter")
    cmdline = host.check_output(f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    # Neither a --redis.password flag nor the password itself (molecule.yml) is on the command line.
    assert "password" not in cmdline and "pass\\word" not in cmdline and "127.0.0.1:9121" in cmdline
