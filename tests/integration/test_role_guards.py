"""Role preflight guards against inputs that slipped through them.

Each case runs only the role's preflight (tasks_from: preflight) on localhost and reads the result of the guard
task itself: it must fail and name the variable for the refused value, and pass for a good one.

- A listen address that means every interface, in every spelling the service accepts (Go listens everywhere on
  ::0 and ::ffff:0.0.0.0, glibc's getaddrinfo reads 0 and 0x0 as 0.0.0.0); a list of '0.0.0.0' and '::' missed them.
- A name with a trailing line break, which a pattern ending in $ accepted.
- A user name or cron field with a space, which shifted the fields of the cron line.
"""

from __future__ import annotations

import pytest

LISTEN_AGENTS = "Refuse a listen address that exposes the exporters on every interface"
LISTEN_SERVER = "Refuse a listen address that exposes Prometheus on every interface"
LISTEN_PG = "Check postgresql_hardening_listen_addresses holds no wildcard"
PRIVATE_PG = "Check every listen address is private"
CIDRS_PG = "Check postgresql_hardening_allowed_cidrs is set and not a catch-all"
LISTEN_LOG = "Check log_host_listen_address is not every address"
NAMES_BACKUP = "Check every database name is a plain identifier"
NAMES_AUDIT = "Check every audit_databases entry names a database and what to audit"
USER_BACKUP = "Check backup_service_user is a plain user name"
CRON_BACKUP = "Check the cron fields"
IGNORE_IDS = "Check the ignore list never covers every address"
NAMES_WEB = "Check the server names are host names"
WORDS_WEB = "Check the values printed into nginx directives are single words"
HEADERS_WEB = "Check the header values fit in one nginx string"
DOMAINS_CERT = "Check every entry of certificates_list has a valid name and domains"
DAYS_CERT = "Check certificates_renew_days and certificates_selfsigned_days"

# What the checks before each guard need, so that the run reaches it.
BASE = {
    "log_host": {"log_host_permitted_peers": ["web1.example.com"]},
    "postgresql_hardening": {"postgresql_hardening_allowed_cidrs": ["10.0.1.0/24"]},
    "backup": {"backup_databases": ["shop"]},
    "web_hardening": {"web_hardening_selfsigned_allowed": True},
    "certificates": {"certificates_list": [{"name": "web", "domains": ["www.example.com"], "provider": "selfsigned"}]},
}

REFUSED = [
    ("monitoring_agents", LISTEN_AGENTS, {"monitoring_agents_listen_address": "::0"}, "listen_address is '::0'"),
    ("monitoring_server", LISTEN_SERVER, {"monitoring_server_listen_address": "0:0::0"}, "listen_address is '0:0::0'"),
    (
        "postgresql_hardening",
        LISTEN_PG,
        {
            "postgresql_hardening_listen_addresses": ["10.0.0.5", "0x0"],
            "postgresql_hardening_listen_public_allowed": True,
        },
        'postgresql_hardening_listen_addresses is ["10.0.0.5", "0x0"]',
    ),
    (
        "postgresql_hardening",
        LISTEN_PG,
        {"postgresql_hardening_settings_overrides": {"listen_addresses": "127.0.0.1, ::ffff:0.0.0.0"}},
        'listen_addresses: "127.0.0.1, ::ffff:0.0.0.0"',
    ),
    ("log_host", LISTEN_LOG, {"log_host_listen_address": "::0"}, "log_host_listen_address is '::0', which listens"),
    (
        "postgresql_hardening",
        PRIVATE_PG,
        {"postgresql_hardening_listen_addresses": ["10.0.0.5\n"]},
        "in postgresql_hardening_listen_addresses is not a loopback",
    ),
    (
        "postgresql_hardening",
        CIDRS_PG,
        {"postgresql_hardening_allowed_cidrs": ["10.0.1.0/24\n"]},
        "postgresql_hardening_allowed_cidrs is",
    ),
    # Half the internet is not an allowlist either: the firewall role's minimum prefix, here too.
    (
        "postgresql_hardening",
        CIDRS_PG,
        {
            "postgresql_hardening_allowed_cidrs": ["10.0.1.0/24", "0.0.0.0/1"],
            "postgresql_hardening_replication_cidrs": ["2000::/3"],
        },
        "(too wide: 0.0.0.0/1, 2000::/3)",
    ),
    ("backup", NAMES_BACKUP, {"backup_databases": ["shop\n"]}, "which is not a plain identifier"),
    ("audit", NAMES_AUDIT, {"audit_databases": [{"database": "shop\n", "tables": ["users"]}]}, "audit_databases[0]"),
    # A space in a cron field or the user would shift the fields of the cron line.
    ("backup", USER_BACKUP, {"backup_service_user": "root /tmp/x"}, "backup_service_user is 'root /tmp/x'"),
    ("backup", CRON_BACKUP, {"backup_schedule": "cron", "backup_cron_hour": "2 * * * root /tmp/x #"}, "not one cron"),
    # An ignore list that covers the internet turns the bans off; a list of '0.0.0.0/0' and '::/0' missed these.
    (
        "intrusion_detection",
        IGNORE_IDS,
        {"intrusion_detection_ignore_addresses": ["::1", "0.0.0.0/1"]},
        "holds 0.0.0.0/1:",
    ),
    (
        "intrusion_detection",
        IGNORE_IDS,
        {"intrusion_detection_jails_overrides": {"DEFAULT": {"ignoreip": "10.0.0.0/8, ::0/0"}}},
        "holds ::0/0:",
    ),
    # Printed into nginx directives as given: a ';' or a line break ended the directive and added configuration
    # that nginx -t accepted.
    (
        "web_hardening",
        NAMES_WEB,
        {"web_hardening_server_names": ["www.example.com; return 200 pwned"]},
        'web_hardening_server_names holds "www.example.com; return 200 pwned"',
    ),
    (
        "web_hardening",
        NAMES_WEB,
        {"web_hardening_server_names": ["www.example.com\nlocation /leak { alias /etc/ssl/; }"]},
        "each entry must be one host name",
    ),
    ("web_hardening", WORDS_WEB, {"web_hardening_status_path": "/status; allow all"}, "web_hardening_status_path is"),
    (
        "web_hardening",
        WORDS_WEB,
        {"web_hardening_access_log_file": "/var/log/nginx/a.log main; error_log /tmp/x"},
        "web_hardening_access_log_file is",
    ),
    ("web_hardening", HEADERS_WEB, {"web_hardening_headers_overrides": {"X-Test": 'a\\" b'}}, "backslash"),
    (
        "certificates",
        DOMAINS_CERT,
        {"certificates_list": [{"name": "web", "domains": ["www.example.com\n"], "provider": "selfsigned"}]},
        "in lower case and each once",
    ),
    (
        "certificates",
        DOMAINS_CERT,
        {"certificates_list": [{"name": "web", "domains": ["a..example.com"], "provider": "selfsigned"}]},
        "in lower case and each once",
    ),
    ("certificates", DAYS_CERT, {"certificates_renew_days": 1000000000}, "the first must be 1 to 3650 days"),
]
ACCEPTED = [
    ("monitoring_agents", LISTEN_AGENTS, {"monitoring_agents_listen_address": "::1"}),
    ("monitoring_server", LISTEN_SERVER, {"monitoring_server_listen_address": "10.0.0.5"}),
    ("postgresql_hardening", LISTEN_PG, {"postgresql_hardening_listen_addresses": ["127.0.0.1", "10.0.0.5"]}),
    ("postgresql_hardening", PRIVATE_PG, {"postgresql_hardening_listen_addresses": ["127.0.0.1", "10.0.0.5"]}),
    ("postgresql_hardening", CIDRS_PG, {"postgresql_hardening_allowed_cidrs": ["10.0.1.0/24", "fd00::/64"]}),
    ("log_host", LISTEN_LOG, {"log_host_listen_address": "127.0.0.1"}),
    ("backup", NAMES_BACKUP, {"backup_databases": ["shop"]}),
    ("audit", NAMES_AUDIT, {"audit_databases": [{"database": "shop", "tables": ["users"]}]}),
    ("backup", USER_BACKUP, {"backup_service_user": "postgres"}),
    ("backup", CRON_BACKUP, {"backup_schedule": "cron", "backup_cron_hour": "*/6", "backup_cron_minute": "5,35"}),
    ("intrusion_detection", IGNORE_IDS, {"intrusion_detection_ignore_addresses": ["127.0.0.1/8", "::1", "10.0.0.0/8"]}),
    ("web_hardening", NAMES_WEB, {"web_hardening_server_names": ["www.example.com", "*.example.org", "_"]}),
    ("web_hardening", WORDS_WEB, {"web_hardening_status_path": "/nginx_status"}),
    (
        "certificates",
        DOMAINS_CERT,
        {"certificates_list": [{"name": "web", "domains": ["www.example.com", "example.com"]}]},
    ),
    ("certificates", DAYS_CERT, {"certificates_renew_days": 30, "certificates_selfsigned_days": 825}),
]


def _guard_result(ansible, role, guard, overrides):
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "locksmith.ops." + role, "tasks_from": "preflight"}}],
    }
    run = ansible.run_playbook([play], extra_vars={**BASE.get(role, {}), **overrides})
    found = [t["hosts"]["localhost"] for t in run.tasks() if t["task"]["name"].endswith(guard)]
    assert found, "the guard did not run: %s" % run.stdout[-3000:]
    return run, found[-1]


def _ids(cases):
    return ["%s-%s" % (case[0], next(iter(case[2]))) for case in cases]


@pytest.mark.parametrize(("role", "guard", "overrides", "message"), REFUSED, ids=_ids(REFUSED))
def test_guard_refuses(ansible, role, guard, overrides, message):
    run, result = _guard_result(ansible, role, guard, overrides)
    if "results" in result:  # a guard that loops: the refused item
        result = next(item for item in result["results"] if item.get("failed"))
    assert result.get("failed") is True and message in result["msg"], result
    assert run.rc != 0


@pytest.mark.parametrize(("role", "guard", "overrides"), ACCEPTED, ids=_ids(ACCEPTED))
def test_guard_accepts(ansible, role, guard, overrides):
    result = _guard_result(ansible, role, guard, overrides)[1]
    assert not result.get("failed") and not result.get("skipped"), result
