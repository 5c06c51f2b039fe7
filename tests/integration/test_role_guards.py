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
IGNORE_WORDS_IDS = "Check the ignore list holds single addresses, CIDRs or host names"
NFT_NAMES_IDS = "Check the nftables table and set names are plain identifiers"
JAILS_IDS = "Check the jail overrides are one section, setting names and one-line values"
PGBR_USER = "Check backup_pgbackrest_user is a plain user name"
PATHS = "Check every path variable is a plain absolute path"
PGBR_OVERRIDES = "Check the setting names in backup_pgbackrest_config_overrides are plain names and the values one line"
AUDIT_USER = "Check audit_login_user is a plain user name"
METRICS_SECRETS = "Check secrets_metrics_dir is a plain absolute path"
AUDITED = {"audit_databases": [{"database": "shop", "tables": ["users"]}]}  # the metrics paths count only then
WORDS_MON = "Check the values printed into ARGS, grafana.ini and the apt source are single words"
INI_MON = "Check monitoring_server_grafana_ini_overrides holds ini names and one-line values"
TEXTFILE_AGENTS = "Check monitoring_agents_textfile_dir is a plain path"
FLAGS_AGENTS = "Check the exporter flags built from variables are single words"
SYSCTL_OS = "Check the setting names in os_hardening_sysctl_overrides are plain names and the values one line"
LOGIN_DEFS_OS = "Check the setting names in os_hardening_login_defs_overrides are plain names and the values one line"
INPUT_LOG = "Check the setting names in log_host_input_overrides are plain names and the values one line"
ACTION_LOG = "Check the setting names in log_forwarding_action_overrides are plain names and the values one line"
UNIT_LINE = "\nExecStartPre=+/bin/touch /tmp/pwned"

# What the checks before each guard need, so that the run reaches it.
BASE = {
    "log_host": {"log_host_permitted_peers": ["web1.example.com"]},
    "postgresql_hardening": {"postgresql_hardening_allowed_cidrs": ["10.0.1.0/24"]},
    "backup": {"backup_databases": ["shop"]},
    "web_hardening": {"web_hardening_selfsigned_allowed": True},
    "certificates": {"certificates_list": [{"name": "web", "domains": ["www.example.com"], "provider": "selfsigned"}]},
    "log_forwarding": {"log_forwarding_target": "logs.example.com", "log_forwarding_certificates_enabled": False},
    # No nginx on the test machine: the check that its log directory exists would stop the run first.
    "intrusion_detection": {"intrusion_detection_web_enabled": False},
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
    # Values printed into fail2ban, systemd, sysctl, login.defs, rsyslog, grafana.ini and ARGS="..." lines as they
    # are: a line break added a setting (an action or ExecStartPre=+ run as root), a blank added a flag.
    (
        "intrusion_detection",
        IGNORE_WORDS_IDS,
        {"intrusion_detection_ignore_addresses": ['10.0.0.1\naction = nftables[actionban="touch /tmp/x"]']},
        "each entry must be one IP address, CIDR or host name",
    ),
    (
        "intrusion_detection",
        NFT_NAMES_IDS,
        {"intrusion_detection_nftables_table": "locksmith; touch /tmp/x #"},
        "intrusion_detection_nftables_table is",
    ),
    (
        "intrusion_detection",
        PATHS,
        {"intrusion_detection_metrics_dir": "/var/lib/prometheus/node-exporter" + UNIT_LINE},
        "intrusion_detection_metrics_dir is",
    ),
    (
        "intrusion_detection",
        JAILS_IDS,
        {"intrusion_detection_jails_overrides": {"sshd": {"maxretry": "3\naction = x"}}},
        'intrusion_detection_jails_overrides["sshd"]',
    ),
    ("backup", PGBR_USER, {"backup_pgbackrest_user": "postgres" + UNIT_LINE}, "backup_pgbackrest_user is"),
    ("backup", PATHS, {"backup_metrics_dir": "/var/lib/x" + UNIT_LINE}, "backup_metrics_dir is"),
    # Printed into the cron line, which sh runs: the command substitution ran as the backup user.
    ("backup", PATHS, {"backup_log_dir": "/var/log/b`id>/tmp/pwned`"}, "backup_log_dir is"),
    (
        "backup",
        PGBR_OVERRIDES,
        {"backup_pgbackrest_config_overrides": {"process-max": "2\nrepo1-retention-full=1"}},
        "backup_pgbackrest_config_overrides is",
    ),
    ("audit", AUDIT_USER, {"audit_login_user": "postgres" + UNIT_LINE}, "audit_login_user is"),
    # The metrics are on by default: their directory is printed into each retention unit's ExecStartPost=+.
    ("audit", PATHS, {"audit_metrics_dir": "/var/lib/x" + UNIT_LINE, **AUDITED}, "audit_metrics_dir is"),
    ("secrets", METRICS_SECRETS, {"secrets_metrics_dir": "var/lib/prometheus/node-exporter"}, "secrets_metrics_dir is"),
    (
        "monitoring_server",
        WORDS_MON,
        {"monitoring_server_retention_time": "30d --web.enable-admin-api"},
        "the retention must be a Prometheus duration",
    ),
    (
        "monitoring_server",
        INI_MON,
        {
            "monitoring_server_grafana_ini_overrides": {
                "users": {"allow_sign_up": "false\n[server]\nhttp_addr = 0.0.0.0"}
            }
        },
        'monitoring_server_grafana_ini_overrides["users"]',
    ),
    (
        "monitoring_agents",
        TEXTFILE_AGENTS,
        {"monitoring_agents_textfile_dir": '/var/lib/x"\nARGS="--web.listen-address=0.0.0.0:9100'},
        "monitoring_agents_textfile_dir is",
    ),
    (
        "monitoring_agents",
        FLAGS_AGENTS,
        {"monitoring_agents_node_exporter_collectors": ["systemd --web.listen-address=0.0.0.0:9100"]},
        "they become exporter flags",
    ),
    (
        "os_hardening",
        SYSCTL_OS,
        {"os_hardening_sysctl_overrides": {"kernel.sysrq": "0\nkernel.core_pattern=|/bin/sh -c id"}},
        "os_hardening_sysctl_overrides is",
    ),
    (
        "os_hardening",
        LOGIN_DEFS_OS,
        {"os_hardening_login_defs_overrides": {"ENCRYPT_METHOD": "SHA512\nUSERDEL_CMD /tmp/evil.sh"}},
        "os_hardening_login_defs_overrides is",
    ),
    ("log_host", PATHS, {"log_host_remote_dir": "/var/log/remote {\n postrotate"}, "log_host_remote_dir is"),
    # The same check still refuses a relative path, as the "is absolute" check it replaced did.
    ("log_host", PATHS, {"log_host_tls_dir": "etc/rsyslog-tls"}, 'log_host_tls_dir is "etc/rsyslog-tls"'),
    ("backup", PATHS, {"backup_config_dir": "etc/locksmith"}, 'backup_config_dir is "etc/locksmith"'),
    (
        "log_host",
        INPUT_LOG,
        {"log_host_input_overrides": {'x" action(type="omprog" binary="/bin/touch': "1"}},
        "log_host_input_overrides is",
    ),
    (
        "log_forwarding",
        ACTION_LOG,
        {"log_forwarding_action_overrides": {"queue.size": '1\n*.* action(type="omprog")'}},
        "log_forwarding_action_overrides is",
    ),
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
    # The defaults, and values as users write them, pass every new guard.
    (
        "intrusion_detection",
        IGNORE_WORDS_IDS,
        {"intrusion_detection_ignore_addresses": ["10.0.0.0/8", "bastion.example.com"]},
    ),
    ("intrusion_detection", NFT_NAMES_IDS, {}),
    ("intrusion_detection", PATHS, {}),
    (
        "intrusion_detection",
        JAILS_IDS,
        {"intrusion_detection_jails_overrides": {"sshd": {"maxretry": 4, "action": "%(action_)s\n  %(action_mw)s"}}},
    ),
    ("backup", PGBR_USER, {}),
    ("backup", PATHS, {}),
    ("backup", PGBR_OVERRIDES, {"backup_pgbackrest_config_overrides": {"process-max": 2}}),
    ("audit", AUDIT_USER, {}),
    ("audit", PATHS, {}),
    ("audit", PATHS, AUDITED),
    ("secrets", METRICS_SECRETS, {}),
    ("monitoring_server", WORDS_MON, {"monitoring_server_retention_time": "4w2d"}),
    ("monitoring_server", INI_MON, {"monitoring_server_grafana_ini_overrides": {"users": {"allow_sign_up": False}}}),
    ("monitoring_agents", TEXTFILE_AGENTS, {}),
    ("monitoring_agents", FLAGS_AGENTS, {}),
    ("os_hardening", SYSCTL_OS, {"os_hardening_sysctl_overrides": {"kernel.yama.ptrace_scope": None}}),
    ("os_hardening", LOGIN_DEFS_OS, {}),
    ("log_host", PATHS, {}),
    ("log_host", INPUT_LOG, {"log_host_input_overrides": {"MaxSessions": 500}}),
    ("log_forwarding", ACTION_LOG, {"log_forwarding_action_overrides": {"queue.size": 20000}}),
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
    return ["%s-%s" % (case[0], next(iter(case[2]), "defaults of " + case[1][6:40])) for case in cases]


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
