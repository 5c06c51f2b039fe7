"""The harness itself: each service really serves, and an independent client can see it.

These tests fail if a fixture silently hands out a dead server, so later module tests can trust them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess

import pytest


def test_postgres_cluster_is_version_15_and_isolated(pg_cluster, pg_database):
    version = pg_cluster.query("SHOW server_version_num")[0][0]
    assert version.startswith("15")
    listen = pg_cluster.query("SHOW listen_addresses")[0][0]
    assert listen == "127.0.0.1"
    pg_cluster.query("CREATE TABLE t (id int)", dbname=pg_database)
    pg_cluster.query("INSERT INTO t SELECT generate_series(1, 5)", dbname=pg_database)
    assert pg_cluster.query("SELECT count(*) FROM t", dbname=pg_database) == [(5,)]
    # psql, an independent client, sees the same row count over TCP.
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg_cluster.port),
            "-U",
            "postgres",
            "-d",
            pg_database,
            "-Atc",
            "SELECT count(*) FROM t",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "5"


def test_openbao_kv2_round_trip(openbao):
    client = openbao.client()
    assert client.is_authenticated()
    client.secrets.kv.v2.create_or_update_secret(path="harness/check", secret={"value": "one"})
    client.secrets.kv.v2.create_or_update_secret(path="harness/check", secret={"value": "two"}, cas=1)
    read = client.secrets.kv.v2.read_secret_version(path="harness/check", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"value": "two"}
    assert read["data"]["metadata"]["version"] == 2
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.InvalidRequest):  # check-and-set refuses a stale version
        client.secrets.kv.v2.create_or_update_secret(path="harness/check", secret={"value": "x"}, cas=1)


def test_moto_s3_multipart_and_secrets_manager(moto, s3_bucket):
    s3 = moto.client("s3")
    upload = s3.create_multipart_upload(Bucket=s3_bucket, Key="big.bin")
    part = b"x" * (5 * 1024 * 1024)
    etag = s3.upload_part(Bucket=s3_bucket, Key="big.bin", UploadId=upload["UploadId"], PartNumber=1, Body=part)
    s3.complete_multipart_upload(
        Bucket=s3_bucket,
        Key="big.bin",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": etag["ETag"], "PartNumber": 1}]},
    )
    assert s3.head_object(Bucket=s3_bucket, Key="big.bin")["ContentLength"] == len(part)

    sm = moto.client("secretsmanager")
    name = f"harness/{s3_bucket}"
    sm.create_secret(Name=name, SecretString="v1")
    assert sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"] == "v1"


def test_moto_over_tls_verifies_and_closes_connections_cleanly(cert_factory, tmp_path):
    from tests.harness.moto import MotoServer

    leaf = cert_factory.leaf("localhost", sans=("localhost", "127.0.0.1"))
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.cert_path.read_bytes() + leaf.chain_path.read_bytes())
    server = MotoServer(ssl_cert=chain, ssl_key=leaf.key_path, ca_file=cert_factory.ca_file).start()
    try:
        assert server.endpoint_url.startswith("https://")
        server.client("s3").create_bucket(Bucket="tls", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert [b["Name"] for b in server.client("s3").list_buckets()["Buckets"]] == ["tls"]
        # Every reply says `Connection: close`; reading one to the end must meet a close_notify, not a bare EOF
        # (which OpenSSL 3 clients such as pgBackRest refuse), so ragged EOFs are not suppressed here.
        context = ssl.create_default_context(cafile=str(cert_factory.ca_file))
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
                tls.sendall(b"GET /tls HTTP/1.1\r\nHost: localhost\r\n\r\n")
                reply = b""
                while chunk := tls.recv(65536):
                    reply += chunk
        assert reply.startswith(b"HTTP/1.1 ") and b"Connection: close" in reply, reply[:300]
    finally:
        server.stop()


def test_tls_peer_presents_a_chain_that_verifies(cert_factory, tls_peer):
    peer = tls_peer(cert_factory.leaf("localhost", days=30))
    context = ssl.create_default_context(cafile=str(cert_factory.ca_file))
    with socket.create_connection((peer.host, peer.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subject"][-1][0][1] == "localhost"


def test_tls_peer_defects_are_real(cert_factory, tls_peer):
    expired = tls_peer(cert_factory.leaf("localhost", expired=True))
    context = ssl.create_default_context(cafile=str(cert_factory.ca_file))
    with socket.create_connection((expired.host, expired.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            context.wrap_socket(raw, server_hostname="localhost")

    wrong_name = tls_peer(cert_factory.leaf("other.example", sans=("other.example",)))
    with socket.create_connection((wrong_name.host, wrong_name.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"):
            context.wrap_socket(raw, server_hostname="localhost")


def test_legacy_only_peer_refuses_modern_clients(cert_factory, tls_peer):
    peer = tls_peer(cert_factory.leaf("localhost", key_kind="rsa2048"), legacy_only=True)
    modern = ssl.create_default_context(cafile=str(cert_factory.ca_file))
    with socket.create_connection((peer.host, peer.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            modern.wrap_socket(raw, server_hostname="localhost")
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.minimum_version = ssl.TLSVersion.TLSv1
    legacy.maximum_version = ssl.TLSVersion.TLSv1_1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection((peer.host, peer.port), timeout=5) as raw:
        with legacy.wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1", "TLSv1.1")


def test_ansible_runs_a_task_against_the_cluster(ansible, pg_cluster, pg_database):
    args = {"login_db": pg_database, "login_host": "127.0.0.1", "login_port": pg_cluster.port, "login_user": "postgres"}
    result = ansible.run_task("community.postgresql.postgresql_ping", args)
    assert result["is_available"] is True
    assert result["server_version"]["major"] == 15

    # A dead port is reported as data, not as an exception.
    down = ansible.run_task("community.postgresql.postgresql_ping", dict(args, login_port=1))
    assert down["is_available"] is False
    assert not down.get("failed")

    # A task that fails comes back with its message.
    failed = ansible.run_task("community.postgresql.postgresql_ping", dict(args, no_such_option=1))
    assert failed["failed"] is True
    assert "no_such_option" in failed["msg"]


def test_ansible_check_and_diff_reach_the_module(ansible, tmp_path):
    target = tmp_path / "file.txt"
    predicted = ansible.run_task("ansible.builtin.copy", {"content": "x\n", "dest": str(target)}, check=True, diff=True)
    assert predicted["changed"] is True
    assert not target.exists()
    assert ansible.run_task("ansible.builtin.copy", {"content": "x\n", "dest": str(target)})["changed"] is True
    assert ansible.run_task("ansible.builtin.copy", {"content": "x\n", "dest": str(target)})["changed"] is False


def test_ansible_reads_openbao_through_community_hashi_vault(ansible, openbao):
    openbao.client().secrets.kv.v2.create_or_update_secret(path="harness/lookup", secret={"token": "s3cr3t"})
    args = {"url": openbao.url, "auth_method": "token", "token": openbao.root_token, "path": "harness/lookup"}
    result = ansible.run_task("community.hashi_vault.vault_kv2_get", args)
    assert result["secret"] == {"token": "s3cr3t"}
    assert result["metadata"]["version"] == 1
