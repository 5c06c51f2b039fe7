"""mode=pitr option checks: what reaches pgBackRest's restore_command and pg_ctl's /bin/sh, targets, ports, dirs."""

from __future__ import annotations

import os
import socket

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _pitr as P
from ansible_collections.locksmith.ops.plugins.module_utils import _postgres
from ansible_collections.locksmith.ops.plugins.module_utils import _restore as R


def params(**changes):
    values = {k: v.get("default") for k, v in R.restore_argument_spec().items()}
    values.update(
        database="app",
        destinations=[],
        mode="pitr",
        pgbackrest_stanza="main",
        pitr_data_dir="/nonexistent/pitr",
        pg_bin_dir="/usr/lib/postgresql/15/bin",
        login_host="127.0.0.1",
    )
    values.update(changes)
    return values


@pytest.mark.parametrize(
    "data_dir",
    [
        "/srv/pitr$(touch /tmp/owned)",  # pg_ctl runs `exec postgres -D "<dir>"` through /bin/sh
        "/srv/pitr`id`",
        "/srv/pi'tr",  # pgBackRest writes restore_command = '... --pg1-path=<dir> ...'
        '/srv/pi"tr',
        "/srv/pitr\nrestore_command='touch /tmp/owned'",
        "/srv/pi tr",
        "/srv/pitr%p",  # PostgreSQL substitutes %p/%f in restore_command
        "/srv/a,b",  # a list separator in unix_socket_directories
        "/srv/a\\b",
        "/srv/../var/lib/postgresql/15/main",
        "/srv/./pitr",
        "/srv//pitr",
    ],
)
def test_data_dirs_that_restore_command_or_the_shell_would_read_as_syntax_are_refused(data_dir):
    with pytest.raises(R.RestoreError, match=r"pitr_data_dir .* must be a plain absolute path") as err:
        P.check_options(params(pitr_data_dir=data_dir))
    assert err.value.details["option"] == "pitr_data_dir"


def test_a_config_path_with_a_quote_is_refused_and_a_trailing_slash_is_dropped():
    with pytest.raises(R.RestoreError, match=r"pgbackrest_config .* must be a plain absolute path"):
        P.check_options(params(pgbackrest_config="/etc/pgbackrest/x' y.conf"))
    stanza, data_dir, config = P.check_options(
        params(pitr_data_dir="/srv/pitr-1.restore/", pgbackrest_config="/etc/pgbackrest/pgbackrest.conf")
    )
    assert (stanza, data_dir, config) == ("main", "/srv/pitr-1.restore", "/etc/pgbackrest/pgbackrest.conf")


@pytest.mark.parametrize("stanza", ["main'; touch /tmp/x #", "main\nx", "../main", "main db", "-main", "m" * 101])
def test_stanza_names_with_metacharacters_are_refused(stanza):
    with pytest.raises(R.RestoreError, match=r"pgbackrest_stanza .* must be letters, digits"):
        P.check_options(params(pgbackrest_stanza=stanza))


@pytest.mark.parametrize("port", [0, -1, 80, 1023, 65536, 70000])
def test_ports_the_server_cannot_listen_on_are_refused(port):
    with pytest.raises(R.RestoreError, match="pitr_port %d is not a port" % port):
        P.check_options(params(pitr_port=port))


def test_a_data_dir_too_long_for_the_socket_is_refused():
    with pytest.raises(R.RestoreError, match="is too long: the restored server's socket"):
        P.check_options(params(pitr_data_dir="/srv/" + "p" * 100))


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("time", "yesterday", "is not a time pgBackRest reads"),
        ("time", "2026-11-27 02:00:00", "is not a time pgBackRest reads"),  # no zone: the host's local time
        ("time", "2026-13-27 02:00:00+00", "is not a time pgBackRest reads"),
        ("time", "2026-11-27 02:00:00+00\nrestore_command = 'touch /tmp/x'", "is not a time pgBackRest reads"),
        ("time", "2026-11-27 02:00:00+00'", "is not a time pgBackRest reads"),
        ("time", "0/3A000028", "is not a time pgBackRest reads"),
        ("lsn", "zz/yy", "is not an LSN"),
        ("lsn", "0/0' recovery_end_command='touch /tmp/x", "is not an LSN"),
        ("lsn", "2026-11-27 02:00:00+00", "is not an LSN"),
        ("immediate", "2026-11-27 02:00:00+00", "is set but pitr_target_type is immediate"),
    ],
)
def test_targets_that_do_not_fit_their_type_are_refused(kind, target, message):
    with pytest.raises(R.RestoreError, match=message):
        P.check_options(params(pitr_target_type=kind, pitr_target=target))


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("time", "2026-11-27 02:00:00+00"),
        ("time", "2026-11-27 02:00:00.123+02:00"),
        ("time", "2026-11-27 02:00:00-0530"),
        ("lsn", "0/3A000028"),
        ("lsn", "1F/0"),
        ("immediate", None),
    ],
)
def test_targets_in_pgbackrest_form_pass(kind, target):
    assert P.check_target(kind, target) == target


def test_enclosing_data_dir_finds_the_cluster_a_path_lies_in(tmp_path):
    (tmp_path / "data" / "pg_notify").mkdir(parents=True)
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    assert P.enclosing_data_dir(str(tmp_path / "data" / "pg_notify")) == str(tmp_path / "data")
    assert P.enclosing_data_dir(str(tmp_path / "data" / "new" / "deeper")) == str(tmp_path / "data")
    assert P.enclosing_data_dir(str(tmp_path / "restore")) is None


def _job(**changes):
    return P.PitrJob(params(**changes), [])


def test_plan_refuses_a_data_dir_inside_a_cluster_before_calling_pgbackrest(tmp_path):
    (tmp_path / "data" / "pg_notify").mkdir(parents=True)
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    job = _job(pitr_data_dir=str(tmp_path / "data" / "pg_notify"))
    with pytest.raises(R.RestoreError, match="lies inside the PostgreSQL data directory"):
        job.plan()


@pytest.mark.parametrize("kind", ["file", "symlink", "dangling"])
def test_plan_refuses_files_and_symlinks_without_a_traceback(tmp_path, kind):
    path = tmp_path / "restored"
    if kind == "file":
        path.write_text("x")
        message = "exists and is not a directory"
    else:
        target = tmp_path / ("empty" if kind == "symlink" else "missing")
        if kind == "symlink":
            target.mkdir()
        os.symlink(target, path)
        message = "is a symlink"
    with pytest.raises(R.RestoreError, match=message):
        _job(pitr_data_dir=str(path)).plan()


def test_plan_refuses_a_port_in_use(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        with pytest.raises(R.RestoreError, match="pitr_port %d is in use on 127.0.0.1" % port):
            _job(pitr_data_dir=str(tmp_path / "restored"), pitr_port=port).plan()
    finally:
        listener.close()


@pytest.mark.parametrize(("option", "value"), [("roles", ["a\x00b"]), ("extensions", ["../../etc/passwd"])])
def test_names_are_checked_before_anything_runs(option, value):
    with pytest.raises(R.RestoreError, match=r"%s\[0\]" % option):
        _job(**{option: value})


def test_target_database_is_refused_in_pitr_mode():
    with pytest.raises(R.RestoreError, match="target_database does not apply to mode=pitr"):
        _job(target_database="x'y")


def test_a_symlink_swapped_in_after_the_check_is_not_followed(tmp_path, monkeypatch):
    # In /tmp another user could plant the symlink between the emptiness check and mkdir: the directory it
    # points to must not become 0700 and owned by postgres.
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o750)
    before = os.stat(victim)
    data_dir = tmp_path / "restored"
    job = _job(pitr_data_dir=str(data_dir))
    os.symlink(victim, data_dir)
    monkeypatch.setattr(job, "_check_empty_dir", lambda path: None, raising=False)  # the check ran before
    with pytest.raises(R.RestoreError, match=r"pitr_data_dir .* cannot be prepared"):
        job._prepare_dir(str(data_dir))
    after = os.stat(victim)
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)


def test_prepare_dir_creates_a_private_directory(tmp_path):
    data_dir = tmp_path / "parent" / "restored"
    assert _job(pitr_data_dir=str(data_dir))._prepare_dir(str(data_dir)) is True
    assert os.stat(data_dir).st_mode & 0o777 == 0o700
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert _job(pitr_data_dir=str(empty))._prepare_dir(str(empty)) is False
    assert os.stat(empty).st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pgbackrest_stanza": None}, "mode=pitr needs pgbackrest_stanza"),
        ({"pitr_data_dir": None}, "mode=pitr needs pitr_data_dir"),
        ({"pitr_target_type": "time"}, "pitr_target_type=time needs pitr_target"),
        ({"pitr_data_dir": "relative/dir"}, "must be an absolute path"),
        ({"database": "x; DROP"}, "database 'x; DROP' is not a valid identifier"),
    ],
)
def test_pitr_options_are_checked_before_anything_runs(changes, message):
    with pytest.raises(Exception, match=message):
        P.PitrJob(params(**changes), [])


def test_pitr_refuses_a_non_empty_data_dir(tmp_path):
    (tmp_path / "PG_VERSION").write_text("15")
    job = P.PitrJob(params(pitr_data_dir=str(tmp_path)), [])
    assert job.base[1:] == ["--stanza=main"]
    with pytest.raises(R.RestoreError, match="is not empty; PITR restores only into a new"):
        job.plan()


def test_pitr_names_a_missing_pg_ctl():
    with pytest.raises(Exception, match="pg_ctl not found in pg_bin_dir '/nonexistent/bin'"):
        P.PitrJob(params(pg_bin_dir="/nonexistent/bin"), [])


def test_target_times_are_read_with_their_zone():
    utc = P.target_epoch("2026-11-27 02:00:00+00")
    assert utc == 1795744800.0
    assert P.target_epoch("2026-11-27 07:30:00+05:30") == P.target_epoch("2026-11-27 07:30:00+0530") == utc
    assert P.target_epoch("2026-11-26 21:00:00-05") == utc
    assert P.target_epoch("2026-11-27 02:00:00.250+00") == utc + 0.25
    assert P.target_epoch("2026-11-27 02:00:00") is None


@pytest.mark.parametrize("target", ["2026-11-27 02:00:00+25", "2026-11-27 02:00:00+05:75", "2026-02-30 02:00:00+00"])
def test_target_times_that_do_not_exist_are_refused(target):
    with pytest.raises(R.RestoreError, match="is not a time pgBackRest reads"):
        P.check_target("time", target)


def test_lsns_compare_as_numbers():
    assert P.lsn_number("0/FF") < P.lsn_number("0/100") < P.lsn_number("1/0")


def _backup(label, stop, lsn):
    return {"label": label, "timestamp": {"start": stop - 5, "stop": stop}, "lsn": {"start": "0/1", "stop": lsn}}


BACKUPS = [_backup("B1", 1795744800, "0/3000100"), _backup("B2", 1795748400, "0/5000100")]


@pytest.mark.parametrize(
    ("kind", "target", "label"),
    [
        ("immediate", None, "B2"),
        ("time", "2026-11-27 02:30:00+00", "B1"),  # between the two: only the first ended before it
        ("time", "2026-11-27 03:00:00+00", "B1"),  # the second ended at that very second: not before it
        ("time", "2026-11-27 03:00:01+00", "B2"),
        ("lsn", "0/4000000", "B1"),
        ("lsn", "0/5000100", "B2"),
    ],
)
def test_the_backup_restored_is_the_newest_that_ended_before_the_target(kind, target, label):
    job = _job(pitr_target_type=kind, pitr_target=target)
    assert job._choose_backup(BACKUPS)["label"] == label


@pytest.mark.parametrize(("kind", "target"), [("time", "2026-11-27 01:59:59+00"), ("lsn", "0/3000000")])
def test_a_target_older_than_every_backup_is_refused(kind, target):
    with pytest.raises(R.RestoreError, match=r"before the end of the oldest backup in stanza 'main' \(B1,") as err:
        _job(pitr_target_type=kind, pitr_target=target)._choose_backup(BACKUPS)
    assert err.value.details["option"] == "pitr_target"


@pytest.mark.parametrize(
    ("login_host", "listen", "connect_to"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("::1", "::1", "::1"),
        ("db1.internal", "db1.internal", "db1.internal"),
        ("", "", "/srv/pitr"),  # the restored server's own socket, never the source's default one
        ("/var/run/postgresql", "", "/srv/pitr"),
    ],
)
def test_checks_reach_the_restored_server_where_it_listens(login_host, listen, connect_to):
    job = _job(login_host=login_host, login_unix_socket="/var/run/postgresql", pitr_data_dir="/srv/pitr")
    assert job.listen == listen
    kwargs = _postgres.connect_kwargs(job.server.params, "app")
    assert (kwargs["host"], kwargs["port"]) == (connect_to, 5433)


@pytest.mark.parametrize("login_host", ["127.0.0.1' -c archive_command='touch /tmp/x", "a b", "-x", "h$(id)"])
def test_a_login_host_that_is_no_host_name_is_refused(login_host):
    with pytest.raises(R.RestoreError, match=r"login_host .* is not a host name or address") as err:
        _job(login_host=login_host)
    assert err.value.details["option"] == "login_host"


def test_an_unreadable_data_dir_is_refused_without_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "restored").mkdir()

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    job = _job(pitr_data_dir=str(tmp_path / "restored"))
    monkeypatch.setattr(P.os, "listdir", denied)
    with pytest.raises(R.RestoreError, match=r"pitr_data_dir .* cannot be read \(Permission denied\)"):
        job._check_empty_dir(str(tmp_path / "restored"))


def test_missing_configuration_is_written_and_present_files_are_kept(tmp_path):
    (tmp_path / "postgresql.conf").write_text("shared_buffers = 1GB\n")
    warnings = []
    job = P.PitrJob(params(pitr_data_dir=str(tmp_path)), warnings)
    job.backup = BACKUPS[0]
    job._complete_config(str(tmp_path))
    assert job.config_written == ["pg_hba.conf", "pg_ident.conf"]
    assert (tmp_path / "postgresql.conf").read_text() == "shared_buffers = 1GB\n"
    assert "local all all peer map=locksmith_pitr" in (tmp_path / "pg_hba.conf").read_text()
    assert os.stat(tmp_path / "pg_hba.conf").st_mode & 0o777 == 0o600
    assert "B1 holds no pg_hba.conf, pg_ident.conf" in warnings[0]


class _Recovering:
    """A restored server that replays WAL: in recovery for ``steps`` polls, its LSN advancing if ``advancing``."""

    def __init__(self, steps, advancing):
        self.steps, self.advancing, self.polls = steps, advancing, 0

    def run(self, dbname, statement, args=None, rows=False):
        self.polls += 1
        lsn = "0/%X" % (self.polls if self.advancing else 1)
        return [{"r": self.polls <= self.steps, "lsn": lsn}]


def _promoting(monkeypatch, server, tmp_path):
    now = [0.0]
    monkeypatch.setattr(P, "_run", lambda argv, describe: "")
    monkeypatch.setattr(P.time, "sleep", lambda seconds: now.__setitem__(0, now[0] + 10))
    job = P.PitrJob(params(pitr_data_dir=str(tmp_path)), [], clock=lambda: now[0])
    job.server = server
    return job


def test_a_long_recovery_that_advances_is_waited_for(monkeypatch, tmp_path):
    server = _Recovering(steps=100, advancing=True)  # 1000 s of replay, far past the stall limit
    _promoting(monkeypatch, server, tmp_path)._start_and_promote(str(tmp_path))
    assert server.polls == 101


def test_a_recovery_that_stalls_is_given_up(monkeypatch, tmp_path):
    server = _Recovering(steps=10**6, advancing=False)
    with pytest.raises(R.RestoreError, match=r"did not finish recovery: for 120s its WAL replay stayed at 0/1"):
        _promoting(monkeypatch, server, tmp_path)._start_and_promote(str(tmp_path))
    assert server.polls < 20


CONTROLDATA = """pg_control version number:            1300
Database cluster state:               shut down in recovery
wal_level setting:                    replica
max_connections setting:              200
max_worker_processes setting:         16
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           128
"""


def test_the_source_limits_a_recovering_server_must_match_are_read_from_pg_control():
    assert P.control_settings(CONTROLDATA) == {
        "max_connections": 200,
        "max_worker_processes": 16,
        "max_wal_senders": 10,
        "max_prepared_transactions": 0,
        "max_locks_per_transaction": 128,
    }


def test_a_written_postgresql_conf_carries_the_source_limits(tmp_path, monkeypatch):
    # A tuned Debian source (max_connections 200 in /etc) would stop the restored one at startup with 100.
    ran = []
    monkeypatch.setattr(P, "_run", lambda argv, describe, env=None: ran.append((argv, env)) or CONTROLDATA)
    job = P.PitrJob(params(pitr_data_dir=str(tmp_path)), [])
    job.backup = BACKUPS[0]
    job._complete_config(str(tmp_path))
    conf = (tmp_path / "postgresql.conf").read_text()
    assert "max_connections = 200\n" in conf and "max_locks_per_transaction = 128\n" in conf
    assert ran[0][0][-1] == str(tmp_path) and ran[0][1]["LC_ALL"] == "C"


class _Refusing:
    def run(self, dbname, statement, args=None, rows=False):
        raise _postgres.PostgresError('cannot connect: FATAL:  Peer authentication failed for user "postgres"')


def test_a_login_the_restored_server_refuses_is_said_at_once_not_waited_for(monkeypatch, tmp_path):
    (tmp_path / "postmaster.pid").write_text("1")
    job = _promoting(monkeypatch, _Refusing(), tmp_path)
    with pytest.raises(P.LoginRefused, match=r"runs, but refuses the checks' login: .*Peer authentication failed"):
        job._start_and_promote(str(tmp_path))
    job.config_written = ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"]
    with pytest.raises(P.LoginRefused, match=r"it reads the minimal pg_hba.conf written here"):
        job._start_and_promote(str(tmp_path))
