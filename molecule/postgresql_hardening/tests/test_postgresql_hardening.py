"""Behaviour of role postgresql_hardening on the converged host: real logins, TLS handshakes and settings."""

import json
import os
import re
import subprocess
import sys

import pytest

HBA = "/etc/postgresql/15/main/pg_hba.conf"
LOG = "/var/log/postgresql/postgresql-15-main.log"
# Test-only passwords, set by prepare.yml in the throwaway container.
MD5_PASSWORD = "molecule-only-md5-pw"  # noqa: S105
SCRAM_PASSWORD = "molecule-only-scram-pw"  # noqa: S105


def psql(host, conninfo, sql, password=SCRAM_PASSWORD):
    """Run one statement as a TCP client inside the container; conninfo is a libpq keyword string."""
    return host.run(
        f"PGPASSWORD={password} PGCONNECT_TIMEOUT=10 psql -X -A -t -v ON_ERROR_STOP=1 -d '{conninfo}' -c \"{sql}\""
    )


def superuser(host, sql, database="postgres"):
    """Run one statement as postgres over the Unix socket (local peer)."""
    return host.check_output(f'runuser -u postgres -- psql -X -A -t -d {database} -c "{sql}"')


# Every control's tag but pg_hba's: the converge include is untagged, so --skip-tags (not --tags) narrows the
# run to preflight (tagged always) and pg_hba.conf.
SKIP_TAGS = ",".join(
    f"postgresql_hardening_{control}"
    for control in (
        "install",
        "listen",
        "ssl",
        "password_encryption",
        "log_connections",
        "log_disconnections",
        "slow_statement_log",
        "statement_timeout",
        "idle_in_transaction_timeout",
        "overrides",
        "public_schema",
    )
)


def test_scram_login_over_ssl_is_accepted(host):
    result = psql(
        host,
        "host=127.0.0.1 dbname=app user=app_scram sslmode=require",
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_non_ssl_tcp_connection_is_refused(host):
    result = psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=disable", "SELECT 1")
    assert result.rc == 2
    assert 'pg_hba.conf rejects connection for host "127.0.0.1", user "app_scram", database "app", no encryption' in (
        result.stderr
    )


def test_md5_hashed_role_is_refused_even_with_its_password(host):
    result = psql(host, "host=127.0.0.1 dbname=app user=app_md5 sslmode=require", "SELECT 1", password=MD5_PASSWORD)
    assert result.rc == 2
    assert 'password authentication failed for user "app_md5"' in result.stderr
    # The server says why: the stored hash is MD5 and the method is scram-sha-256.
    assert 'User "app_md5" does not have a valid SCRAM secret.' in host.check_output(f"tail -n 200 {LOG}")


def test_wrong_password_is_refused(host):
    result = psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=require", "SELECT 1", password="wrong")  # noqa: S106
    assert result.rc == 2
    assert 'password authentication failed for user "app_scram"' in result.stderr


# libpq cannot choose its source address, and Linux sends from 127.0.0.1 to any 127.x destination, so this
# client binds 127.0.0.2 itself: SSLRequest, TLS handshake, then a startup message; the server answers with
# its pg_hba.conf verdict before any password is asked.
FROM_127_0_0_2 = """
import socket, ssl, struct
sock = socket.socket()
sock.bind(("127.0.0.2", 0))
sock.connect(("127.0.0.1", 5432))
sock.sendall(struct.pack("!ii", 8, 80877103))
assert sock.recv(1) == b"S"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
tls = context.wrap_socket(sock)
body = struct.pack("!i", 196608) + b"user\\0app_scram\\0database\\0app\\0\\0"
tls.sendall(struct.pack("!i", len(body) + 4) + body)
print(tls.recv(4096).decode(errors="replace"))
"""


def test_disallowed_source_address_is_refused_over_tls(host):
    answer = host.check_output(f"python3 -c '{FROM_127_0_0_2}'")
    assert 'pg_hba.conf rejects connection for host "127.0.0.2", user "app_scram", database "app", SSL encryption' in (
        answer
    )


def test_allowed_source_address_gets_the_password_question(host):
    """The same client from 127.0.0.1 is asked for SASL (scram-sha-256): the refusal above is the address."""
    answer = host.check_output(f"python3 -c '{FROM_127_0_0_2.replace('127.0.0.2', '127.0.0.1')}'")
    assert "SCRAM-SHA-256" in answer


def test_listens_on_the_listed_addresses_only(host):
    assert host.socket("tcp://127.0.0.2:5432").is_listening
    listening = host.check_output("ss -Hltn 'sport = :5432'")
    addresses = sorted(line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines())
    private = host.check_output("ip -4 -o route get 1.1.1.1").split(" src ")[1].split()[0]
    assert addresses == sorted(["127.0.0.1", "127.0.0.2", private])
    assert superuser(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_local_login_of_other_users_is_rejected(host):
    result = host.run("runuser -u postgres -- psql -X -A -t -U app_scram -d app -c 'SELECT 1'")
    assert result.rc == 2
    assert 'pg_hba.conf rejects connection for host "[local]", user "app_scram"' in result.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("ssl", "on"),
        ("password_encryption", "scram-sha-256"),
        ("log_connections", "on"),
        ("log_disconnections", "on"),
        ("log_min_duration_statement", "1s"),
        ("statement_timeout", "5min"),
        ("idle_in_transaction_session_timeout", "10min"),
    ],
)
def test_app_sessions_run_with_each_setting(host, setting, value):
    result = psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=require", f"SHOW {setting}")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == value


def test_ssl_min_protocol_version_is_tls_1_2(host):
    # Only superusers and pg_read_all_settings members may read it.
    assert superuser(host, "SHOW ssl_min_protocol_version") == "TLSv1.2"


def test_statement_timeout_cancels_a_long_statement(host):
    """The server-wide timeout is in force: a session lowering it to 1 s gets its 3 s sleep cancelled."""
    result = psql(
        host,
        "host=127.0.0.1 dbname=app user=app_scram sslmode=require options=-cstatement_timeout=1s",
        "SELECT pg_sleep(3)",
    )
    assert result.rc != 0
    assert "canceling statement due to statement timeout" in result.stderr


def test_connections_are_logged(host):
    psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=require", "SELECT 1")
    log = host.check_output(f"tail -n 200 {LOG}")
    assert re.search(r"connection authorized: user=app_scram database=app .*SSL enabled \(protocol=TLSv1\.3", log)
    assert "disconnection: session time:" in log


def test_tls_1_1_handshake_is_refused_and_tls_1_2_accepted(host):
    openssl = "openssl s_client -starttls postgres -connect 127.0.0.1:5432 -brief -cipher DEFAULT:@SECLEVEL=0"
    old = host.run(f"echo | timeout 10 {openssl} -tls1_1")
    assert old.rc != 0
    # The server's alert 70; "unsupported protocol" can come from the client alone.
    assert "alert protocol version" in old.stderr, old.stderr
    current = host.run(f"echo | timeout 10 {openssl} -tls1_2")
    assert "Protocol version: TLSv1.2" in current.stderr, current.stderr


def test_create_on_public_is_denied_to_the_app_role(host):
    result = psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=require", "CREATE TABLE public.probe (i int)")
    assert result.rc != 0
    assert "permission denied for schema public" in result.stderr
    assert superuser(host, "SELECT has_schema_privilege('public', 'public', 'CREATE')", database="app") == "f"


def test_pg_hba_is_the_managed_file_and_parses_cleanly(host):
    hba = host.file(HBA)
    assert (hba.user, hba.group, hba.mode) == ("postgres", "postgres", 0o640)
    rules = superuser(
        host,
        "SELECT type, database[1], user_name[1], coalesce(address, ''), auth_method, coalesce(error, '')"
        " FROM pg_hba_file_rules",
    )
    assert rules.splitlines() == [
        "local|all|postgres||peer|",
        "hostssl|all|all|127.0.0.1|scram-sha-256|",
        "local|all|all||reject|",
        "host|all|all|all|reject|",
        "host|replication|all|all|reject|",
    ]


def test_tls_check_reports_plaintext_refused_from_the_controller(host):
    """locksmith.ops.tls_check's postgres probe, run on this machine against the container's private address."""
    address = host.check_output("ip -4 -o route get 1.1.1.1").split(" src ")[1].split()[0]
    args = {"endpoints": [{"host": address, "port": 5432, "starttls": "postgres"}], "fail_on": "never"}
    run = subprocess.run(
        [
            "ansible",
            "localhost",
            "--connection",
            "local",
            "--extra-vars",
            json.dumps({"ansible_python_interpreter": sys.executable}),
            "--module-name",
            "locksmith.ops.tls_check",
            "--args",
            json.dumps(args),
            "--one-line",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    endpoint = json.loads(run.stdout.split("=>", 1)[1])["endpoints"][0]
    assert endpoint["reachable"] is True
    assert endpoint["plaintext_accepted"] is False
    assert "no encryption" in endpoint["plaintext_detail"]
    assert endpoint["protocol"] == "TLSv1.3"
    assert endpoint["protocols_below_minimum"] == {"TLSv1.0": False, "TLSv1.1": False}
    codes = {problem["code"] for problem in endpoint["problems"]}
    # The lab's certificate is self-signed on purpose; nothing else may be wrong.
    assert codes <= {"self_signed", "hostname_mismatch", "untrusted_root"}, endpoint["problems"]


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"postgresql_hardening_listen_addresses": ["*"]},
            'postgresql_hardening_listen_addresses is ["*"]',
        ),
        (
            {"postgresql_hardening_listen_addresses": ["203.0.113.7"]},
            "'203.0.113.7' in postgresql_hardening_listen_addresses is not a loopback",
        ),
        ({"postgresql_hardening_allowed_cidrs": []}, "postgresql_hardening_allowed_cidrs is [] and"),
        ({"postgresql_hardening_allowed_cidrs": ["0.0.0.0/0"]}, 'postgresql_hardening_allowed_cidrs is ["0.0.0.0/0"]'),
    ],
    ids=["wildcard-listen", "public-listen", "empty-cidrs", "catch-all-cidrs"],
)
def test_unsafe_inputs_are_refused_before_any_change(host, extra_vars, message, run_role):
    before = host.file(HBA).sha256sum
    rc, output = run_role(extra_vars, options=["--skip-tags", SKIP_TAGS])
    assert rc == 2, output
    assert message in output
    assert host.file(HBA).sha256sum == before


def test_pg_hba_that_postgresql_rejects_is_not_installed(host, run_role):
    """A user name with a space passes preflight but shifts pg_hba's fields: the live file and logins stay."""
    before = host.file(HBA).sha256sum
    rc, output = run_role(
        {"postgresql_hardening_local_peer_users": ["postgres", "app user"]}, options=["--skip-tags", SKIP_TAGS]
    )
    assert rc == 2, output
    assert 'PostgreSQL rejects the candidate pg_hba.conf: line 8: invalid authentication method "user"' in output
    assert "Nothing was installed and the server keeps its current rules." in output
    assert host.file(HBA).sha256sum == before
    assert not host.file(HBA + ".locksmith-candidate").exists
    assert host.run(f"ls {HBA}.locksmith-live.*").rc != 0
    result = psql(host, "host=127.0.0.1 dbname=app user=app_scram sslmode=require", "SELECT 1")
    assert result.rc == 0, result.stderr
