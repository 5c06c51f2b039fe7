"""Behaviour of role lynis_audit on the converged host: the summary agrees with Lynis' own report."""

import json
import os
import re
import subprocess

import pytest

REPORT_FILE = "/var/lib/locksmith/lynis/lynis-report.dat"
SUMMARY_FILE = "/var/lib/locksmith/lynis/summary.json"


@pytest.fixture(scope="module")
def report(host):
    """Lynis' report as {key: value} for single values and {key: [values]} for "key[]=" lines."""
    values = {}
    for line in host.file(REPORT_FILE).content_string.splitlines():
        key, sep, value = line.partition("=")
        if not sep or line.startswith("#"):
            continue
        if key.endswith("[]"):
            values.setdefault(key[:-2], []).append(value)
        else:
            values[key] = value
    return values


@pytest.fixture(scope="module")
def summary(host):
    return json.loads(host.file(SUMMARY_FILE).content_string)


def converge_with(extra_vars, timeout):
    """Run the scenario's converge again through ansible-playbook with ``extra_vars``; return the process."""
    return subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--extra-vars",
            json.dumps(extra_vars),
            os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "molecule", "_shared", "converge.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
        timeout=timeout,
    )


def test_lynis_runs_the_installed_package_version(host, report):
    assert host.package("lynis").is_installed
    shown = host.check_output("lynis show version")
    assert shown == report["lynis_version"]
    assert host.package("lynis").version.startswith(shown + "-")


def test_hardening_index_equals_the_report(summary, report):
    index = summary["hardening_index"]
    assert isinstance(index, int) and not isinstance(index, bool)
    assert 1 <= index <= 100
    assert index == int(report["hardening_index"])


def test_counts_and_findings_follow_the_report(summary, report):
    assert summary["tests_performed"] == int(report["lynis_tests_done"]) > 0
    for kind in ("warning", "suggestion"):
        lines = report.get(kind, [])
        findings = summary[kind + "s"]
        assert summary[kind + "_count"] == len(findings) == len(lines)
        for line, finding in zip(lines, findings, strict=True):
            test_id, text = line.split("|")[:2]
            assert finding.startswith(f"{test_id}: {text}")
    assert summary["suggestion_count"] > 0


def test_summary_is_readable_by_root_only(host):
    summary_file = host.file(SUMMARY_FILE)
    assert (summary_file.user, summary_file.group, summary_file.mode) == ("root", "root", 0o640)
    summary_dir = host.file(os.path.dirname(SUMMARY_FILE))
    assert (summary_dir.user, summary_dir.mode) == ("root", 0o750)


def test_index_below_minimum_fails_naming_the_variable(host, summary):
    """Re-run the role on the existing report (no install, no audit) with a minimum one above the index."""
    before = host.file(SUMMARY_FILE).sha256sum
    index = summary["hardening_index"]
    extra_vars = {
        "lynis_audit_install_enabled": False,
        "lynis_audit_audit_enabled": False,
        "lynis_audit_summary_enabled": False,
        "lynis_audit_min_index": index + 1,
    }
    run = converge_with(extra_vars, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    # Failures go to stderr (molecule's ansible.cfg sets display_failed_stderr); the callback may wrap lines.
    failure = " ".join(run.stderr.split())
    assert re.search(rf"Lynis hardening index {index} on \S+ is below lynis_audit_min_index {index + 1};", failure), (
        run.stderr
    )
    assert host.file(SUMMARY_FILE).sha256sum == before


METRICS_DIR = "/var/lib/prometheus/node-exporter"
METRICS_FILE = f"{METRICS_DIR}/locksmith_lynis.prom"


def _samples(text):
    """{metric name: value} of the exposition text's sample lines, and its HELP/TYPE lines."""
    samples, meta = {}, []
    for line in text.splitlines():
        if line.startswith("#"):
            meta.append(line)
        elif line:
            name, value = line.split()
            samples[name] = value
    return samples, meta


def test_metric_file_holds_the_reported_index(host, report):
    metric = host.file(METRICS_FILE)
    assert (metric.user, metric.group, metric.mode) == ("root", "root", 0o644)
    samples, meta = _samples(metric.content_string)
    # docs/metrics.md: no labels, one gauge.
    assert samples == {"locksmith_lynis_hardening_index": report["hardening_index"]}
    assert "# TYPE locksmith_lynis_hardening_index gauge" in meta
    # node_exporter reads only *.prom: nothing else of ours may end in .prom.
    proms = host.check_output("find %s -maxdepth 1 -name '*.prom' -printf '%%f\\n'", METRICS_DIR).split()
    assert [name for name in proms if "lynis" in name] == ["locksmith_lynis.prom"]


def test_metric_follows_a_new_report_by_rename(host, report):
    """Re-run the role on a copy of the report with another index: the .prom file is a new inode with it."""
    index = int(report["hardening_index"])
    other = index - 7
    fake = "/var/lib/locksmith/lynis/other/lynis-report.dat"
    host.run_expect([0], "install -d -m 0750 %s", os.path.dirname(fake))
    host.run_expect([0], "sed 's/^hardening_index=.*/hardening_index=%s/' %s > %s", str(other), REPORT_FILE, fake)
    inode_before = host.check_output("stat -c %%i %s", METRICS_FILE)
    extra_vars = {
        "lynis_audit_install_enabled": False,
        "lynis_audit_audit_enabled": False,
        "lynis_audit_summary_enabled": False,
        "lynis_audit_report_file": fake,
    }
    run = converge_with(extra_vars, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    samples, _meta = _samples(host.file(METRICS_FILE).content_string)
    assert samples == {"locksmith_lynis_hardening_index": str(other)}
    assert host.check_output("stat -c %%i %s", METRICS_FILE) != inode_before
    # No temporary file is left under a name node_exporter would read.
    assert host.check_output("find %s -maxdepth 1 -name '*.prom' -newer %s", METRICS_DIR, fake) == METRICS_FILE


def test_the_package_ca_bundle_is_not_walked_for_expired_certificates(host, report):
    profile = host.file("/var/lib/locksmith/lynis/locksmith.prf")
    assert (profile.user, profile.mode) == ("root", 0o640)
    assert "ssl-certificate-paths-to-ignore=/etc/letsencrypt/archive:/usr/share/ca-certificates:" in (
        profile.content_string.splitlines()
    )
    log = host.file("/var/lib/locksmith/lynis/lynis.log").content_string
    assert "Reading profile/configuration /var/lib/locksmith/lynis/locksmith.prf" in log
    assert "Paths to ignore: /etc/letsencrypt/archive /usr/share/ca-certificates" in log
    assert "skipping directory (/usr/share/ca-certificates/mozilla) as it is on ignore list" in log
    # What CRYP-7902 checks is unchanged: files no package owns, under the paths still walked (/etc/ssl here).
    checked = [line.split("|", 1)[0] for line in report.get("certificate", [])]
    assert "/etc/ssl/certs/ca-certificates.crt" in checked
    assert not [path for path in checked if path.startswith("/usr/share/ca-certificates/")]


def test_lynis_reads_the_index_the_role_keeps_fresh(host):
    """Lynis does not update the package index in PKGS-7392: the role's apt task did, if it was over the limit."""
    profile = host.file("/var/lib/locksmith/lynis/locksmith.prf").content_string.splitlines()
    assert "refresh-repositories=no" in profile
    log = host.file("/var/lib/locksmith/lynis/lynis.log").content_string
    assert "Performing test ID PKGS-7392" in log
    assert "updating is disabled via configuration" in log
    assert "Action: updating package repository with apt-get" not in log


def test_limit_zero_lets_lynis_update_the_index_itself(host):
    run = converge_with({"lynis_audit_install_enabled": False, "lynis_audit_package_index_max_age": 0}, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    profile = host.file("/var/lib/locksmith/lynis/locksmith.prf").content_string.splitlines()
    assert not [line for line in profile if line.startswith("refresh-repositories")]
    log = host.file("/var/lib/locksmith/lynis/lynis.log").content_string
    assert "Action: updating package repository with apt-get" in log


def test_negative_index_age_is_refused_by_name(host):
    run = converge_with({"lynis_audit_package_index_max_age": -1}, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "lynis_audit_package_index_max_age is -1" in " ".join(run.stderr.split()), run.stderr
