"""secret_rotate and the secret lookup against real OpenBao, moto Secrets Manager and PostgreSQL 15.

PostgreSQL runs with scram-sha-256 for every host login except the admin (trust), and logs every
statement, so a test can prove the plaintext never reaches the server log. Faults are injected at a
precise protocol step by wrapping _rotation._run_step: the wrapper cuts a real TCP proxy in front of
OpenBao or PostgreSQL (connection refused, data kept), or the test makes the real check fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import re
import threading
import time
import uuid
from types import SimpleNamespace

import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics, _rotation
from ansible_collections.locksmith.ops.plugins.module_utils._secrets_backend import (
    make_backend,
    secrets_backend_argument_spec,
)
from tests.harness.ansible import run_module_inprocess
from tests.harness.faults import TcpProxy
from tests.harness.postgres import PostgresCluster

MODULE = "secret_rotate"
FQCN = "locksmith.ops.secret_rotate"


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scram_pg():
    """A cluster of our own: scram-sha-256 for host logins (the admin keeps trust), every statement logged."""
    cluster = PostgresCluster().start()
    (cluster.datadir / "pg_hba.conf").write_text(
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        encoding="utf-8",
    )
    cluster.query("ALTER SYSTEM SET log_statement = 'all'")
    cluster.query("SELECT pg_reload_conf()")
    yield cluster
    cluster.stop()


@pytest.fixture
def roles(scram_pg):
    """app and app_clone, both members of one group role that holds the grants, and a database."""
    tag = uuid.uuid4().hex[:8]
    ns = SimpleNamespace(
        app=f"app_{tag}", clone=f"app_{tag}_clone", group=f"app_{tag}_rw", db=f"d_{tag}", initial=f"initial-{tag}"
    )
    q = scram_pg.query
    q(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(ns.group)))
    for role in (ns.app, ns.clone):
        q(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s IN ROLE {}").format(
                sql.Identifier(role), sql.Identifier(ns.group)
            ),
            (ns.initial,),
        )
    scram_pg.create_database(ns.db)
    q("CREATE TABLE accounts (id int); INSERT INTO accounts VALUES (1); CREATE TABLE forbidden (id int)", dbname=ns.db)
    q(sql.SQL("GRANT SELECT ON accounts TO {}").format(sql.Identifier(ns.group)), dbname=ns.db)
    yield ns
    scram_pg.drop_database(ns.db)
    for role in (ns.app, ns.clone, ns.group):
        q(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def vault_proxy(openbao):
    proxy = TcpProxy("127.0.0.1", openbao.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def pg_proxy(scram_pg):
    proxy = TcpProxy("127.0.0.1", scram_pg.port).start()
    yield proxy
    proxy.stop()


def pg_args(cluster, roles, port=None, **over):
    args = dict(
        login_host="127.0.0.1",
        login_port=port or cluster.port,
        login_user="postgres",
        ssl_mode="disable",
        connect_timeout=3,
        database=roles.db,
        test_query="SELECT id FROM accounts",
    )
    args.update(over)
    return args


def vault_args(server, url=None):
    return dict(backend="vault", vault_url=url or server.url, vault_token=server.root_token)


def aws_args(moto):
    return dict(
        backend="aws",
        aws_region="eu-west-1",
        aws_endpoint_url=moto.endpoint_url,
        aws_access_key="testing",
        aws_secret_key="testing",
    )


def secret_path():
    return f"locksmith-tests/{uuid.uuid4().hex[:10]}"


def backend_for(args):
    options = {name: spec.get("default") for name, spec in secrets_backend_argument_spec().items()}
    options.update({k: v for k, v in args.items() if k in options})
    return make_backend(options)


def stored(args, secret, stage="current"):
    """The value an independent reader gets from the store (None when that stage is empty)."""
    version = backend_for(args).read(secret).stage(stage)
    return version.value if version else None


def can_login(cluster, roles, user, password):
    try:
        conn = psycopg2.connect(
            host="127.0.0.1", port=cluster.port, dbname=roles.db, user=user, password=password, connect_timeout=3
        )
    except psycopg2.OperationalError as err:
        assert "password authentication failed" in str(err), err
        return False
    conn.close()
    return True


def rotate(args, check=False, diff=False):
    return run_module_inprocess(MODULE, args, check=check, diff=diff)


@contextlib.contextmanager
def fault_before(monkeypatch, step, action):
    """Run ``action`` (a real fault) right before protocol step ``step``."""
    original = _rotation._run_step

    def wrapped(name, *args, **kwargs):
        if name == step:
            action()
        return original(name, *args, **kwargs)

    monkeypatch.setattr(_rotation, "_run_step", wrapped)
    yield
    monkeypatch.setattr(_rotation, "_run_step", original)


# ---- postgresql_password --------------------------------------------------------------------
def test_password_sequence_through_ansible_playbook(scram_pg, roles, openbao, ansible):
    secret = secret_path()
    args = dict(
        secret=secret, target="postgresql_password", role=roles.app, **vault_args(openbao), **pg_args(scram_pg, roles)
    )
    first = ansible.run_task(FQCN, args, check=True, diff=True)
    assert first["changed"] is True and first["rotation_due"] is True, first
    assert first["planned_steps"] == ["stage", "apply", "test", "promote"]
    assert stored(vault_args(openbao), secret) is None  # check mode wrote nothing

    real = ansible.run_task(FQCN, args, diff=True)
    assert real["changed"] is True and real["step"] == "promote", real
    assert real["diff"]["after"]["current"] == "<secret v%s>" % real["secret"]["current_version"]
    assert real["executed_queries"] == [
        "ALTER ROLE \"%s\" PASSWORD '<secret v%s>'" % (roles.app, real["secret"]["current_version"])
    ]

    again = ansible.run_task(FQCN, args)
    assert again["changed"] is False and again["rotation_due"] is False, again
    assert "min_age_seconds" in again["reason"]
    last_check = ansible.run_task(FQCN, args, check=True)
    assert last_check["changed"] is False

    # An independent client: hvac reads the store, psycopg2 logs in with what it holds.
    kv = openbao.client().secrets.kv.v2.read_secret_version(
        path=secret, mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    password = kv["current"]["value"]["password"]
    assert kv["current"]["value"]["username"] == roles.app
    assert can_login(scram_pg, roles, roles.app, password)
    assert not can_login(scram_pg, roles, roles.app, roles.initial)
    log = scram_pg.log.read_text(errors="replace")
    assert password not in log
    assert re.search(r"ALTER ROLE \"%s\" PASSWORD 'SCRAM-SHA-256\$4096:" % roles.app, log)


def test_new_password_works_and_old_is_refused_after_revoke(scram_pg, roles, openbao):
    secret = secret_path()
    args = dict(
        secret=secret, target="postgresql_password", role=roles.app, **vault_args(openbao), **pg_args(scram_pg, roles)
    )
    assert rotate(args)["step"] == "promote"
    old = stored(args, secret)["password"]
    result = rotate(dict(args, force=True, revoke_previous=True, grace_seconds=0), diff=True)
    assert result["steps"] == ["stage", "apply", "test", "promote", "revoke"], result
    new = stored(args, secret)["password"]
    assert new != old and can_login(scram_pg, roles, roles.app, new)
    assert not can_login(scram_pg, roles, roles.app, old)
    assert stored(args, secret, "previous") is None
    assert result["diff"]["after"] == {
        "pending": None,
        "current": "<secret v%s>" % result["secret"]["current_version"],
        "previous": None,
    }
    assert old not in json.dumps(result) and new not in json.dumps(result)


def test_missing_role_fails_before_any_step_and_names_the_fix(scram_pg, roles, openbao):
    args = dict(
        secret=secret_path(),
        target="postgresql_password",
        role="no_such_role",
        **vault_args(openbao),
        **pg_args(scram_pg, roles),
    )
    result = rotate(args)
    assert result["failed"] and result["failed_step"] == "plan"
    assert re.search(r"role 'no_such_role' does not exist .*create it", result["msg"])
    assert "Nothing was changed" in result["msg"]


# ---- postgresql_alternating -----------------------------------------------------------------
def test_alternating_roles_ten_rotations_zero_auth_failures(scram_pg, roles, moto, capsys):
    secret = secret_path()
    store = aws_args(moto)
    args = dict(
        secret=secret,
        target="postgresql_alternating",
        roles=[roles.app, roles.clone],
        grace_seconds=1,
        force=True,
        **store,
        **pg_args(scram_pg, roles),
    )
    assert rotate(dict(args, grace_seconds=0))["step"] == "promote"
    counts = {"ok": 0, "auth_failed": 0, "other": 0}
    stop = threading.Event()

    def client():
        sm = moto.client("secretsmanager")
        while not stop.is_set():
            value = json.loads(sm.get_secret_value(SecretId=secret, VersionStage="AWSCURRENT")["SecretString"])
            try:
                conn = psycopg2.connect(
                    host="127.0.0.1",
                    port=scram_pg.port,
                    dbname=roles.db,
                    user=value["username"],
                    password=value["password"],
                    connect_timeout=3,
                )
                with conn.cursor() as cur:
                    cur.execute("SELECT id FROM accounts")
                conn.close()
                counts["ok"] += 1
            except psycopg2.OperationalError as err:
                counts["auth_failed" if "password authentication failed" in str(err) else "other"] += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    users = []
    try:
        for round_no in range(10):
            done = rotate(args)
            assert done["steps"] == ["stage", "apply", "test", "promote"], done
            users.append(done["secret"]["username"])
            if round_no < 2:
                # Within the grace period the previous role is still in use: not due, even with force.
                blocked = rotate(dict(args, grace_seconds=600))
                assert blocked["changed"] is False and "grace period" in blocked["reason"], blocked
            time.sleep(max(0.0, done["secret"]["promoted_timestamp"] + 1.05 - time.time()))
    finally:
        stop.set()
        thread.join(10)
    with capsys.disabled():
        print(f"\nalternating users, 10 rotations: {counts}")
    assert counts["auth_failed"] == 0 and counts["other"] == 0, counts
    assert counts["ok"] > 20, counts
    assert users == [roles.clone, roles.app] * 5  # bootstrap made app current, then it alternates

    # Revoke after the grace period: the previous role's password is removed.
    previous = stored(store, secret, "previous")
    revoked = rotate(dict(args, force=False, revoke_previous=True))
    assert revoked["steps"] == ["revoke"], revoked
    assert not can_login(scram_pg, roles, previous["username"], previous["password"])
    current = stored(store, secret)
    assert can_login(scram_pg, roles, current["username"], current["password"])
    versions = moto.client("secretsmanager").describe_secret(SecretId=secret)["VersionIdsToStages"]
    assert sorted(label for labels in versions.values() for label in labels) == ["AWSCURRENT"]


def test_alternating_test_step_refuses_roles_with_different_grants(scram_pg, roles, openbao):
    secret = secret_path()
    args = dict(
        secret=secret,
        target="postgresql_alternating",
        roles=[roles.app, roles.clone],
        grace_seconds=0,
        **vault_args(openbao),
        **pg_args(scram_pg, roles),
    )
    assert rotate(args)["step"] == "promote"  # app is current
    current = stored(args, secret)
    scram_pg.query(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(roles.group), sql.Identifier(roles.clone)))
    failed = rotate(dict(args, force=True))
    assert failed["failed"] and failed["failed_step"] == "test" and failed["rolled_back"] is True, failed
    assert "must have the same grants" in failed["msg"] and "rolled back" in failed["msg"]
    assert stored(args, secret, "pending") is None
    assert stored(args, secret) == current and can_login(scram_pg, roles, current["username"], current["password"])


# ---- hmac -----------------------------------------------------------------------------------
def lookup(term, **options):
    from ansible.plugins.loader import lookup_loader

    return lookup_loader.get("locksmith.ops.secret").run([term], variables={}, **options)[0]


def receiver_accepts(message, signature, store):
    """A webhook receiver: accept a signature made with the current or the previous key."""
    keys = [lookup("hooks/signing", field="key", cache=False, **store)]
    with contextlib.suppress(Exception):
        keys.append(lookup("hooks/signing", field="key", stage="previous", cache=False, **store))
    return any(hmac.compare_digest(hmac.new(k.encode(), message, hashlib.sha256).hexdigest(), signature) for k in keys)


def test_hmac_previous_key_verifies_during_grace_and_fails_after(tmp_path):
    store = dict(backend="file", file_path=str(tmp_path / "secrets.json"))
    args = dict(secret="hooks/signing", target="hmac", length=48, grace_seconds=2, revoke_previous=True, **store)
    assert rotate(args)["step"] == "promote"
    old_key = lookup("hooks/signing", field="key", **store)
    message = b'{"event": "deploy"}'
    signature = hmac.new(old_key.encode(), message, hashlib.sha256).hexdigest()
    assert receiver_accepts(message, signature, store)

    rotated = rotate(dict(args, force=True))
    assert rotated["steps"] == ["stage", "apply", "test", "promote"], rotated  # grace 2s: no revoke yet
    assert lookup("hooks/signing", field="key", cache=False, **store) != old_key
    assert receiver_accepts(message, signature, store)  # previous still verifies during grace
    # A run inside the grace period (made long here, so a slow machine cannot cross it) revokes nothing.
    waiting = rotate(dict(args, grace_seconds=600))
    assert waiting["changed"] is False and waiting["secret"]["previous_version"] is not None
    assert receiver_accepts(message, signature, store)

    time.sleep(max(0.0, rotated["secret"]["promoted_timestamp"] + 2.1 - time.time()))
    revoked = rotate(args)
    assert revoked["steps"] == ["revoke"], revoked
    assert not receiver_accepts(message, signature, store)  # and fails after it
    new_signature = hmac.new(
        lookup("hooks/signing", field="key", cache=False, **store).encode(), message, hashlib.sha256
    ).hexdigest()
    assert receiver_accepts(message, new_signature, store)


# ---- fault injection ------------------------------------------------------------------------
def password_args(scram_pg, ns, openbao, vault_proxy=None, pg_proxy=None, **over):
    args = dict(
        secret=secret_path(),
        target="postgresql_password",
        role=ns.app,
        **vault_args(openbao, vault_proxy.url if vault_proxy else None),
        **pg_args(scram_pg, ns, pg_proxy.port if pg_proxy else None),
    )
    args.update(over)
    return args


def test_backend_down_at_stage(scram_pg, roles, openbao, vault_proxy, monkeypatch):
    args = password_args(scram_pg, roles, openbao, vault_proxy)
    assert rotate(args)["step"] == "promote"
    current = stored(args | {"vault_url": openbao.url}, args["secret"])
    with fault_before(monkeypatch, "stage", vault_proxy.cut):
        failed = rotate(dict(args, force=True))
    assert failed["failed"] and failed["failed_step"] == "stage", failed
    assert "check vault_url" in failed["msg"] and "nothing was staged" in failed["msg"]
    assert can_login(scram_pg, roles, roles.app, current["password"])
    vault_proxy.restore()
    again = rotate(dict(args, force=True))
    assert again["steps"] == ["stage", "apply", "test", "promote"] and again["resumed"] is False


def test_db_down_at_apply_keeps_current_and_rerun_resumes(scram_pg, roles, openbao, pg_proxy, monkeypatch):
    args = password_args(scram_pg, roles, openbao, pg_proxy=pg_proxy)
    assert rotate(args)["step"] == "promote"
    current = stored(args, args["secret"])
    with fault_before(monkeypatch, "apply", pg_proxy.cut):
        failed = rotate(dict(args, force=True))
    assert failed["failed"] and failed["failed_step"] == "apply" and failed["restored_target"] is False, failed
    pending = stored(args, args["secret"], "pending")
    assert pending is not None and "re-run to resume" in failed["msg"]
    assert can_login(scram_pg, roles, roles.app, current["password"])
    pg_proxy.restore()
    resumed = rotate(args)  # no force needed: the pending version is resumed, not a new one staged
    assert resumed["resumed"] is True and resumed["steps"] == ["apply", "test", "promote"], resumed
    assert resumed["secret"]["current_version"] == failed["secret"]["pending_version"]
    assert stored(args, args["secret"]) == pending and can_login(scram_pg, roles, roles.app, pending["password"])


def test_failed_test_rolls_back_and_current_keeps_working(scram_pg, roles, openbao):
    args = password_args(scram_pg, roles, openbao)
    assert rotate(args)["step"] == "promote"
    current = stored(args, args["secret"])
    failed = rotate(dict(args, force=True, test_query="SELECT id FROM forbidden"))
    assert failed["failed"] and failed["failed_step"] == "test", failed
    assert failed["rolled_back"] is True and failed["restored_target"] is True
    assert "permission denied" in failed["msg"]
    assert can_login(scram_pg, roles, roles.app, current["password"])
    assert stored(args, args["secret"], "pending") is None and stored(args, args["secret"]) == current
    assert rotate(dict(args, force=True))["step"] == "promote"


def test_backend_down_at_promote_restores_target_and_rerun_resumes(scram_pg, roles, openbao, vault_proxy, monkeypatch):
    args = password_args(scram_pg, roles, openbao, vault_proxy)
    assert rotate(args)["step"] == "promote"
    direct = dict(args, vault_url=openbao.url)
    current = stored(direct, args["secret"])
    with fault_before(monkeypatch, "promote", vault_proxy.cut):
        failed = rotate(dict(args, force=True))
    assert failed["failed"] and failed["failed_step"] == "promote" and failed["restored_target"] is True, failed
    assert "set back to the current credential" in failed["msg"]
    assert can_login(scram_pg, roles, roles.app, current["password"])
    pending = stored(direct, args["secret"], "pending")
    assert pending is not None and not can_login(scram_pg, roles, roles.app, pending["password"])
    vault_proxy.restore()
    resumed = rotate(args)
    assert resumed["resumed"] is True and resumed["step"] == "promote"
    assert can_login(scram_pg, roles, roles.app, pending["password"])
    assert not can_login(scram_pg, roles, roles.app, current["password"])


def test_db_down_at_test_alternating_current_keeps_working(scram_pg, roles, moto, pg_proxy, monkeypatch):
    args = dict(
        secret=secret_path(),
        target="postgresql_alternating",
        roles=[roles.app, roles.clone],
        grace_seconds=0,
        **aws_args(moto),
        **pg_args(scram_pg, roles, pg_proxy.port),
    )
    assert rotate(args)["step"] == "promote"
    current = stored(args, args["secret"])
    with fault_before(monkeypatch, "test", pg_proxy.cut):
        failed = rotate(dict(args, force=True))
    assert failed["failed"] and failed["failed_step"] == "test" and failed["rolled_back"] is False, failed
    assert can_login(scram_pg, roles, current["username"], current["password"])
    pg_proxy.restore()
    resumed = rotate(args)
    assert resumed["resumed"] is True and resumed["step"] == "promote", resumed
    new = stored(args, args["secret"])
    assert new["username"] != current["username"] and can_login(scram_pg, roles, new["username"], new["password"])


def test_backend_down_at_revoke_then_rerun_finishes(scram_pg, roles, openbao, vault_proxy, monkeypatch):
    args = password_args(
        scram_pg,
        roles,
        openbao,
        vault_proxy,
        target="postgresql_alternating",
        roles=[roles.app, roles.clone],
        grace_seconds=0,
    )
    args.pop("role")
    assert rotate(args)["step"] == "promote"
    with fault_before(monkeypatch, "revoke", vault_proxy.cut):
        failed = rotate(dict(args, force=True, revoke_previous=True))
    assert failed["failed"] and failed["failed_step"] == "revoke", failed
    direct = dict(args, vault_url=openbao.url)
    current = stored(direct, args["secret"])
    assert can_login(scram_pg, roles, current["username"], current["password"])
    vault_proxy.restore()
    finished = rotate(dict(args, revoke_previous=True))
    assert finished["steps"] == ["revoke"] and stored(direct, args["secret"], "previous") is None


def test_crash_after_stage_or_apply_resumes_the_same_version(scram_pg, roles, openbao):
    args = password_args(scram_pg, roles, openbao)
    assert rotate(args)["step"] == "promote"
    staged = rotate(dict(args, force=True, stop_after="stage"))
    assert staged["steps"] == ["stage"] and staged["secret"]["pending_version"]
    assert rotate(dict(args, force=True, stop_after="stage"))["changed"] is False  # never a second pending
    applied = rotate(dict(args, stop_after="apply"))
    assert applied["resumed"] is True and applied["steps"] == ["apply"]
    # Write-ahead: the password now set on the role is the pending one the store holds.
    pending = stored(args, args["secret"], "pending")
    assert can_login(scram_pg, roles, roles.app, pending["password"])
    done = rotate(args)
    assert done["resumed"] is True and done["secret"]["current_version"] == staged["secret"]["pending_version"]
    kv = openbao.client().secrets.kv.v2.read_secret_metadata(path=args["secret"], mount_point="secret")["data"]
    # bootstrap (stage, promote) + stage + promote: no version was staged twice
    assert kv["current_version"] == 4, kv


def test_on_pending_rollback_restores_current(scram_pg, roles, openbao):
    args = password_args(scram_pg, roles, openbao)
    assert rotate(args)["step"] == "promote"
    current = stored(args, args["secret"])
    assert rotate(dict(args, force=True, stop_after="apply"))["step"] == "apply"
    assert not can_login(scram_pg, roles, roles.app, current["password"])
    check = rotate(dict(args, on_pending="rollback"), check=True)
    assert check["changed"] is True and check["planned_steps"] == ["rollback"]
    rolled = rotate(dict(args, on_pending="rollback"))
    assert rolled["rolled_back"] is True and rolled["steps"] == ["rollback"], rolled
    assert can_login(scram_pg, roles, roles.app, current["password"])
    assert stored(args, args["secret"], "pending") is None


# ---- check mode, min_age, metrics -----------------------------------------------------------
def test_check_mode_min_age_force_and_metrics(tmp_path):
    store = dict(backend="file", file_path=str(tmp_path / "s.json"))
    metrics_dir = tmp_path / "textfile"
    metrics_dir.mkdir()
    args = dict(
        secret="api/token",
        target="generic",
        min_age_seconds=3600,
        max_age_seconds=7200,
        metrics_dir=str(metrics_dir),
        **store,
    )
    first = rotate(args, check=True)
    assert first["changed"] is True and not (tmp_path / "s.json").exists()
    assert not list(metrics_dir.iterdir())  # check mode writes no metrics either
    done = rotate(args)
    assert done["changed"] is True
    before = (tmp_path / "s.json").read_text()

    young = rotate(args, check=True)
    assert young["changed"] is False and young["rotation_due"] is False
    assert "younger than min_age_seconds (3600)" in young["reason"]
    forced = rotate(dict(args, force=True), check=True, diff=True)
    assert forced["changed"] is True and forced["planned_steps"] == ["stage", "apply", "test", "promote"]
    assert forced["diff"]["after"]["previous"] == forced["diff"]["before"]["current"]
    assert (tmp_path / "s.json").read_text() == before
    due = rotate(dict(args, min_age_seconds=0), check=True)
    assert due["changed"] is True and "min_age_seconds is 0" in due["reason"]

    samples = _metrics.read_textfile(done["metrics_file"])
    label = (("secret", "api/token"),)
    assert samples[("locksmith_secret_rotation_last_status", label)] == 1
    assert samples[("locksmith_secret_max_age_seconds", label)] == 7200
    assert samples[("locksmith_secret_last_rotation_timestamp_seconds", label)] == pytest.approx(
        done["secret"]["promoted_timestamp"], abs=1
    )


def test_failed_rotation_publishes_status_zero(tmp_path):
    store = dict(backend="file", file_path=str(tmp_path / "s.json"))
    args = dict(secret="api/token", target="generic", metrics_dir=str(tmp_path), test_command=["false"], **store)
    failed = rotate(args)
    assert failed["failed"] and failed["failed_step"] == "test" and failed["rolled_back"] is True
    samples = _metrics.read_textfile(
        failed["metrics_file"]
        if "metrics_file" in failed
        else str(tmp_path / _metrics.textfile_name("secret", "api/token"))
    )
    assert samples[("locksmith_secret_rotation_last_status", (("secret", "api/token"),))] == 0


# ---- generic hooks ---------------------------------------------------------------------------
class _TokenCheck(http.server.BaseHTTPRequestHandler):
    accepted = set()

    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        self.send_response(200 if token in self.accepted else 401)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_generic_apply_and_test_hooks(tmp_path):
    store = dict(backend="file", file_path=str(tmp_path / "s.json"))
    applied = tmp_path / "applied"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenCheck)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args = dict(
            secret="api/token",
            target="generic",
            **store,
            apply_command=["sh", "-c", f"cat > {applied}"],
            test_command=["sh", "-c", f'read v; test "$v" = "$(cat {applied})"'],
            test_url=f"http://127.0.0.1:{server.server_port}/whoami",
        )
        refused = rotate(args)
        assert refused["failed"] and refused["failed_step"] == "test" and "HTTP 401" in refused["msg"], refused
        # No current version to set back, and apply_command wrote the value: it stays pending, not lost.
        assert refused["rolled_back"] is False
        assert stored(store, "api/token", "pending")["value"] == applied.read_text().strip()

        staged = rotate(dict(args, stop_after="stage"))
        _TokenCheck.accepted.add(stored(store, "api/token", "pending")["value"])
        done = rotate(args)
        assert done["resumed"] is True and done["step"] == "promote", done
        assert applied.read_text().strip() == stored(store, "api/token")["value"]
        assert done["secret"]["current_version"] == staged["secret"]["pending_version"]
    finally:
        server.shutdown()


# ---- lookup ---------------------------------------------------------------------------------
def test_lookup_reads_every_backend_with_cache_per_run(tmp_path, openbao, moto):
    from ansible.errors import AnsibleLookupError

    for store in (vault_args(openbao), aws_args(moto), dict(backend="file", file_path=str(tmp_path / "s.json"))):
        secret = secret_path()
        args = dict(secret=secret, target="generic", **store)
        rotate(args)
        first = lookup(secret, field="value", **store)
        assert first == stored(store, secret)["value"]
        rotate(dict(args, force=True))
        assert lookup(secret, field="value", **store) == first  # cached in this process (one task on one host)
        assert lookup(secret, field="value", cache=False, **store) != first
        assert lookup(secret, stage="previous", field="value", cache=False, **store) == first
        with pytest.raises(AnsibleLookupError, match=r"holds no field 'password' \(fields: value\)"):
            lookup(secret, field="password", cache=False, **store)
        with pytest.raises(AnsibleLookupError, match="has no pending version"):
            lookup(secret, stage="pending", cache=False, **store)
    with pytest.raises(AnsibleLookupError, match="needs file_path"):
        lookup("x", backend="file")


def test_vault_approle_and_userpass_logins(openbao):
    client = openbao.client()
    with contextlib.suppress(Exception):
        client.sys.enable_auth_method("approle")
    with contextlib.suppress(Exception):
        client.sys.enable_auth_method("userpass")
    client.sys.create_or_update_policy(
        "locksmith-rotate", 'path "secret/*" { capabilities = ["create", "read", "update"] }'
    )
    client.auth.approle.create_or_update_approle("rotator", token_policies=["locksmith-rotate"])
    role_id = client.auth.approle.read_role_id("rotator")["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("rotator")["data"]["secret_id"]
    client.auth.userpass.create_or_update_user("rotator", password="userpass-pw-123", policies=["locksmith-rotate"])
    base = dict(backend="vault", vault_url=openbao.url, target="hmac")
    approle = dict(base, vault_auth_method="approle", vault_role_id=role_id, vault_secret_id=secret_id)
    userpass = dict(base, vault_auth_method="userpass", vault_username="rotator", vault_password="userpass-pw-123")
    for auth in (approle, userpass):
        assert rotate(dict(auth, secret=secret_path()))["step"] == "promote"
    denied = rotate(dict(userpass, vault_password="wrong-password", secret=secret_path()))
    assert denied["failed"] and "log in with vault_auth_method 'userpass'" in denied["msg"], denied
    assert "wrong-password" not in json.dumps(denied)
    missing = rotate(dict(base, vault_auth_method="approle", vault_role_id=role_id, secret=secret_path()))
    assert missing["failed"] and "needs vault_secret_id" in missing["msg"]


# ---- no secret in -vvv output ---------------------------------------------------------------
def test_vvv_playbook_output_holds_no_secret(scram_pg, roles, openbao, moto, tmp_path, ansible):
    client = openbao.client()
    with contextlib.suppress(Exception):
        client.sys.enable_auth_method("userpass")
    client.sys.create_or_update_policy(
        "locksmith-rotate", 'path "secret/*" { capabilities = ["create", "read", "update"] }'
    )
    client.auth.userpass.create_or_update_user("vvv", password="vvv-login-pw-42", policies=["locksmith-rotate"])
    vault = dict(
        backend="vault",
        vault_url=openbao.url,
        vault_auth_method="userpass",
        vault_username="vvv",
        vault_password="vvv-login-pw-42",
    )
    file_store = dict(backend="file", file_path=str(tmp_path / "s.json"))
    pw_secret, alt_secret = secret_path(), secret_path()
    pg = pg_args(scram_pg, roles)
    rotate_tasks = [
        {"name": "password", FQCN: dict(secret=pw_secret, target="postgresql_password", role=roles.app, **vault, **pg)},
        {
            "name": "alternating",
            FQCN: dict(
                secret=alt_secret,
                target="postgresql_alternating",
                roles=[roles.app, roles.clone],
                grace_seconds=0,
                **aws_args(moto),
                **pg,
            ),
        },
        {"name": "hmac", FQCN: dict(secret="hooks/signing", target="hmac", **file_store)},
    ]
    forced = [
        {**task, "name": task["name"] + " again", FQCN: dict(task[FQCN], force=True, grace_seconds=0)}
        for task in rotate_tasks[:2]
    ]
    failing = {
        "name": "failing test",
        FQCN: dict(
            secret=pw_secret,
            target="postgresql_password",
            role=roles.app,
            force=True,
            **vault,
            **dict(pg, test_query="SELECT * FROM forbidden"),
        ),
        "register": "failing",
        "failed_when": False,
    }
    reads = {
        "name": "read with the lookup",
        "ansible.builtin.assert": {
            "that": [
                f"lookup('locksmith.ops.secret', '{pw_secret}', field='password', cache=false, "
                "backend='vault') | length == 32"
            ]
        },
    }
    # The control: return_secret (documented as unsafe) must put its value in the output, so the grep works.
    control = {
        "name": "unsafe control",
        FQCN: dict(secret="control", target="generic", return_secret=True, **file_store),
    }
    play = {"hosts": "localhost", "gather_facts": False, "tasks": [*rotate_tasks, *forced, failing, reads, control]}
    run = ansible.run_playbook([play], verbosity=3, diff=True, env={**moto.env(), **openbao.env()})
    output = run.stdout + run.stderr
    assert run.rc == 0, output[-3000:]
    assert "<secret v" in output and "ALTER ROLE" in output and "step 'test' failed" in output

    secrets_seen = ["vvv-login-pw-42", openbao.root_token]
    kv = client.secrets.kv.v2
    meta = kv.read_secret_metadata(path=pw_secret, mount_point="secret")["data"]
    for version in range(1, meta["current_version"] + 1):
        doc = kv.read_secret_version(
            path=pw_secret, mount_point="secret", version=version, raise_on_deleted_version=True
        )["data"]["data"]
        secrets_seen += [doc[s]["value"]["password"] for s in ("pending", "current", "previous") if doc.get(s)]
    sm = moto.client("secretsmanager")
    for version in sm.list_secret_version_ids(SecretId=alt_secret, IncludeDeprecated=True)["Versions"]:
        value = sm.get_secret_value(
            SecretId=alt_secret,
            VersionId=version["VersionId"],
            VersionStage=version.get("VersionStages", ["AWSPREVIOUS"])[0],
        )
        secrets_seen.append(json.loads(value["SecretString"])["password"])
    file_doc = json.loads((tmp_path / "s.json").read_text())["secrets"]["hooks/signing"]
    secrets_seen += [file_doc[s]["value"]["key"] for s in ("current", "previous") if file_doc.get(s)]
    secrets_seen += [
        row[0]
        for row in scram_pg.query(
            "SELECT rolpassword FROM pg_authid WHERE rolname = ANY(%s)", ([roles.app, roles.clone],)
        )
    ]
    assert len(set(secrets_seen)) >= 9, secrets_seen
    control_value = json.loads((tmp_path / "s.json").read_text())["secrets"]["control"]["current"]["value"]["value"]
    assert control_value in output and "return_secret is set" in output
    leaked = [s for s in set(secrets_seen) if s and s in output]
    assert leaked == [], f"{len(leaked)} secret value(s) found in -vvv output"


# ---- AWS specifics --------------------------------------------------------------------------
def test_aws_rejected_first_version_stays_pending_then_later_rollbacks_drop_it(moto):
    store = aws_args(moto)
    args = dict(secret=secret_path(), target="generic", **store)
    first = rotate(dict(args, test_command=["false"]))
    assert first["failed"] and first["failed_step"] == "test" and first["rolled_back"] is False, first
    assert "first version, which Secrets Manager also labels AWSCURRENT" in first["msg"]
    assert stored(store, args["secret"]) is None and stored(store, args["secret"], "pending") is not None
    assert rotate(args)["resumed"] is True  # fixed: the re-run resumes the same version
    current = stored(store, args["secret"])
    refused = rotate(dict(args, force=True, test_command=["false"]))
    assert refused.get("rolled_back") is True, refused
    labels = moto.client("secretsmanager").describe_secret(SecretId=args["secret"])["VersionIdsToStages"]
    assert sorted(label for names in labels.values() for label in names) == ["AWSCURRENT"]
    assert stored(store, args["secret"]) == current


def test_aws_endpoint_down_names_the_options_to_check():
    from tests.harness.process import free_port

    store = dict(aws_args(SimpleNamespace(endpoint_url=f"http://127.0.0.1:{free_port()}")), backend_timeout=2)
    failed = rotate(dict(secret="x", target="generic", **store))
    assert failed["failed"] and failed["failed_step"] == "plan"
    assert "check aws_region, aws_endpoint_url" in failed["msg"]


@pytest.mark.parametrize("name", ["../../sys/mounts", "a/../../../sys/policy", "x/..", "/sys/mounts", "x?list=true"])
def test_secret_names_that_leave_the_path_fail_before_any_request(openbao, moto, tmp_path, name):
    from ansible.errors import AnsibleLookupError

    from tests.harness.process import free_port

    # Before the check, '../../sys/mounts' read Vault's mount table with the token and then raised a KeyError.
    closed = f"http://127.0.0.1:{free_port()}"
    stores = [vault_args(openbao), vault_args(openbao, url=closed), aws_args(moto)]
    stores.append(dict(backend="file", file_path=str(tmp_path / "s.json")))
    for store in stores:
        failed = rotate(dict(secret=name, target="generic", **store))
        # The same message against a closed port: the name is judged before any connection is made.
        assert failed["failed"] and failed["failed_step"] == "plan", failed
        assert "is not a plain path" in failed["msg"] and "nothing was read or written" in failed["msg"], failed
        with pytest.raises(AnsibleLookupError, match="is not a plain path"):
            lookup(name, cache=False, **store)
    assert not (tmp_path / "s.json").exists()


# ---- review: defects found by an adversarial pass ---------------------------------------------
def test_first_rotation_rejected_keeps_the_password_the_role_now_has(scram_pg, roles, openbao):
    # No current version to set back: the role keeps the pending password, so the store must keep it too.
    args = password_args(scram_pg, roles, openbao, test_query="SELECT id FROM forbidden")
    failed = rotate(args)
    assert failed["failed"] and failed["failed_step"] == "test", failed
    assert failed["rolled_back"] is False and failed["restored_target"] is False, failed
    assert "current credential is unchanged and works" not in failed["msg"], failed["msg"]
    assert "no current version" in failed["msg"], failed["msg"]
    pending = stored(args, args["secret"], "pending")
    assert pending is not None and can_login(scram_pg, roles, roles.app, pending["password"])
    done = rotate(dict(args, test_query="SELECT id FROM accounts"))
    assert done["resumed"] is True and done["step"] == "promote", done


def test_explicit_rollback_without_a_current_version_keeps_the_password_the_role_now_has(scram_pg, roles, openbao):
    # A refused first rotation leaves the role on the pending password; a later on_pending: rollback has no current
    # version to set back, so dropping the pending one would leave the role with a password no store holds.
    args = password_args(scram_pg, roles, openbao, test_query="SELECT id FROM forbidden")
    assert rotate(args)["failed_step"] == "test"
    pending = stored(args, args["secret"], "pending")
    assert pending is not None and can_login(scram_pg, roles, roles.app, pending["password"])
    for check in (False, True):
        refused = rotate(dict(args, on_pending="rollback"), check=check)
        assert stored(args, args["secret"], "pending") == pending, refused
        assert refused.get("failed") and refused["failed_step"] == "plan", refused
        assert "no usable current version" in refused["msg"] and "resume" in refused["msg"], refused["msg"]
        assert can_login(scram_pg, roles, roles.app, pending["password"])
    done = rotate(dict(args, test_query="SELECT id FROM accounts"))
    assert done["resumed"] is True and done["step"] == "promote", done
    assert stored(args, args["secret"]) == pending


def test_explicit_rollback_without_a_current_version_keeps_what_apply_command_set(tmp_path):
    store = dict(backend="file", file_path=str(tmp_path / "s.json"))
    applied = tmp_path / "applied"
    args = dict(secret="api/token", target="generic", **store, apply_command=["sh", "-c", f"cat > {applied}"])
    assert rotate(dict(args, test_command=["false"]))["failed_step"] == "test"
    pending = stored(store, "api/token", "pending")
    assert pending["value"] == applied.read_text().strip()
    refused = rotate(dict(args, on_pending="rollback"))
    assert refused.get("failed") and "no usable current version" in refused["msg"], refused
    assert stored(store, "api/token", "pending") == pending
    # Without apply_command nothing outside the store holds the value: the rollback drops it.
    rolled = rotate(dict(secret="api/token", target="generic", on_pending="rollback", **store))
    assert rolled["rolled_back"] is True and stored(store, "api/token", "pending") is None, rolled


def test_socket_login_that_asks_no_password_is_not_a_test(scram_pg, roles, openbao, monkeypatch):
    # pg_hba trusts local sockets: a test login there succeeds with any password, so it proves nothing.
    args = password_args(scram_pg, roles, openbao, login_host=None, login_unix_socket=str(scram_pg.socket_dir))

    def drift():
        scram_pg.query(sql.SQL("ALTER ROLE {} PASSWORD 'drifted'").format(sql.Identifier(roles.app)))

    with fault_before(monkeypatch, "test", drift):
        failed = rotate(args)
    assert failed["failed"] and failed["failed_step"] == "test", failed
    assert "asked for no password" in failed["msg"] and "login_host" in failed["msg"], failed["msg"]
    assert stored(args, args["secret"]) is None


@pytest.mark.parametrize("how", ["delete", "destroy"])
def test_vault_deleted_latest_version_is_a_missing_secret(openbao, how):
    store = vault_args(openbao)
    args = dict(secret=secret_path(), target="generic", **store)
    assert rotate(args)["step"] == "promote"
    kv = openbao.client().secrets.kv.v2
    if how == "delete":
        kv.delete_latest_version_of_secret(path=args["secret"], mount_point="secret")
    else:
        latest = kv.read_secret_metadata(path=args["secret"], mount_point="secret")["data"]["current_version"]
        kv.destroy_secret_versions(path=args["secret"], versions=[latest], mount_point="secret")
    check = rotate(args, check=True)
    assert check["changed"] is True and check["planned_steps"] == ["stage", "apply", "test", "promote"], check
    again = rotate(args)
    assert again["step"] == "promote", again
    assert rotate(args)["changed"] is False


def test_vault_kv_version_1_mount_fails_cleanly_and_writes_nothing(openbao):
    import hvac.exceptions

    mount = f"kv1-{uuid.uuid4().hex[:8]}"
    client = openbao.client()
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    args = dict(secret="app/token", target="generic", vault_mount=mount, **vault_args(openbao))
    failed = rotate(args)
    assert failed.get("failed") and failed["failed_step"] == "plan", failed
    assert "KV version 1" in failed["msg"] and "vault_mount" in failed["msg"], failed["msg"]
    with pytest.raises(hvac.exceptions.InvalidPath):  # the mount is still empty
        client.secrets.kv.v1.list_secrets(path="", mount_point=mount)


def test_non_ascii_symbols_are_refused_before_staging(scram_pg, roles, openbao):
    # libpq SASLpreps the password at login ('\ufb01' becomes 'fi'); a verifier of the raw string never matches.
    args = password_args(
        scram_pg, roles, openbao, symbols="\ufb01\u00aa", character_classes=["lower", "upper", "digits", "symbols"]
    )
    failed = rotate(args)
    assert failed["failed"] and "symbols" in failed["msg"], failed
    assert "printable ASCII" in failed["msg"], failed["msg"]
    assert stored(args, args["secret"]) is None and stored(args, args["secret"], "pending") is None


def test_aws_secret_scheduled_for_deletion_names_the_fix(moto):
    store = aws_args(moto)
    args = dict(secret=secret_path(), target="generic", **store)
    assert rotate(args)["step"] == "promote"
    moto.client("secretsmanager").delete_secret(SecretId=args["secret"], RecoveryWindowInDays=7)
    for check in (True, False):
        failed = rotate(dict(args, force=True), check=check)
        assert failed.get("failed") and "scheduled for deletion" in failed["msg"], failed
        assert "restore-secret" in failed["msg"]


def test_current_without_the_field_fails_cleanly_on_restore(moto, tmp_path):
    # An adopted secret: AWSCURRENT holds a JSON object of another shape, so it cannot be set back.
    store = aws_args(moto)
    secret = secret_path()
    moto.client("secretsmanager").create_secret(Name=secret, SecretString='{"user": "app", "pass": "hand-made-pw"}')
    args = dict(
        secret=secret,
        target="generic",
        force=True,
        apply_command=["sh", "-c", f"cat > {tmp_path / 'applied'}"],
        test_command=["false"],
        **store,
    )
    failed = rotate(args)
    assert failed.get("failed") and failed["failed_step"] == "test", failed
    assert failed["restored_target"] is False and "hand-made-pw" not in json.dumps(failed)
    assert stored(store, secret, "pending") is not None  # what the target now holds stays in the store


def test_aws_secret_deleted_during_the_run_is_named(moto, monkeypatch):
    store = aws_args(moto)
    args = dict(secret=secret_path(), target="generic", **store)
    assert rotate(args)["step"] == "promote"
    sm = moto.client("secretsmanager")
    with fault_before(
        monkeypatch, "stage", lambda: sm.delete_secret(SecretId=args["secret"], ForceDeleteWithoutRecovery=True)
    ):
        failed = rotate(dict(args, force=True))
    assert failed.get("failed") and failed["failed_step"] == "stage", failed
    assert "re-run" in failed["msg"], failed["msg"]
    assert rotate(args)["step"] == "promote"


def test_lookup_cache_tells_vault_namespaces_apart(openbao):
    # Same path in two namespaces: the second read must not be served the first namespace's value from the cache.
    client = openbao.client()
    names = [f"ns{uuid.uuid4().hex[:6]}" for _index in range(2)]
    values = []
    for namespace in names:
        client.sys.create_namespace(namespace)
        openbao.client().adapter.request(
            "POST",
            "/v1/sys/mounts/secret",
            json={"type": "kv", "options": {"version": "2"}},
            headers={"X-Vault-Namespace": namespace},
        )
        store = dict(vault_args(openbao), vault_namespace=namespace)
        rotate(dict(secret="app/token", target="generic", **store))
        values.append(stored(store, "app/token")["value"])
    assert values[0] != values[1]
    seen = [lookup("app/token", field="value", vault_namespace=ns, **vault_args(openbao)) for ns in names]
    assert seen == values


def test_test_url_redirect_does_not_send_the_new_value_elsewhere(tmp_path):
    # test_url answers 302 to another origin: the bearer token must not follow it, nor its answer count as the test.
    seen = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirect(Elsewhere):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{other.server_port}/login")
            self.end_headers()

    first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (other, first):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = dict(backend="file", file_path=str(tmp_path / "s.json"))
        args = dict(secret="api/token", target="generic", test_url=f"http://127.0.0.1:{first.server_port}/", **store)
        failed = rotate(args)
        assert [s for s in seen if s] == [], "the new value was sent to the redirect target"
        assert failed.get("failed") and failed["failed_step"] == "test", failed
        assert "redirected" in failed["msg"], failed["msg"]
        assert stored(store, "api/token") is None
    finally:
        for server in (other, first):
            server.shutdown()


def test_vault_missing_mount_fails_in_check_mode_too(openbao):
    args = dict(secret=secret_path(), target="generic", vault_mount="no-such-mount", **vault_args(openbao))
    for check in (True, False):
        failed = rotate(args, check=check)
        assert failed.get("failed") and failed["failed_step"] == "plan", failed
        assert "nothing is mounted at vault_mount 'no-such-mount'" in failed["msg"], failed["msg"]


def test_secret_of_other_roles_is_refused_before_touching_them(scram_pg, roles, openbao):
    # roles changed under the same secret: the revoke would NULL the password of a role no longer in roles.
    other = [f"{roles.app}_x", f"{roles.app}_y"]
    for role in other:
        scram_pg.query(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x-initial' IN ROLE {}").format(
                sql.Identifier(role), sql.Identifier(roles.group)
            )
        )
    try:
        args = dict(
            secret=secret_path(),
            target="postgresql_alternating",
            roles=[roles.app, roles.clone],
            grace_seconds=0,
            **vault_args(openbao),
            **pg_args(scram_pg, roles),
        )
        assert rotate(args)["step"] == "promote"
        current = stored(args, args["secret"])
        failed = rotate(dict(args, roles=other, force=True, revoke_previous=True))
        assert failed.get("failed") and failed["failed_step"] == "plan", failed
        assert "not one of roles" in failed["msg"], failed["msg"]
        assert can_login(scram_pg, roles, current["username"], current["password"])
    finally:
        for role in other:
            scram_pg.query(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
