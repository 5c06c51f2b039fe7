"""Role locksmith.ops.secrets through playbooks/secrets.yml against real OpenBao and PostgreSQL 15.

The playbook runs with ansible-playbook on localhost, as a user runs it. The consumer's "service" is a
command hook (the consumers' `command` key) that appends a line to a file, because this controller runs no
systemd: the restart and reload handlers share the same notification and selection of changed consumers,
but their systemd call itself is not exercised here.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hvac
import psycopg2
import pytest
from psycopg2 import sql

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from tests.integration import test_secret_rotate

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "secrets.yml"
ROLE = "locksmith.ops.secrets : "
# The cluster with scram-sha-256 logins (the admin keeps trust) that the module tests use.
scram_pg = test_secret_rotate.scram_pg


@pytest.fixture
def site(scram_pg, openbao, tmp_path):
    """A login role with a known password, secret names, an inventory with localhost in group secrets."""
    tag = uuid.uuid4().hex[:8]
    role, initial = f"app_{tag}", f"initial-{tag}"
    scram_pg.query(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (initial,))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"[secrets]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n",
        encoding="utf-8",
    )
    hook_log = tmp_path / "hook.log"
    site = dict(
        role=role,
        initial=initial,
        db_secret=f"role-tests/{tag}/db",
        hmac_secret=f"role-tests/{tag}/webhook",
        env_file=tmp_path / "app" / "app.env",
        hook_log=hook_log,
        inventory=inventory,
        tmp=tmp_path,
    )
    site["env_file"].parent.mkdir()
    site["vars"] = {
        "ansible_become": False,
        # The metrics are on by default: kept here (not created yet), not in this machine's textfile directory.
        "secrets_metrics_dir": str(tmp_path / "textfile"),
        "secrets_backend": {"backend": "vault", "vault_url": openbao.url, "vault_token": openbao.root_token},
        "secrets_rotations": [
            {
                "secret": site["db_secret"],
                "target": "postgresql_password",
                "role": role,
                "login_host": "127.0.0.1",
                "login_port": scram_pg.port,
                "login_user": "postgres",
                "ssl_mode": "disable",
                "connect_timeout": 3,
            },
            {"secret": site["hmac_secret"], "target": "hmac", "length": 48},
        ],
        "secrets_consumers": [
            {
                "path": str(site["env_file"]),
                "owner": "root",
                "command": ["/bin/sh", "-c", f"echo consumer restarted >> {hook_log}"],
                "vars": {
                    "DB_USER": {"secret": site["db_secret"], "field": "username"},
                    "DB_PASSWORD": site["db_secret"],
                    "WEBHOOK_KEY": site["hmac_secret"],
                },
            }
        ],
    }
    yield site
    scram_pg.query(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def play(ansible, site, check=False, diff=False, tags=None, verbosity=0, **extra):
    run = ansible.run_playbook(
        PLAYBOOK,
        inventory=site["inventory"],
        extra_vars={**site["vars"], **extra},
        check=check,
        diff=diff,
        tags=tags,
        verbosity=verbosity,
    )
    return run


def current(openbao, secret, stage="current"):
    doc = openbao.client().secrets.kv.v2.read_secret_version(
        path=secret, mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    return doc[stage]["value"] if doc.get(stage) else None


def env_values(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def can_login(cluster, user, password):
    try:
        psycopg2.connect(
            host="127.0.0.1", port=cluster.port, dbname="postgres", user=user, password=password, connect_timeout=3
        ).close()
    except psycopg2.OperationalError as err:
        assert "password authentication failed" in str(err), err
        return False
    return True


def hook_runs(site):
    return len(site["hook_log"].read_text().splitlines()) if site["hook_log"].exists() else 0


def consumer_result(run):
    return run.result(ROLE + "Write each consumer's env file from the current secret values")


def test_rotation_env_file_handler_only_on_change_and_nothing_at_vvv(scram_pg, openbao, site, ansible):
    check = play(ansible, site, check=True)
    assert check.rc == 0, check.stdout[-3000:] + check.stderr[-2000:]
    # Three tasks predicted changed: the textfile directory, the rotations (both due) and the env file.
    assert check.changed() == 3 and consumer_result(check)["changed"] is True
    assert not site["env_file"].exists() and hook_runs(site) == 0
    assert not Path(site["vars"]["secrets_metrics_dir"]).exists()  # --check on a host without it did not fail
    with pytest.raises(hvac.exceptions.InvalidPath):
        current(openbao, site["db_secret"])

    started = time.time()
    first = play(ansible, site)
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    # Published without asking (only the directory is moved here), into the directory the run created.
    textfile = Path(site["vars"]["secrets_metrics_dir"])
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o755
    for secret in (site["db_secret"], site["hmac_secret"]):
        published = {
            name: value
            for (name, labels), value in _metrics.parse(
                (textfile / _metrics.textfile_name("secret", secret)).read_text()
            ).items()
            if labels == (("secret", secret),)
        }
        assert started <= published.pop("locksmith_secret_last_rotation_timestamp_seconds") <= time.time()
        assert published == {"locksmith_secret_rotation_last_status": 1, "locksmith_secret_max_age_seconds": 2592000}
    rotated = first.result(ROLE + "Rotate each secret of secrets_rotations when due")["results"]
    assert [r["step"] for r in rotated] == ["promote", "promote"]
    db, key = current(openbao, site["db_secret"]), current(openbao, site["hmac_secret"])
    info = os.stat(site["env_file"])
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == 0 and info.st_gid == 0
    assert env_values(site["env_file"]) == {
        "DB_USER": site["role"],
        "DB_PASSWORD": db["password"],
        "WEBHOOK_KEY": key["key"],
    }
    assert len(key["key"]) == 48
    assert can_login(scram_pg, site["role"], db["password"])
    assert not can_login(scram_pg, site["role"], site["initial"])
    assert hook_runs(site) == 1

    again = play(ansible, site)
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]
    assert hook_runs(site) == 1  # handler not run: the file did not change
    assert current(openbao, site["db_secret"]) == db
    assert play(ansible, site, check=True).changed() == 0

    # A forced rotation (after a leak): --check predicts the env file changes, and runs no handler.
    forced = {"secrets_rotation_overrides": {"force": True, "grace_seconds": 0}}
    predicted = play(ansible, site, check=True, **forced)
    assert predicted.rc == 0 and consumer_result(predicted)["changed"] is True, predicted.stdout[-3000:]
    assert hook_runs(site) == 1 and current(openbao, site["db_secret"]) == db

    # The same forced run at -vvv --diff (the done-when): the whole output is grepped for every value.
    # A control consumer's command prints its own file, so the grep is shown able to find a value.
    control = site["db_secret"].replace("/db", "/control")
    repo = site["tmp"] / "scanned"
    repo.mkdir()
    planted = "sc4n-Passw0rd-%s" % uuid.uuid4().hex[:6]
    (repo / ".env").write_text(f"API_TOKEN={planted}\n", encoding="utf-8")
    control_file = site["tmp"] / "control.env"
    vvv = play(
        ansible,
        site,
        verbosity=3,
        diff=True,
        secrets_rotations=[*site["vars"]["secrets_rotations"], {"secret": control, "target": "generic"}],
        secrets_consumers=[
            *site["vars"]["secrets_consumers"],
            {
                "path": str(control_file),
                "owner": "root",
                "vars": {"CONTROL": control},
                "command": ["/bin/cat", str(control_file)],
            },
        ],
        secrets_scan_paths=[str(repo)],
        secrets_scan_fail_on_findings=False,
        **forced,
    )
    output = vvv.stdout + vvv.stderr
    assert vvv.rc == 0, output[-3000:]
    assert "<secret v" in output and "Env File Value" in output
    new_db = current(openbao, site["db_secret"])
    assert new_db["password"] != db["password"]
    assert env_values(site["env_file"])["DB_PASSWORD"] == new_db["password"]
    assert env_values(site["env_file"])["WEBHOOK_KEY"] == current(openbao, site["hmac_secret"])["key"]
    assert can_login(scram_pg, site["role"], new_db["password"])
    assert not can_login(scram_pg, site["role"], db["password"])
    assert hook_runs(site) == 2  # once more, for the one change

    control_value = current(openbao, control)["value"]
    assert env_values(control_file) == {"CONTROL": control_value} and control_value in output
    values = [openbao.root_token, site["initial"], planted]
    client = openbao.client().secrets.kv.v2
    for secret, field in ((site["db_secret"], "password"), (site["hmac_secret"], "key")):
        meta = client.read_secret_metadata(path=secret, mount_point="secret")["data"]
        for version in range(1, meta["current_version"] + 1):
            doc = client.read_secret_version(
                path=secret, mount_point="secret", version=version, raise_on_deleted_version=True
            )["data"]["data"]
            values += [doc[s]["value"][field] for s in ("pending", "current", "previous") if doc.get(s)]
    verifier = scram_pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (site["role"],))
    values += [row[0] for row in verifier]
    # token, initial, planted, two database passwords, two HMAC keys, the SCRAM verifier
    assert len(set(values)) >= 8, len(set(values))
    leaked = [v for v in set(values) if v in output]
    assert leaked == [], f"{len(leaked)} secret value(s) found in -vvv output"


def test_scan_of_a_planted_env_file_fails_with_file_and_line_only(site, ansible):
    repo = site["tmp"] / "repo"
    (repo / "deploy").mkdir(parents=True)
    (repo / "README.md").write_text("# ops\n", encoding="utf-8")
    planted = "pl4nted-Passw0rd-%s" % uuid.uuid4().hex[:6]
    (repo / "deploy" / "prod.env").write_text(f"# prod\nDB_PASSWORD={planted}\nDB_HOST=\n", encoding="utf-8")
    run = play(ansible, site, tags="secrets_scan", secrets_scan_paths=[str(repo)])
    assert run.rc != 0
    failed = run.result(ROLE + "Check secrets_scan_paths hold no leaked secret")
    assert failed["failed"] is True
    assert "%s:2 (Env File Value)" % (repo / "deploy" / "prod.env") in failed["msg"]
    assert [(f["line"], f["type"]) for f in failed["findings"]] == [(2, "Env File Value"), (2, "Secret Keyword")]
    assert planted not in run.stdout + run.stderr
    assert site["env_file"].exists() is False  # only the scan ran (--tags secrets_scan)


def test_preflight_names_the_bad_entry(site, ansible):
    bad = play(
        ansible,
        site,
        tags="secrets_rotate",
        secrets_rotations=[{"secret": "x", "target": "hmac", "pasword": "typo"}],
    )
    assert bad.rc != 0 and "secrets_rotations[0] (x)" in bad.stdout and "unknown here: pasword" in bad.stdout
    world = dict(site["vars"]["secrets_consumers"][0], mode="0644")
    refused = play(ansible, site, secrets_consumers=[world])
    assert refused.rc != 0 and "secrets_consumers[0]" in refused.stdout and "other users nothing" in refused.stdout
    assert not site["env_file"].exists()
    no_program = play(ansible, site, secrets_schedule="cron", secrets_schedule_command=["/usr/bin/ansible-pull-nope"])
    assert no_program.rc != 0 and "A host without Ansible cannot run the rotation itself" in no_program.stdout
    # A space in a cron field or in the user would shift the fields of the cron line: refused before it is written.
    cron = {"secrets_schedule": "cron", "secrets_schedule_command": ["/usr/bin/true"]}
    shifted = play(ansible, site, **cron, secrets_schedule_cron_hour="4 * * * root /tmp/x #")
    assert shifted.rc != 0 and "secrets_schedule_cron_hour is '4 * * * root /tmp/x #'" in shifted.stdout
    user = play(ansible, site, **cron, secrets_schedule_user="root /tmp/x")
    assert user.rc != 0 and "secrets_schedule_user is 'root /tmp/x', which is not a user name" in user.stdout
    broken = play(ansible, site, secrets_schedule="cron", secrets_schedule_command=["/usr/bin/true", "a\nb"])
    assert broken.rc != 0 and "no line break in any element" in broken.stdout
    assert not Path("/etc/cron.d/locksmith-secrets-rotate").exists()


def test_env_file_values_are_quoted_or_refused(openbao, site, ansible):
    # Generated values with characters that systemd and docker compose would read differently if written bare.
    secret = site["hmac_secret"].replace("/webhook", "/odd")
    odd = {"secret": secret, "target": "generic", "character_classes": ["symbols"], "symbols": '$# "`;&'}
    consumer = {"path": str(site["env_file"]), "owner": "root", "vars": {"ODD": secret, "KEY": site["hmac_secret"]}}
    rotations = [site["vars"]["secrets_rotations"][1], odd]
    first = play(ansible, site, secrets_rotations=rotations, secrets_consumers=[consumer])
    assert first.rc == 0, first.stdout[-3000:]
    value = current(openbao, secret)["value"]
    key = current(openbao, site["hmac_secret"])["key"]
    assert set(value) <= set(odd["symbols"])
    # Plain values stay bare (files written before quoting existed do not change); the others are single-quoted.
    assert site["env_file"].read_text().splitlines()[-2:] == [f"ODD='{value}'", f"KEY={key}"]
    # A shell reads single quotes as systemd does: literally, no expansion, no comment, no word splitting.
    shell = subprocess.run(
        ["/bin/sh", "-c", 'set -a; . "$0"; printf %s "$ODD"', str(site["env_file"])],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert shell.stdout == value

    # A value stored by hand with a line break and a quote would add a variable: refused, the file kept.
    before = site["env_file"].read_bytes()
    client = openbao.client().secrets.kv.v2
    doc = client.read_secret_version(path=secret, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
    injected = "x'\nLD_PRELOAD=/tmp/evil.so"
    doc["current"]["value"]["value"] = injected
    client.create_or_update_secret(path=secret, secret=doc, mount_point="secret")
    refused = play(ansible, site, tags="secrets_consumers", secrets_rotations=rotations, secrets_consumers=[consumer])
    output = refused.stdout + refused.stderr
    assert refused.rc != 0
    assert f"{site['env_file']} was left as it was: the values of ODD hold a single quote" in output
    assert "LD_PRELOAD" not in output and site["env_file"].read_bytes() == before

    # Symbols that generated values could not carry are refused before any rotation.
    quote = dict(odd, symbols="ab'c")
    bad = play(ansible, site, secrets_rotations=[quote], secrets_consumers=[consumer])
    assert bad.rc != 0 and f"The symbols of secrets_rotations[0] ({secret}) hold a single quote" in bad.stdout
    assert current(openbao, secret)["value"] == injected


def rotation_results(run):
    return run.result(ROLE + "Rotate each secret of secrets_rotations when due")["results"]


def test_metrics_stay_off_as_before_and_an_entry_directory_wins(site, ansible):
    """secrets_metrics_dir: "" was the only way to say "no metrics" before secrets_metrics_enabled: it still is; and
    an entry's own metrics_dir is used whatever the role-wide settings say."""
    role_dir = site["tmp"] / "role-textfile"
    entry_dir = site["tmp"] / "entry-textfile"
    entry_dir.mkdir()
    off = {"secrets_metrics_enabled": False, "secrets_metrics_dir": str(role_dir)}
    # (role variables, entry options, where the file goes, whether the role's directory exists afterwards)
    cases = [
        ({"secrets_metrics_dir": ""}, {}, None, False),
        (off, {}, None, False),
        (off, {"metrics_dir": str(entry_dir)}, entry_dir, False),
        ({"secrets_metrics_dir": str(role_dir)}, {"metrics_dir": str(entry_dir)}, entry_dir, True),
    ]
    for index, (role_vars, entry, expected, role_dir_made) in enumerate(cases):
        secret = site["hmac_secret"].replace("/webhook", "/metrics-%d" % index)
        run = play(
            ansible,
            site,
            tags="secrets_rotate",
            secrets_rotations=[{"secret": secret, "target": "hmac", **entry}],
            secrets_consumers=[],
            **role_vars,
        )
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
        (result,) = rotation_results(run)
        assert result["step"] == "promote"
        written = result.get("metrics_file")
        assert written == (str(expected / _metrics.textfile_name("secret", secret)) if expected else None), index
        assert role_dir.exists() == role_dir_made, index
    assert not any(role_dir.iterdir())  # made (the role's directory) but not written: the entry's won


def test_a_secret_no_longer_rotated_loses_its_metrics_file(site, ansible):
    """A secret taken off secrets_rotations kept locksmith_secret_<secret>.prom with its last rotation time, so
    SecretRotationOverdue fired for ever; so did every file once the metrics were turned off. Now the role removes the
    secret files of its directory that no listed secret publishes, and nothing else."""
    textfile = Path(site["vars"]["secrets_metrics_dir"])
    kept, retired = (site["hmac_secret"].replace("/webhook", "/" + name) for name in ("kept", "retired"))
    rotations = [{"secret": secret, "target": "hmac"} for secret in (kept, retired)]
    first = play(ansible, site, tags="secrets_rotate", secrets_rotations=rotations, secrets_consumers=[])
    assert first.rc == 0, first.stdout[-3000:] + first.stderr[-2000:]
    files = {secret: textfile / _metrics.textfile_name("secret", secret) for secret in (kept, retired)}
    assert all(path.exists() for path in files.values())  # names with a '/': slugged, with a hash
    others = ["locksmith_secretx_app.prom", _metrics.textfile_name("backup", "app"), ".%s.locksmith-tmp-p0o9i8"]
    others[2] %= files[retired].name
    for name in others:
        (textfile / name).write_text("# planted\n")

    now = {"tags": "secrets_rotate", "secrets_rotations": rotations[:1], "secrets_consumers": []}
    check = play(ansible, site, check=True, **now)
    assert check.rc == 0 and files[retired].exists(), check.stdout[-3000:] + check.stderr[-2000:]
    predicted = check.result(ROLE + "Remove the metrics files of secrets no longer rotated")["results"]
    assert [r["item"]["path"] for r in predicted if r.get("changed")] == [str(files[retired])]
    run = play(ansible, site, **now)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert sorted(p.name for p in textfile.iterdir()) == sorted([files[kept].name, *others])
    again = play(ansible, site, **now)
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]

    off = play(ansible, site, secrets_metrics_enabled=False, **now)
    assert off.rc == 0, off.stdout[-3000:] + off.stderr[-2000:]
    assert sorted(p.name for p in textfile.iterdir()) == sorted(others)
    quiet = play(ansible, site, secrets_metrics_enabled=False, **now)
    assert quiet.rc == 0 and quiet.changed() == 0, quiet.stdout[-3000:]
