"""Role locksmith.ops.audit against a real PostgreSQL 15: triggers per database, auditor grants, idempotence."""

from __future__ import annotations

import shlex
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics


def _play(cluster, database, auditor, **overrides):
    return [
        {
            "hosts": "localhost",
            "gather_facts": False,
            "roles": [
                {
                    "role": "locksmith.ops.audit",
                    "vars": {
                        "audit_become": False,
                        "audit_login_unix_socket": str(cluster.socket_dir),
                        "audit_login_port": cluster.port,
                        "audit_retention_timer_enabled": False,
                        "audit_auditor_role": auditor,
                        "audit_databases": [
                            {"database": database, "tables": ["users"], "exclude_columns": ["password_hash"]},
                            {"database": database, "tables": ["notes"], "diff_only": True, "retention_days": 30},
                        ],
                        **overrides,
                    },
                }
            ],
        }
    ]


def _metrics_in(cluster, tmp_path):
    """The metrics (on by default) kept under tmp_path, not in this machine's /var/lib/prometheus/node-exporter."""
    return {
        "audit_metrics_dir": str(tmp_path / "textfile"),
        "audit_metrics_script_file": str(tmp_path / "locksmith-audit-metrics"),
        "audit_psql_executable": str(cluster.bin_dir / "psql"),
    }


def test_role_applies_triggers_and_grants_once(pg_cluster, pg_database, ansible, tmp_path):
    auditor = "auditor_%s" % uuid.uuid4().hex[:8]
    metrics = _metrics_in(pg_cluster, tmp_path)
    pg_cluster.query('CREATE ROLE "%s"' % auditor)
    try:
        pg_cluster.query(
            "CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text);"
            "CREATE TABLE notes (id int PRIMARY KEY, body text)",
            dbname=pg_database,
        )
        first = ansible.run_playbook(_play(pg_cluster, pg_database, auditor, **metrics))
        assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
        assert first.changed() >= 1
        again = ansible.run_playbook(_play(pg_cluster, pg_database, auditor, **metrics))
        assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
        check = ansible.run_playbook(_play(pg_cluster, pg_database, auditor, **metrics), check=True)
        assert check.rc == 0 and check.changed() == 0
        rows = pg_cluster.query(
            "SELECT c.relname, count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE 'locksmith_audit_%%' GROUP BY 1 ORDER BY 1",
            dbname=pg_database,
        )
        assert rows == [("notes", 4), ("users", 4)]
        assert pg_cluster.query(
            "SELECT has_table_privilege(%s, 'audit.log', 'SELECT'), has_table_privilege(%s, 'audit.log', 'DELETE')",
            (auditor, auditor),
            dbname=pg_database,
        ) == [(True, False)]
        bad = ansible.run_playbook(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "roles": [
                        {
                            "role": "locksmith.ops.audit",
                            "vars": {"audit_databases": [{"database": "shop; rm -rf /", "tables": ["users"]}]},
                        }
                    ],
                }
            ]
        )
        assert bad.rc != 0 and "audit_databases[0]" in bad.stdout
        # A calendar systemd cannot parse is refused before any trigger or unit is written.
        typo = ansible.run_playbook(
            _play(
                pg_cluster,
                pg_database,
                auditor,
                **metrics,
                audit_retention_timer_enabled=True,
                audit_retention_on_calendar="dialy",
            )
        )
        assert typo.rc != 0, typo.stdout[-3000:]
        assert "audit_retention_on_calendar is 'dialy', which systemd does not accept" in typo.stdout
        assert not list(Path("/etc/systemd/system").glob("locksmith-audit-retention-*"))
    finally:
        pg_cluster.query(
            'REASSIGN OWNED BY "%s" TO postgres; DROP OWNED BY "%s"' % (auditor, auditor), dbname=pg_database
        )
        pg_cluster.query('DROP ROLE "%s"' % auditor)


# ---- the retention metrics: the role's run and each run of the retention service ------------------------------------
ROLE_DIR = Path(__file__).resolve().parents[2] / "roles" / "audit"


def _recorded_run(cluster, database):
    rows = cluster.query("SELECT floor(extract(epoch FROM ran_at))::bigint FROM audit.retention_run", dbname=database)
    return rows[0][0]


def _published(path, database):
    return {
        name: value
        for (name, labels), value in _metrics.parse(path.read_text()).items()
        if labels == (("database", database),)
    }


def _unit_lines(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def _run_retention_service(unit_text, user):
    """What systemd does for the Type=oneshot unit: ExecStart as User=, then ExecStartPost (its '+': as root) only
    when ExecStart succeeded. Returns ExecStart's result."""
    (start,) = _unit_lines(unit_text, "ExecStart")
    started = subprocess.run(
        ["runuser", "-u", user, "--", *shlex.split(start)], capture_output=True, text=True, check=False
    )
    if started.returncode == 0:
        for post in _unit_lines(unit_text, "ExecStartPost"):
            assert post.startswith("+"), post
            posted = subprocess.run(shlex.split(post[1:]), capture_output=True, text=True, check=False)
            assert posted.returncode == 0, posted.stderr
    return started


def test_role_publishes_the_recorded_retention_run_and_the_service_refreshes_it_after_each_completed_run(
    pg_cluster, pg_database, ansible, tmp_path
):
    """The published run time was the Ansible run's, and the timer's runs wrote nothing: a retention that stopped or
    failed looked fresh after every converge and stale or fresh by nothing it did. Now the role and each retention
    service run publish what maintain() recorded, and a failed run publishes nothing."""
    pg_cluster.query(
        "CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text);"
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        dbname=pg_database,
    )
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    overrides = {
        "audit_metrics_dir": str(metrics),
        "audit_metrics_script_file": str(tmp_path / "locksmith-audit-metrics"),
        "audit_psql_executable": str(pg_cluster.bin_dir / "psql"),
        "audit_retention_max_age_seconds": 7200,
    }
    prom = metrics / _metrics.textfile_name("audit", pg_database)
    first = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides))
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    ran = _recorded_run(pg_cluster, pg_database)
    assert abs(ran - time.time()) < 120
    published = _published(prom, pg_database)
    assert published["locksmith_audit_retention_last_run_timestamp_seconds"] == ran
    assert published["locksmith_audit_retention_max_age_seconds"] == 7200
    assert published["locksmith_audit_log_bytes"] > 0
    assert [path.name for path in metrics.iterdir()] == [prom.name]  # one file per database, nothing left over
    again = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides))
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    check = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides), check=True)
    assert check.rc == 0 and check.changed() == 0, check.stdout[-3000:]

    # The retention service as the role renders it for this database.
    unit = tmp_path / "retention.service"
    ansible.render_role_vars(
        "audit",
        {unit: "{{ lookup('ansible.builtin.template', '%s') }}" % (ROLE_DIR / "templates" / "retention.service.j2")},
        {
            **_play(pg_cluster, pg_database, "", **overrides)[0]["roles"][0]["vars"],
            "item": {"database": pg_database},
        },
        tmp_path,
    )
    text = unit.read_text()
    assert _unit_lines(text, "User") == ["postgres"]

    # A completed run of the service publishes its own, recorded, time.
    pg_cluster.query("UPDATE audit.retention_run SET ran_at = ran_at - interval '3 days'", dbname=pg_database)
    aged = _recorded_run(pg_cluster, pg_database)
    started = _run_retention_service(text, "postgres")
    assert started.returncode == 0, started.stderr
    ran = _recorded_run(pg_cluster, pg_database)
    assert ran > aged + 2 * 86400
    assert _published(prom, pg_database)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran

    # A failing run (a view keeps maintain() from dropping a partition past the retention) publishes nothing; even
    # the writer run by hand publishes the old run, the one maintain() recorded.
    pg_cluster.query("UPDATE audit.retention_run SET ran_at = ran_at - interval '3 days'", dbname=pg_database)
    aged = _recorded_run(pg_cluster, pg_database)
    pg_cluster.query(
        "SELECT audit.create_partition('2020-01-01'); CREATE VIEW keeps_2020 AS SELECT * FROM audit.log_p202001",
        dbname=pg_database,
    )
    failed = _run_retention_service(text, "postgres")
    assert failed.returncode != 0 and "depend" in failed.stderr, failed.stderr
    assert _published(prom, pg_database)["locksmith_audit_retention_last_run_timestamp_seconds"] == ran
    (post,) = _unit_lines(text, "ExecStartPost")
    subprocess.run(shlex.split(post[1:]), check=True)
    assert _recorded_run(pg_cluster, pg_database) == aged
    assert _published(prom, pg_database)["locksmith_audit_retention_last_run_timestamp_seconds"] == aged


def _exec_start_post(ansible, tmp_path, overrides, database):
    """ExecStartPost= of the retention service as the role renders it with these variables."""
    unit = tmp_path / "rendered.service"
    ansible.render_role_vars(
        "audit",
        {unit: "{{ lookup('ansible.builtin.template', '%s') }}" % (ROLE_DIR / "templates" / "retention.service.j2")},
        {**overrides, "item": {"database": database}},
        tmp_path,
    )
    return _unit_lines(unit.read_text(), "ExecStartPost")


def test_metrics_are_published_by_default_into_a_directory_the_role_creates(pg_cluster, pg_database, ansible, tmp_path):
    """audit_metrics_dir defaulted to "", which wrote no metrics: on a default install (and in the demo)
    AuditRetentionOverdue had no series to read. Now the role publishes by default into Debian's textfile directory
    and creates it (0755) when missing. Here the directory is moved under tmp_path, where it does not exist yet; the
    molecule scenario keeps the real default."""
    pg_cluster.query("CREATE TABLE users (id int PRIMARY KEY, name text, password_hash text)", dbname=pg_database)
    overrides = {
        **_metrics_in(pg_cluster, tmp_path),
        "audit_databases": [{"database": pg_database, "tables": ["users"]}],
    }
    textfile = Path(overrides["audit_metrics_dir"])
    prom = textfile / _metrics.textfile_name("audit", pg_database)

    # --check on a host without the directory: predicted, nothing written, nothing failing.
    check = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides), check=True)
    assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert not textfile.exists()

    first = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides))
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert textfile.is_dir() and stat.S_IMODE(textfile.stat().st_mode) == 0o755
    published = _published(prom, pg_database)
    assert published["locksmith_audit_retention_last_run_timestamp_seconds"] == _recorded_run(pg_cluster, pg_database)
    assert published["locksmith_audit_retention_max_age_seconds"] == 176400
    (post,) = _exec_start_post(ansible, tmp_path, overrides, pg_database)
    assert post.startswith("+%s " % overrides["audit_metrics_script_file"]) and " --dir %s " % textfile in post
    again = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides))
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    # Only the paths here differ from the defaults, which publish, into Debian's directory.
    defaults = yaml.safe_load((ROLE_DIR / "defaults" / "main.yml").read_text())
    assert (defaults.get("audit_metrics_enabled"), defaults["audit_metrics_dir"]) == (
        True,
        "/var/lib/prometheus/node-exporter",
    )


@pytest.mark.parametrize(
    "off",
    [{"audit_metrics_dir": ""}, {"audit_metrics_enabled": False}],
    ids=["empty-dir-as-before", "metrics-enabled-false"],
)
def test_metrics_stay_off_with_an_empty_directory_or_the_switch(pg_cluster, pg_database, ansible, tmp_path, off):
    """An inventory that set audit_metrics_dir: "" (the only way to say "no metrics" before) still gets none."""
    pg_cluster.query("CREATE TABLE users (id int PRIMARY KEY, name text)", dbname=pg_database)
    overrides = {
        **_metrics_in(pg_cluster, tmp_path),
        "audit_databases": [{"database": pg_database, "tables": ["users"]}],
        **off,
    }
    run = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides))
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "no directory, no writer"
    assert not (Path(_metrics.DEFAULT_TEXTFILE_DIR) / _metrics.textfile_name("audit", pg_database)).exists()
    assert _exec_start_post(ansible, tmp_path, overrides, pg_database) == [""]


def test_databases_no_longer_audited_and_metrics_turned_off_leave_no_metrics_file(
    pg_cluster, pg_database, ansible, tmp_path
):
    """A database taken off audit_databases, or set state: absent, kept locksmith_audit_<database>.prom with its
    last retention run, so AuditRetentionOverdue fired for ever; so did every file once the metrics were turned off.
    Now the role removes the files of the databases it no longer publishes, and only those."""
    dropped, absent = f"t_{uuid.uuid4().hex[:12]}", f"t_{uuid.uuid4().hex[:12]}"
    databases = [pg_database, dropped, absent]
    for database in (dropped, absent):
        pg_cluster.create_database(database)
    try:
        for database in databases:
            pg_cluster.query("CREATE TABLE users (id int PRIMARY KEY, name text)", dbname=database)
        overrides = _metrics_in(pg_cluster, tmp_path)
        textfile = Path(overrides["audit_metrics_dir"])
        listed = [{"database": database, "tables": ["users"]} for database in databases]
        first = ansible.run_playbook(_play(pg_cluster, pg_database, "", **overrides, audit_databases=listed))
        assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
        files = {database: textfile / _metrics.textfile_name("audit", database) for database in databases}
        assert all(path.exists() for path in files.values())
        # Not the role's: other producers (one whose name starts alike), a temporary file of a killed writer.
        others = ["locksmith_auditx_shop.prom", _metrics.textfile_name("backup", dropped), ".%s.locksmith-tmp-q1w2e3"]
        others[2] %= files[dropped].name
        for name in others:
            (textfile / name).write_text("# planted\n")

        # One taken off the list, one set absent (its triggers go, its log stays).
        now = [listed[0], {"database": absent, "tables": ["users"], "state": "absent"}]
        play = _play(pg_cluster, pg_database, "", **overrides, audit_databases=now)
        check = ansible.run_playbook(play, check=True)
        assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
        assert files[dropped].exists() and files[absent].exists(), "--check removed a file"
        run = ansible.run_playbook(play, diff=True)
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert not files[dropped].exists() and not files[absent].exists(), "a retired database's file stayed"
        assert sorted(p.name for p in textfile.iterdir()) == sorted([files[pg_database].name, *others])
        predicted = [
            item["item"]["path"]
            for item in check.result("locksmith.ops.audit : Remove the metrics files of databases no longer published")[
                "results"
            ]
            if item.get("changed")
        ]
        assert sorted(predicted) == sorted(str(files[d]) for d in (dropped, absent))
        again = ansible.run_playbook(play)
        assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
        assert ansible.run_playbook(play, check=True).changed() == 0

        # Turned off: the last file goes too, and nothing else.
        off = _play(pg_cluster, pg_database, "", **overrides, audit_databases=now, audit_metrics_enabled=False)
        turned_off = ansible.run_playbook(off)
        assert turned_off.rc == 0, turned_off.stdout[-3000:] + turned_off.stderr[-2000:]
        assert sorted(p.name for p in textfile.iterdir()) == sorted(others)
        quiet = ansible.run_playbook(off)
        assert quiet.rc == 0 and quiet.changed() == 0, quiet.stdout[-3000:]
    finally:
        for database in (dropped, absent):
            pg_cluster.drop_database(database)
