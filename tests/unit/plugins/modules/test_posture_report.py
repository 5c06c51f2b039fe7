"""posture_report: judging figures against targets, the three files, idempotence, check mode and failures."""

import json
import re
from html.parser import HTMLParser

import pytest

from tests.harness.ansible import run_module_inprocess

PROMISES = [
    {"name": "lynis", "title": "Lynis index", "baseline": 58, "value": 86, "target": 70, "compare": "ge"},
    {"name": "rpo", "title": "Backup age", "value": 3600, "unit": "s", "target": 86400, "evidence": "s3://b/app"},
    {"name": "rto", "title": "Drill RTO", "value": 2000, "unit": "s", "target": 1800, "detail": "scale 50"},
]


def run(tmp_path, promises, **extra):
    return run_module_inprocess("posture_report", dict(dest=str(tmp_path / "out"), promises=promises, **extra))


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_judges_each_promise_and_writes_three_files(tmp_path):
    result = run(tmp_path, PROMISES, fail_on_miss=False)
    assert result["changed"] is True
    assert result["passed"] is False
    assert [p["status"] for p in result["promises"]] == ["met", "met", "missed"]
    assert result["summary"] == {"total": 3, "met": 2, "missed": 1, "unmeasured": 0}
    document = json.loads((tmp_path / "out" / "posture.json").read_text())
    assert document["passed"] is False and document["promises"] == result["promises"]
    markdown = (tmp_path / "out" / "posture.md").read_text()
    assert "| Drill RTO (scale 50) | 2000 s |  | <= 1800 s | FAIL |  |" in markdown
    assert "| Lynis index | 86 | 58 | >= 70 | PASS |  |" in markdown
    page = (tmp_path / "out" / "posture.html").read_text()
    parser = Collect()
    parser.feed(page)
    svgs = [attrs for tag, attrs in parser.tags if tag == "svg"]
    assert len(svgs) == 3  # one chart per promise
    assert not [attrs for tag, attrs in parser.tags if tag in ("script", "link", "img")]  # self-contained
    # The measured bar of the missed promise is red and longer than its target line.
    rto_chart = re.findall(r"<svg[^>]*Drill RTO.*?</svg>", page)[0]
    measured_width = float(re.search(r'width="([\d.]+)" height="12" fill="#c62828"', rto_chart).group(1))
    target = float(re.search(r'x="([\d.]+)" y="1"', rto_chart).group(1))
    assert measured_width > target


def test_second_run_on_the_same_figures_changes_nothing(tmp_path):
    first = run(tmp_path, PROMISES[:2])
    stamp = json.loads((tmp_path / "out" / "posture.json").read_text())["generated_at"]
    second = run(tmp_path, PROMISES[:2])
    assert first["changed"] is True and second["changed"] is False and second["passed"] is True
    assert json.loads((tmp_path / "out" / "posture.json").read_text())["generated_at"] == stamp
    changed = run(tmp_path, [PROMISES[0], dict(PROMISES[1], value=7200)])
    assert changed["changed"] is True


def test_check_mode_writes_nothing_and_diff_shows_the_table(tmp_path):
    result = run_module_inprocess(
        "posture_report", dict(dest=str(tmp_path / "out"), promises=PROMISES[:1]), check=True, diff=True
    )
    assert result["changed"] is True
    assert not (tmp_path / "out").exists()
    assert result["diff"]["before"] == "" and "| Lynis index | 86 |" in result["diff"]["after"]


def test_a_missed_or_unmeasured_promise_fails_after_writing(tmp_path):
    promises = [PROMISES[2], {"name": "mttd", "title": "Time to detect", "value": None, "target": 60}]
    result = run(tmp_path, promises)
    assert result["failed"] is True
    assert result["msg"].startswith("2 of 2 promises not kept: rto (missed), mttd (unmeasured)")
    assert (tmp_path / "out" / "posture.json").exists()  # the evidence stays for the investigation


@pytest.mark.parametrize(
    ("promises", "message"),
    [
        ([dict(PROMISES[0], value="fast")], r"promises\[0\] \(lynis\)\.value is 'fast', not a number"),
        ([PROMISES[0], dict(PROMISES[1], name="lynis")], r"promises\[1\] \(lynis\): the name is used twice"),
        ([dict(PROMISES[0], value="nan")], r"value is 'nan'; give a finite number"),
    ],
)
def test_bad_figures_are_named(tmp_path, promises, message):
    result = run(tmp_path, promises)
    assert result["failed"] is True
    assert re.search(message, result["msg"])
    assert not (tmp_path / "out").exists()


def test_markup_in_titles_is_escaped(tmp_path):
    hostile = [dict(PROMISES[0], title="<script>alert(1)</script> | x", evidence="a|b")]
    run(tmp_path, hostile)
    page = (tmp_path / "out" / "posture.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "\\| x" in (tmp_path / "out" / "posture.md").read_text()


def test_an_unwritable_dest_fails_with_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_module_inprocess("posture_report", dict(dest=str(blocker / "sub"), promises=PROMISES[:1]))
    assert result["failed"] is True
    assert "cannot create dest" in result["msg"] and "choose a writable directory" in result["msg"]


def test_figures_read_alike_whole_or_fractional(tmp_path):
    promises = [
        {"name": "mttd", "title": "MTTD", "value": 50.5, "unit": "s", "target": 60},
        {"name": "mttr", "title": "MTTR", "value": 61.1, "unit": "s", "target": 300},
        {"name": "rto", "title": "RTO", "value": 0.364, "unit": "s", "target": 1800.0},
    ]
    run(tmp_path, promises)
    markdown = (tmp_path / "out" / "posture.md").read_text()
    assert "| MTTD | 50.5 s |  | <= 60 s | PASS |  |" in markdown
    assert "| MTTR | 61.1 s |  | <= 300 s | PASS |  |" in markdown
    assert "| RTO | 0.36 s |  | <= 1800 s | PASS |  |" in markdown


def test_a_title_with_line_breaks_and_pipes_stays_one_markdown_row_and_html_is_escaped(tmp_path):
    promise = {
        "name": "odd",
        "title": "a | b\n| c <script>alert(1)</script>",
        "detail": "<img src=x onerror=alert(2)>",
        "value": 1,
        "target": 2,
        "evidence": "javascript:alert(3)",
    }
    run(tmp_path, [promise], fail_on_miss=False)
    rows = [line for line in (tmp_path / "out" / "posture.md").read_text().splitlines() if "a \\| b" in line]
    assert len(rows) == 1 and rows[0].startswith("| a \\| b \\| c ")
    assert rows[0].endswith(" | 1 |  | <= 2 | PASS | `javascript:alert(3)` |")
    page = (tmp_path / "out" / "posture.html").read_text()
    parser = Collect()
    parser.feed(page)
    assert not [entry for entry in parser.tags if entry[0] in ("script", "img", "a")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_figure_just_past_its_target_does_not_read_as_the_target(tmp_path):
    promises = [
        {"name": "mttd", "title": "MTTD", "value": 60.004, "unit": "s", "target": 60},
        {"name": "lynis", "title": "Lynis", "value": 69.996, "target": 70, "compare": "ge"},
        {"name": "rto", "title": "RTO", "value": 0.001, "unit": "s", "target": 0, "compare": "eq"},
        {"name": "rpo", "title": "RPO", "value": 50.504, "unit": "s", "target": 50.5},
    ]
    result = run(tmp_path, promises, fail_on_miss=False)
    assert [p["status"] for p in result["promises"]] == ["missed"] * 4
    markdown = (tmp_path / "out" / "posture.md").read_text()
    assert "| MTTD | 60.004 s |  | <= 60 s | FAIL |  |" in markdown
    assert "| Lynis | 69.996 |  | >= 70 | FAIL |  |" in markdown
    assert "| RTO | 0.001 s |  | == 0 s | FAIL |  |" in markdown
    assert "| RPO | 50.504 s |  | <= 50.5 s | FAIL |  |" in markdown
    page = (tmp_path / "out" / "posture.html").read_text()
    assert "<td>60.004 s</td><td>&lt;= 60 s</td>" in page


def test_an_empty_list_of_promises_is_no_pass(tmp_path):
    result = run(tmp_path, [])
    assert result.get("failed") is True and result.get("passed") is not True
    assert result["msg"].startswith("promises is empty")
    assert not (tmp_path / "out").exists()


def test_a_damaged_report_is_rewritten_even_when_the_figures_did_not_change(tmp_path):
    first = run(tmp_path, PROMISES[:2])
    out = tmp_path / "out"
    page = (out / "posture.html").read_text()
    (out / "posture.html").write_text(page[:100])  # cut short
    again = run(tmp_path, PROMISES[:2])
    assert first["changed"] is True and again["changed"] is True, again
    assert (out / "posture.html").read_text().endswith("</html>\n")
    assert run(tmp_path, PROMISES[:2])["changed"] is False


def test_unreadable_previous_files_are_replaced_without_a_traceback(tmp_path):
    first = run(tmp_path, PROMISES[:2])
    out = tmp_path / "out"
    (out / "posture.md").write_bytes(b"\xff\xfe not UTF-8")
    replaced = run(tmp_path, PROMISES[:2])
    assert replaced.get("failed") is None and replaced["changed"] is True, replaced
    assert (out / "posture.md").read_text().startswith("# locksmith.ops posture report")
    # A posture.json that is not a report object (a list, an object without a stamp) is replaced too.
    for text in ("[]", json.dumps({"title": "locksmith.ops posture report", "promises": first["promises"]})):
        (out / "posture.json").write_text(text)
        replaced = run(tmp_path, PROMISES[:2])
        assert replaced.get("failed") is None and replaced["changed"] is True, replaced
        assert json.loads((out / "posture.json").read_text())["promises"] == first["promises"]


def test_markdown_renders_titles_units_and_evidence_as_text(tmp_path):
    markdown_it = pytest.importorskip("markdown_it")
    promise = {
        "name": "odd",
        "title": "db1 <img src=x onerror=alert(1)> [click](javascript:alert(2))",
        "detail": "<script>alert(3)</script> &amp;",
        "value": 1,
        "unit": "<b>s</b>",
        "target": 2,
        "evidence": "x` <img src=y onerror=alert(4)> `z",
    }
    run(tmp_path, [promise], title="Report <iframe src=//evil>")
    text = (tmp_path / "out" / "posture.md").read_text()
    page = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)
    parser = Collect()
    parser.feed(page)
    assert {tag for tag, attrs in parser.tags} <= {"h1", "p", "table", "thead", "tbody", "tr", "th", "td", "code"}
    assert "<code>x` &lt;img src=y onerror=alert(4)&gt; `z</code>" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt; &amp;amp;" in page and "[click](javascript:alert(2))" in page
    assert "&lt;= 2 &lt;b&gt;s&lt;/b&gt;" in page


def test_a_report_that_cannot_be_written_whole_leaves_no_verdict_of_the_last_run(tmp_path):
    run(tmp_path, PROMISES[:2])  # all met: posture.json says passed
    out = tmp_path / "out"
    (out / "posture.html").unlink()
    (out / "posture.html").mkdir()  # cannot be replaced by a file
    (out / "posture.html" / "keep").write_text("")
    result = run(tmp_path, PROMISES)  # this run misses the RTO
    assert result["failed"] is True and "posture.html" in result["msg"], result
    # The Markdown written is this run's; the JSON of the last run (passed: true) must not stand beside it.
    assert "| FAIL |" in (out / "posture.md").read_text()
    assert not (out / "posture.json").exists() or json.loads((out / "posture.json").read_text())["passed"] is False


def test_a_figure_too_large_for_a_float_is_named_not_a_traceback(tmp_path):
    result = run(tmp_path, [dict(PROMISES[0], value=10**400)])
    assert result["failed"] is True and "Traceback" not in result.get("exception", "") + result["msg"], result
    assert re.search(r"promises\[0\] \(lynis\)\.value is 1000+\d*.*give a finite number", result["msg"]), result["msg"]
