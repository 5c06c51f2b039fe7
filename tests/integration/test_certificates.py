"""Role locksmith.ops.certificates on localhost: issue and renew over ACME against Pebble with real HTTP-01
(tests/harness/pebble.py), self-signed for labs, install for the consumers, and tls_check seeing the new expiry.

`pytest -s` prints the measured issue and renewal times quoted in docs/certificates.md.
"""

from __future__ import annotations

import datetime
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.harness.ansible import run_module_inprocess
from tests.harness.pebble import PebbleServer
from tests.harness.tls import Issued, TLSPeer

UTC = datetime.UTC
DOMAINS = ["www.locksmith.test", "locksmith.test"]
LIFETIME_DAYS = 90


@pytest.fixture(scope="module")
def pebble():
    """One Pebble CA for this file; its certificates last LIFETIME_DAYS, like Let's Encrypt's."""
    server = PebbleServer(validity_seconds=LIFETIME_DAYS * 86400).start()
    yield server
    server.stop()


def _play(**role_vars):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Issue, renew and install the certificates",
                    "ansible.builtin.include_role": {"name": "locksmith.ops.certificates"},
                    "vars": role_vars,
                },
                {"name": "Return certificates_result", "ansible.builtin.debug": {"var": "certificates_result"}},
            ],
        }
    ]


def _acme_vars(pebble, tmp_path, **extra):
    return {
        "certificates_list": [{"name": "web", "domains": DOMAINS, "provider": "acme"}],
        "certificates_dir": str(tmp_path / "store"),
        "certificates_acme_account_key_file": str(tmp_path / "acme" / "account.key"),
        "certificates_acme_directory_url": pebble.directory_url,
        "certificates_acme_ca_file": str(pebble.tls_ca_file),
        "certificates_acme_terms_agreed": True,
        "certificates_acme_contact_emails": ["ops@locksmith.test"],
        "certificates_webroot": str(pebble.webroot),
        "certificates_packages_enabled": False,
        **extra,
    }


def _run(ansible, play, check=False):
    started = time.monotonic()
    run = ansible.run_playbook(play, check=check)
    run.elapsed_seconds = time.monotonic() - started
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def _result(run) -> dict:
    return run.result("Return certificates_result")["certificates_result"]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> list[str]:
    return sorted(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


def _verify_with_openssl(root: Path, store: Path) -> str:
    """`openssl verify` of cert.pem against Pebble's root, with chain.pem as the only intermediates."""
    proc = subprocess.run(
        ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(store / "chain.pem"), str(store / "cert.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() + proc.stderr.strip()


def _tls_check_not_after(store: Path, root: Path, tmp_path: Path) -> dict:
    """Serve the issued certificate with `openssl s_server` and read it back with locksmith.ops.tls_check."""
    served = tmp_path / f"served-{time.monotonic_ns()}"
    served.mkdir()
    for name in ("cert.pem", "chain.pem", "privkey.pem"):
        shutil.copy(store / name, served / name)
    issued = Issued(
        cert=_cert(served / "cert.pem"),
        key=None,
        cert_path=served / "cert.pem",
        key_path=served / "privkey.pem",
        chain_path=served / "chain.pem",
    )
    peer = TLSPeer(issued).start()
    try:
        result = run_module_inprocess(
            "tls_check",
            {
                "endpoints": [{"host": peer.host, "port": peer.port, "server_name": DOMAINS[0]}],
                "ca_file": str(root),
                "fail_on": "never",
            },
        )
    finally:
        peer.stop()
    (endpoint,) = result["endpoints"]
    return endpoint


def test_acme_issue_renew_and_tls_check_sees_the_new_expiry(pebble, ansible, tmp_path):
    store = tmp_path / "store" / "web"
    root = pebble.write_root(tmp_path / "pebble-root.pem")

    # --check on a fresh host predicts the change and writes nothing.
    check = _run(ansible, _play(**_acme_vars(pebble, tmp_path)), check=True)
    assert check.changed() > 0
    assert not (tmp_path / "store").exists() and not (tmp_path / "acme").exists()

    requests_before = len(pebble.http_requests)
    first = _run(ansible, _play(**_acme_vars(pebble, tmp_path)))
    assert first.changed() > 0
    issued = _result(first)["web"]
    assert issued["renewed"] is True and issued["reason"] == "new key"
    assert LIFETIME_DAYS - 2 <= issued["days_left"] <= LIFETIME_DAYS

    # Pebble fetched one HTTP-01 answer per name from the webroot, and the answers are gone afterwards.
    fetched = [p for p in pebble.http_requests[requests_before:] if p.startswith("/.well-known/acme-challenge/")]
    assert len(fetched) >= len(DOMAINS), pebble.http_requests
    assert list((pebble.webroot / ".well-known" / "acme-challenge").iterdir()) == []

    # An independent client: the certificate chains to Pebble's root through the chain the role stored.
    assert _verify_with_openssl(root, store) == f"{store / 'cert.pem'}: OK"
    cert = _cert(store / "cert.pem")
    assert _sans(cert) == sorted(DOMAINS)
    assert int(issued["serial_number"]) == cert.serial_number
    assert (store / "fullchain.pem").read_text().startswith((store / "cert.pem").read_text())
    key = serialization.load_pem_private_key((store / "privkey.pem").read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert (store / "privkey.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "acme" / "account.key").stat().st_mode & 0o777 == 0o600

    endpoint = _tls_check_not_after(store, root, tmp_path)
    assert endpoint["chain"]["trusted"] is True and endpoint["hostname_match"] is True, endpoint["problems"]
    assert endpoint["certificate"]["not_after_timestamp"] == int(cert.not_valid_after_utc.timestamp())

    # Nothing due: no change, and the CA is not even asked (no new HTTP-01 fetch).
    requests_before = len(pebble.http_requests)
    again = _run(ansible, _play(**_acme_vars(pebble, tmp_path)))
    assert again.changed() == 0, [
        t["task"]["name"] for t in again.tasks() if again.result(t["task"]["name"]).get("changed")
    ]
    assert _result(again)["web"]["renewed"] is False
    recheck = _run(ansible, _play(**_acme_vars(pebble, tmp_path)), check=True)
    assert recheck.changed() == 0
    assert len(pebble.http_requests) == requests_before

    # Renewal forced by a window longer than the lifetime: --check predicts it and changes nothing...
    renew_vars = _acme_vars(pebble, tmp_path, certificates_renew_days=LIFETIME_DAYS + 10)
    predicted = _run(ansible, _play(**renew_vars), check=True)
    assert predicted.changed() > 0
    assert _cert(store / "cert.pem").serial_number == cert.serial_number

    # ...and the real run renews: a new serial and a later not_after, HTTP-01 answered again.
    time.sleep(1.1)  # Pebble's validity is counted in whole seconds
    requests_before = len(pebble.http_requests)
    renewed_run = _run(ansible, _play(**renew_vars))
    assert renewed_run.changed() > 0
    renewed = _result(renewed_run)["web"]
    assert renewed["renewed"] is True and renewed["reason"] == "expiring"
    new_cert = _cert(store / "cert.pem")
    assert new_cert.serial_number != cert.serial_number
    assert new_cert.not_valid_after_utc > cert.not_valid_after_utc
    assert new_cert.public_key() == cert.public_key()  # the key is kept; only the certificate is renewed
    assert len([p for p in pebble.http_requests[requests_before:] if "acme-challenge" in p]) >= len(DOMAINS)
    assert _verify_with_openssl(root, store) == f"{store / 'cert.pem'}: OK"

    endpoint = _tls_check_not_after(store, root, tmp_path)
    assert endpoint["certificate"]["not_after_timestamp"] == int(new_cert.not_valid_after_utc.timestamp())
    assert endpoint["certificate"]["not_after_timestamp"] > int(cert.not_valid_after_utc.timestamp())

    # A new name is due at once, whatever the days left (and back at the default window of 30 days).
    more = [{"name": "web", "domains": [*DOMAINS, "api.locksmith.test"], "provider": "acme"}]
    widened = _run(ansible, _play(**_acme_vars(pebble, tmp_path, certificates_list=more)))
    assert _result(widened)["web"]["reason"] == "domains changed"
    assert _sans(_cert(store / "cert.pem")) == sorted([*DOMAINS, "api.locksmith.test"])
    assert _cert(store / "cert.pem").serial_number != new_cert.serial_number
    issue, renewal = first.elapsed_seconds, renewed_run.elapsed_seconds
    print(f"\nACME issue (new account, key, 2 names, HTTP-01): {issue:.1f} s; renewal: {renewal:.1f} s")


def _selfsigned_vars(tmp_path, **extra):
    return {
        "certificates_list": [
            {
                "name": "lab",
                "domains": ["lab.locksmith.test"],
                "provider": "selfsigned",
                "key_type": "rsa",
                "consumers": ["nginx", "postgresql"],
            }
        ],
        "certificates_dir": str(tmp_path / "store"),
        "certificates_packages_enabled": False,
        "certificates_nginx_certificate_file": str(tmp_path / "nginx" / "fullchain.pem"),
        "certificates_nginx_private_key_file": str(tmp_path / "nginx" / "privkey.pem"),
        "certificates_postgresql_certificate_file": str(tmp_path / "pgdata" / "server.crt"),
        "certificates_postgresql_private_key_file": str(tmp_path / "pgdata" / "server.key"),
        "certificates_postgresql_owner": "root",
        # No nginx or PostgreSQL runs on the test host; the handlers are still notified (and skipped).
        "certificates_reload_enabled": False,
        **extra,
    }


def _reloads(run) -> set[str]:
    """The handlers that ran (skipped when certificates_reload_enabled is false, yet listed once notified)."""
    names = {t["task"]["name"].split(" : ")[-1] for t in run.tasks()}
    return names & {"Reload nginx", "Reload PostgreSQL"}


def test_selfsigned_installs_for_consumers_and_reloads_only_on_change(ansible, tmp_path):
    (tmp_path / "pgdata").mkdir()
    first = _run(ansible, _play(**_selfsigned_vars(tmp_path)))
    assert first.changed() > 0
    assert _reloads(first) == {"Reload nginx", "Reload PostgreSQL"}
    lab = _result(first)["lab"]
    assert lab["provider"] == "selfsigned" and 363 <= lab["days_left"] <= 365
    cert = _cert(tmp_path / "store" / "lab" / "cert.pem")
    assert cert.issuer == cert.subject and _sans(cert) == ["lab.locksmith.test"]
    assert cert.public_key().key_size == 3072

    for path, mode in [
        ("nginx/fullchain.pem", 0o644),
        ("nginx/privkey.pem", 0o600),
        ("pgdata/server.crt", 0o600),
        ("pgdata/server.key", 0o600),
    ]:
        assert (tmp_path / path).stat().st_mode & 0o777 == mode, path
    assert (tmp_path / "nginx" / "fullchain.pem").read_bytes() == (tmp_path / "store/lab/cert.pem").read_bytes()
    assert (tmp_path / "pgdata" / "server.key").read_bytes() == (tmp_path / "store/lab/privkey.pem").read_bytes()

    again = _run(ansible, _play(**_selfsigned_vars(tmp_path)))
    assert again.changed() == 0 and _reloads(again) == set()
    recheck = _run(ansible, _play(**_selfsigned_vars(tmp_path)), check=True)
    assert recheck.changed() == 0

    renewed = _run(ansible, _play(**_selfsigned_vars(tmp_path, certificates_renew_days=400)))
    assert _reloads(renewed) == {"Reload nginx", "Reload PostgreSQL"}
    new = _cert(tmp_path / "nginx" / "fullchain.pem")
    assert new.serial_number != cert.serial_number
    assert _cert(tmp_path / "pgdata" / "server.crt").serial_number == new.serial_number

    # A different key type makes a new key, which a new certificate follows.
    ec_list = [{**_selfsigned_vars(tmp_path)["certificates_list"][0], "key_type": "ec"}]
    switched = _run(ansible, _play(**_selfsigned_vars(tmp_path, certificates_list=ec_list)))
    assert _result(switched)["lab"]["reason"] == "new key"
    assert _cert(tmp_path / "nginx" / "fullchain.pem").public_key().curve.name == "secp256r1"


def test_a_key_that_does_not_belong_to_the_certificate_is_never_installed(ansible, tmp_path):
    """A new key whose order then failed, or files put in the store by hand: nginx and PostgreSQL would keep the
    old pair on reload and refuse to start on the next restart, so nothing is installed."""
    from cryptography.hazmat.primitives.asymmetric import ec

    (tmp_path / "pgdata").mkdir()
    # The nginx key's directory exists with Debian's /etc/ssl/private mode: the role must keep it.
    (tmp_path / "nginx").mkdir(mode=0o710)
    (tmp_path / "nginx").chmod(0o710)
    _run(ansible, _play(**_selfsigned_vars(tmp_path)))
    assert (tmp_path / "nginx").stat().st_mode & 0o777 == 0o710
    installed = {
        p: (tmp_path / p).read_bytes() for p in ("nginx/fullchain.pem", "nginx/privkey.pem", "pgdata/server.key")
    }

    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "store" / "lab" / "privkey.pem").write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    run = ansible.run_playbook(_play(**_selfsigned_vars(tmp_path, certificates_issue_enabled=False)))
    assert run.rc != 0
    assert "fullchain.pem' does not belong to privkey.pem beside it" in run.stdout + run.stderr
    assert {p: (tmp_path / p).read_bytes() for p in installed} == installed
    assert _reloads(run) == set()


PREFLIGHT_CASES = [
    ({"certificates_acme_terms_agreed": False}, "certificates_acme_terms_agreed is False"),
    ({"certificates_list": [{"name": "../x", "domains": ["a.test"]}]}, "needs a name of letters"),
    ({"certificates_list": [{"name": "w", "domains": ["*.a.test"]}]}, "without wildcards"),
    (
        {"certificates_list": [{"name": "a", "domains": ["a.test"]}, {"name": "a", "domains": ["b.test"]}]},
        "repeat a name",
    ),
    (
        {
            "certificates_list": [
                {"name": "a", "domains": ["a.test"], "consumers": ["nginx"]},
                {"name": "b", "domains": ["b.test"], "consumers": ["nginx"]},
            ]
        },
        "installed at the same path",
    ),
    ({"certificates_acme_ca_file": "/nonexistent/ca.pem"}, "certificates_acme_ca_file '/nonexistent/ca.pem'"),
    ({"certificates_renew_days": 0}, "certificates_renew_days is 0"),
]


# A failed loop says only "One or more items failed"; the messages are in its items.
FAILED_MESSAGES = (
    "{{ (ansible_failed_result.results | default([]) | selectattr('failed', 'defined') | selectattr('failed')"
    " | map(attribute='msg') | list + [ansible_failed_result.msg]) | join(' | ') }}"
)


def test_preflight_refuses_bad_input_and_names_the_fix(ansible, tmp_path):
    """Every case in one ansible-playbook run: each include fails in preflight and its message is kept."""
    tasks = []
    for index, case in enumerate(PREFLIGHT_CASES):
        case_vars = case[0]
        role_vars = {
            "certificates_list": [{"name": "web", "domains": ["www.a.test"]}],
            "certificates_dir": str(tmp_path / "store"),
            "certificates_acme_terms_agreed": True,
            "certificates_packages_enabled": False,
            **case_vars,
        }
        tasks.append(
            {
                "name": f"Case {index}",
                "block": [
                    {
                        "name": f"Apply case {index}",
                        "ansible.builtin.include_role": {"name": "locksmith.ops.certificates"},
                        "vars": role_vars,
                    },
                    {"name": f"Case {index} was accepted", "ansible.builtin.set_fact": {f"case_{index}": "accepted"}},
                ],
                "rescue": [
                    {
                        "name": f"Keep the message of case {index}",
                        "ansible.builtin.set_fact": {f"case_{index}": FAILED_MESSAGES},
                    }
                ],
            }
        )
    tasks.append(
        {
            "name": "Return the messages",
            "ansible.builtin.debug": {
                "msg": "{{ [" + ", ".join(f"case_{i}" for i in range(len(PREFLIGHT_CASES))) + "] }}"
            },
        }
    )
    run = ansible.run_playbook([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    messages = run.result("Return the messages")["msg"]
    for case, message in zip(PREFLIGHT_CASES, messages, strict=True):
        assert case[1] in message, message
    assert not (tmp_path / "store").exists()
