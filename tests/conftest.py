"""pytest fixtures: the collection on the import path, and real servers on 127.0.0.1.

Servers are session-scoped (started once, shared by all tests) where tests cannot disturb each
other; tests that need a clean slate ask for a fresh database, bucket or KV path instead.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness.ansible import ensure_collection_path  # noqa: E402


def _install_collection_loader() -> None:
    """Make `ansible_collections.locksmith.ops` importable as ansible itself resolves it."""
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

    _AnsibleCollectionFinder(paths=[str(ensure_collection_path())])._install()


_install_collection_loader()


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL 15 cluster, superuser `postgres` with trust auth on 127.0.0.1."""
    from tests.harness.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_database(pg_cluster):
    """A fresh, empty database on the session cluster; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_cluster.create_database(name)
    yield name
    pg_cluster.drop_database(name)


@pytest.fixture(scope="session")
def openbao():
    """An OpenBao dev server (Vault API); KV v2 is mounted at `secret/`."""
    from tests.harness.openbao import OpenBaoServer

    server = OpenBaoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto():
    """A moto server for the S3 and Secrets Manager APIs."""
    from tests.harness.moto import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(moto):
    """A fresh bucket on the moto server."""
    name = f"locksmith-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


@pytest.fixture(scope="session")
def cert_factory():
    """A private CA that issues leaf certificates with any defect a test needs."""
    from tests.harness.tls import CertFactory

    factory = CertFactory()
    yield factory
    factory.cleanup()


@pytest.fixture
def tls_peer(cert_factory):
    """Start `openssl s_server` peers: tls_peer(issued, legacy_only=False); all stopped after the test."""
    from tests.harness.tls import TLSPeer

    peers = []

    def start(issued=None, **kwargs):
        peer = TLSPeer(issued or cert_factory.leaf(), **kwargs).start()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture(scope="session")
def ansible():
    """The playbook runner: ansible.run_task(module, args, check=..., diff=...), ansible.run_playbook(...)."""
    from tests.harness import ansible as runner

    return runner
