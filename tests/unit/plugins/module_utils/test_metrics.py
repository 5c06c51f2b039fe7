from __future__ import annotations

import math
import os

import pytest

from ansible_collections.locksmith.ops.plugins.module_utils import _metrics
from ansible_collections.locksmith.ops.plugins.module_utils._errors import MetricsError


def _backup_families(status=1, failures=0):
    status_f = _metrics.Family("locksmith_backup_last_status", "1 if the newest attempt succeeded").add(
        status, database="app"
    )
    failures_f = _metrics.Family("locksmith_backup_failures_total", "failed attempts", "counter").add(
        failures, database="app"
    )
    return [status_f, failures_f]


def test_render_is_valid_exposition_and_sorted():
    text = _metrics.render(_backup_families())
    assert text.splitlines() == [
        "# HELP locksmith_backup_failures_total failed attempts",
        "# TYPE locksmith_backup_failures_total counter",
        'locksmith_backup_failures_total{database="app"} 0',
        "# HELP locksmith_backup_last_status 1 if the newest attempt succeeded",
        "# TYPE locksmith_backup_last_status gauge",
        'locksmith_backup_last_status{database="app"} 1',
    ]


@pytest.mark.parametrize("value", ['a"b', "back\\slash", "new\nline", "x'); DROP TABLE t; --", "ü"])
def test_label_values_round_trip_through_parse(value):
    family = _metrics.Family("locksmith_tls_status", "status").add(2, endpoint=value)
    parsed = _metrics.parse(_metrics.render([family]))
    assert parsed == {("locksmith_tls_status", (("endpoint", value),)): 2.0}


def test_special_values():
    assert _metrics.format_value(float("nan")) == "NaN"
    assert _metrics.format_value(float("inf")) == "+Inf"
    assert _metrics.format_value(1.5) == "1.5"
    assert _metrics.format_value(1764201600.0) == "1764201600"
    assert math.isnan(_metrics.parse("m NaN\n")[("m", ())])


@pytest.mark.parametrize(
    ("name", "kind", "error"),
    [
        ("bad-name", "gauge", "metric name 'bad-name' is not valid"),
        ("ok_name", "summary", "must be one of gauge, counter, untyped"),
        ("bans", "counter", "must end in _total"),
    ],
)
def test_invalid_families_are_refused(name, kind, error):
    with pytest.raises(MetricsError, match=error):
        _metrics.Family(name, "help", kind)


def test_invalid_label_and_value_are_refused():
    family = _metrics.Family("locksmith_x", "help")
    with pytest.raises(MetricsError, match="label name '__x'"):
        family.add(1, __x="y")
    with pytest.raises(MetricsError, match="is not a number"):
        family.add("lots")


def test_textfile_names_are_distinct_and_safe():
    assert _metrics.textfile_name("backup", "app") == "locksmith_backup_app.prom"
    assert _metrics.textfile_name("tls_check") == "locksmith_tls_check.prom"
    slash = _metrics.textfile_name("backup", "a/b")
    underscore = _metrics.textfile_name("backup", "a_b")
    assert "/" not in slash and slash != underscore
    assert not _metrics.textfile_name("backup", "../etc/passwd").startswith("locksmith_backup_..")
    with pytest.raises(MetricsError, match="producer"):
        _metrics.textfile_name("Bad Producer", "x")


def test_write_textfile_is_atomic_idempotent_and_check_mode_safe(tmp_path):
    changed, path = _metrics.write_textfile(str(tmp_path), "backup", "app", _backup_families(), check_mode=True)
    assert changed and not os.path.exists(path)
    changed, path = _metrics.write_textfile(str(tmp_path), "backup", "app", _backup_families())
    assert changed and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert _metrics.write_textfile(str(tmp_path), "backup", "app", _backup_families())[0] is False
    assert sorted(os.listdir(tmp_path)) == ["locksmith_backup_app.prom"]


def test_counter_carries_across_runs(tmp_path):
    path = _metrics.write_textfile(str(tmp_path), "backup", "app", _backup_families(status=0, failures=3))[1]
    previous = _metrics.previous_value(path, "locksmith_backup_failures_total", database="app")
    assert previous == 3.0
    assert _metrics.previous_value(str(tmp_path / "missing.prom"), "x", default=0.0) == 0.0


def test_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(MetricsError, match="monitoring_agents"):
        _metrics.write_textfile(str(tmp_path / "absent"), "backup", "app", _backup_families())


def test_a_damaged_textfile_reads_as_absent_and_is_rewritten(tmp_path):
    families = _backup_families(failures=2)
    name = _metrics.textfile_name("backup", "app")
    for damage in (b'locksmith_backup_failures_total{database="app"} notanumber\n', b"\xff\xfe binary\n"):
        (tmp_path / name).write_bytes(damage)
        assert _metrics.read_textfile(str(tmp_path / name)) == {}
        assert _metrics.previous_value(str(tmp_path / name), "locksmith_backup_failures_total", database="app") == 0
        assert _metrics.write_textfile(str(tmp_path), "backup", "app", families)[0] is True
        assert (tmp_path / name).read_text() == _metrics.render(families)
    (tmp_path / "dir").mkdir()
    with pytest.raises(MetricsError, match=r"metrics file '.*/dir' cannot be read"):
        _metrics.read_textfile(str(tmp_path / "dir"))
    with pytest.raises(MetricsError, match="is not a number"):
        _metrics.parse("x 1e\n")


def test_long_subjects_get_a_name_the_file_system_takes_and_short_ones_keep_theirs(tmp_path):
    assert _metrics.textfile_name("secret", "a" * 200) == "locksmith_secret_%s.prom" % ("a" * 200)
    long_names = {_metrics.textfile_name("secret", "a" * 400), _metrics.textfile_name("secret", "a" * 401)}
    assert len(long_names) == 2 and all(len(name) <= 255 for name in long_names)
    families = _backup_families()
    assert _metrics.write_textfile(str(tmp_path), "secret", "b" * 512, families)[0] is True


def test_a_carriage_return_in_a_label_value_round_trips():
    families = [_metrics.Family("locksmith_tls_status", "status").add(1, endpoint="a\rb")]
    assert _metrics.parse(_metrics.render(families)) == {("locksmith_tls_status", (("endpoint", "a\rb"),)): 1.0}


def test_a_damaged_textfile_is_named_in_a_warning_when_the_caller_asks(tmp_path):
    # Callers that carry series across runs lose them here; they pass warnings so the run says so.
    path = tmp_path / _metrics.textfile_name("backup", "app")
    path.write_bytes(b"\xff\xfe binary\n")
    warnings = []
    assert _metrics.read_textfile(str(path), warnings) == {}
    assert warnings == [
        "metrics file '%s' is not UTF-8, so its unreadable content was replaced; series it carried across runs "
        "(a *_total counter, the last success of a destination that failed this time) start again" % path
    ]
    path.write_text(_metrics.render(_backup_families()))
    assert _metrics.read_textfile(str(path), warnings) and len(warnings) == 1
