from __future__ import annotations

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.metrics_textfile_name import FilterModule, metrics_textfile_name
from ansible_collections.locksmith.ops.plugins.module_utils import _metrics


@pytest.mark.parametrize(
    "subject",
    ["app", "Shop_2024", "prod/app-db", "../etc/passwd", ".hidden", "a" * 400, "ünïcode", "all-databases"],
)
def test_the_name_is_the_writer_s(subject, tmp_path):
    """The name a role keeps is the name write_textfile writes, slug, hash and shortening included."""
    name = metrics_textfile_name(subject, "secret")
    assert name == _metrics.textfile_name("secret", subject)
    written = _metrics.write_textfile(str(tmp_path), "secret", subject, [_metrics.Family("x", "x").add(1)])[1]
    assert [p.name for p in tmp_path.iterdir()] == [name] and written == str(tmp_path / name)


def test_map_over_a_list_of_subjects_and_the_producer_s_own_file():
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - no HTML here
    env.filters.update(FilterModule().filters())
    rendered = env.from_string("{{ ['app', 'prod/db'] | map('metrics_textfile_name', 'backup') | join(' ') }}")
    assert rendered.render().split() == [_metrics.textfile_name("backup", s) for s in ("app", "prod/db")]
    assert metrics_textfile_name("", "ids") == metrics_textfile_name(None, "ids") == "locksmith_ids.prom"
    # A number where a name was meant (YAML reads secret: 2024 as one) is named as the module's str option makes it.
    assert metrics_textfile_name(2024, "secret") == "locksmith_secret_2024.prom"


@pytest.mark.parametrize(
    "subject,producer,match",
    [
        ("app", "Bad Producer", "metrics producer 'Bad Producer' must be lower-case letters"),
        ("app", None, "metrics producer 'None' must be"),
        ({"database": "app"}, "audit", "the subject must be a string .* got dict"),
        (["app"], "backup", "the subject must be a string .* got list"),
        (True, "backup", "the subject must be a string .* got bool"),
        ("x.locksmith-tmp-y", "backup", "subject 'x.locksmith-tmp-y' gives a reserved file name"),
    ],
)
def test_what_the_writer_refuses_is_refused_by_name(subject, producer, match):
    with pytest.raises(AnsibleFilterError, match="^metrics_textfile_name: " + match):
        metrics_textfile_name(subject, producer)
