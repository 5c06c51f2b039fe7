# Copyright: (c) 2026, locksmith.ops contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# FOR INTERNAL COLLECTION USE ONLY: this file may change in any release, without notice.
"""The one writer of node_exporter textfile-collector files (see docs/metrics.md).

Each producer and subject owns one file, ``locksmith_<producer>_<subject>.prom``, written atomically
in the collector directory so node_exporter never scrapes half a file and two jobs never share one.
"""

from __future__ import annotations

import hashlib
import math
import os
import re

from ansible_collections.locksmith.ops.plugins.module_utils._atomic import is_temporary, write_atomic
from ansible_collections.locksmith.ops.plugins.module_utils._errors import MetricsError

DEFAULT_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
METRIC_TYPES = ("gauge", "counter", "untyped")

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_SAFE_SUBJECT = re.compile(r"[^A-Za-z0-9_.-]")
_NAME_MAX = 255  # bytes in a file name on Linux file systems; textfile names are ASCII
_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Family:
    """One metric family: a name, its help text and type, and its samples."""

    def __init__(self, name, help_text, metric_type="gauge"):
        if not _METRIC_NAME.match(name or ""):
            raise MetricsError("metric name '%s' is not valid; use [a-zA-Z_:][a-zA-Z0-9_:]*" % name)
        if metric_type not in METRIC_TYPES:
            raise MetricsError(
                "metric type '%s' of '%s' must be one of %s" % (metric_type, name, ", ".join(METRIC_TYPES))
            )
        if metric_type == "counter" and not name.endswith("_total"):
            raise MetricsError("counter '%s' must end in _total (Prometheus naming)" % name)
        self.name = name
        self.help_text = help_text
        self.metric_type = metric_type
        self.samples = []

    def add(self, value, **labels):
        for label in labels:
            if not _LABEL_NAME.match(label) or label.startswith("__"):
                raise MetricsError("label name '%s' of '%s' is not valid" % (label, self.name))
        self.samples.append((dict(labels), _as_float(self.name, value)))
        return self


def _as_float(name, value):
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise MetricsError("value %r of metric '%s' is not a number" % (value, name)) from err


def escape_label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def unescape_label_value(value):
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def format_value(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families):
    """Render families in the text exposition format, samples sorted so equal state gives equal bytes."""
    lines = []
    for family in sorted(families, key=lambda f: f.name):
        lines.append("# HELP %s %s" % (family.name, family.help_text.replace("\\", "\\\\").replace("\n", "\\n")))
        lines.append("# TYPE %s %s" % (family.name, family.metric_type))
        for labels, value in sorted(family.samples, key=lambda s: sorted(s[0].items())):
            if labels:
                pairs = ",".join('%s="%s"' % (k, escape_label_value(v)) for k, v in sorted(labels.items()))
                lines.append("%s{%s} %s" % (family.name, pairs, format_value(value)))
            else:
                lines.append("%s %s" % (family.name, format_value(value)))
    return "\n".join(lines) + "\n"


def parse(text):
    """Parse exposition text into {(name, ((label, value), ...)): value}; comments are skipped."""
    samples = {}
    for line in text.split("\n"):  # lines end in \n only: a \r in a label value is data
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_LINE.match(line)
        if not match:
            raise MetricsError("cannot parse metrics line %r" % line)
        name, label_text, value = match.group(1), match.group(3), match.group(4)
        labels = tuple(sorted((k, unescape_label_value(v)) for k, v in _LABEL_PAIR.findall(label_text or "")))
        try:
            samples[(name, labels)] = float(value)
        except ValueError as err:
            raise MetricsError("cannot parse metrics line %r: %r is not a number" % (line, value)) from err
    return samples


def textfile_name(producer, subject=None):
    """File name for one producer and subject; unsafe subjects are slugged plus a short hash so they stay distinct."""
    if not re.match(r"^[a-z][a-z0-9_]*\Z", producer or ""):
        raise MetricsError("metrics producer '%s' must be lower-case letters, digits and _" % producer)
    if subject is None or subject == "":
        return "locksmith_%s.prom" % producer
    slug = _SAFE_SUBJECT.sub("_", str(subject))
    digest = hashlib.sha256(str(subject).encode("utf-8")).hexdigest()[:8]
    if slug != str(subject) or slug.startswith("."):
        slug = "%s_%s" % (slug.lstrip("."), digest)
    name = "locksmith_%s_%s.prom" % (producer, slug)
    if len(name) > _NAME_MAX:
        # Only names the file system would refuse are shortened, so every name that worked keeps its file.
        name = "locksmith_%s_%s_%s.prom" % (producer, slug[:160], digest)
    return name


def read_textfile(path, warnings=None):
    """Samples of an existing textfile, or {} when it is missing or damaged (then a warning, if ``warnings``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return parse(handle.read())
    except FileNotFoundError:
        return {}
    except (UnicodeDecodeError, MetricsError) as err:
        # Damaged: the file is ours and rewritten whole, so it is read as absent (a counter it carried starts
        # again at 0, which Prometheus reads as a reset) rather than failing a run whose work is done; the caller
        # that carries series across runs says so. Its lines are not quoted: the file may hold anything now.
        if warnings is not None:
            what = "is not UTF-8" if isinstance(err, UnicodeDecodeError) else "holds lines that are not metrics"
            warnings.append(
                "metrics file '%s' %s, so its unreadable content was replaced; series it carried across runs "
                "(a *_total counter, the last success of a destination that failed this time) start again"
                % (path, what)
            )
        return {}
    except OSError as err:
        raise MetricsError("metrics file '%s' cannot be read (%s)" % (path, err.strerror), path=path) from err


def previous_value(path, name, default=0.0, **labels):
    """A sample's value from the file as last written, e.g. to carry a *_total counter across runs."""
    key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
    return read_textfile(path).get(key, default)


def write_textfile(directory, producer, subject, families, check_mode=False):
    """Write the families for one producer and subject; return (changed, path).

    Unchanged content is not rewritten, so a second identical run reports no change.
    """
    if not os.path.isdir(directory):
        raise MetricsError(
            "textfile collector directory '%s' does not exist; install node_exporter "
            "(role locksmith.ops.monitoring_agents) or set the metrics directory option to an existing path"
            % directory,
            path=directory,
        )
    path = os.path.join(directory, textfile_name(producer, subject))
    if is_temporary(path):
        raise MetricsError("metrics subject '%s' gives a reserved file name" % subject)
    content = render(families)
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == content:
                return False, path
    except (FileNotFoundError, UnicodeDecodeError):
        pass  # missing, or damaged: written whole below
    except OSError as err:
        raise MetricsError("metrics file '%s' cannot be read (%s)" % (path, err.strerror), path=path) from err
    if not check_mode:
        # node_exporter runs as its own user and must read the file.
        write_atomic(path, content, mode=0o644)
    return True, path
