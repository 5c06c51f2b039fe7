from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.locksmith.ops.plugins.filter.alert_rules_for import FilterModule as ForFilters
from ansible_collections.locksmith.ops.plugins.filter.alert_rules_for import alert_rules_for
from ansible_collections.locksmith.ops.plugins.filter.blackbox_scrape_configs import FilterModule as ProbeFilters
from ansible_collections.locksmith.ops.plugins.filter.blackbox_scrape_configs import blackbox_scrape_configs
from ansible_collections.locksmith.ops.plugins.filter.prometheus_scrape_configs import FilterModule as ScrapeFilters
from ansible_collections.locksmith.ops.plugins.filter.prometheus_scrape_configs import prometheus_scrape_configs

RULES = {
    "groups": [
        {
            "name": "g",
            "rules": [
                {"alert": "A", "expr": "up == 0", "for": "5m"},
                {"alert": "B", "expr": "up == 0"},
                {"record": "r", "expr": "sum(up)"},
            ],
        }
    ]
}


def test_every_alert_gets_the_override_and_records_are_untouched():
    out = alert_rules_for(RULES, "10s")
    rules = out["groups"][0]["rules"]
    assert [r.get("for") for r in rules] == ["10s", "10s", None]
    assert RULES["groups"][0]["rules"][0]["for"] == "5m"  # the input is not modified


def test_empty_override_returns_the_document_unchanged():
    assert alert_rules_for(RULES, "") is RULES
    assert alert_rules_for(RULES, None) is RULES


@pytest.mark.parametrize(
    ("doc", "duration", "message"), [(RULES, "10 seconds", "Prometheus duration"), ({}, "1m", "'groups' list")]
)
def test_bad_input_is_refused(doc, duration, message):
    with pytest.raises(AnsibleFilterError, match=message):
        alert_rules_for(doc, duration)


GROUPS = {"all": ["db1", "web1", "v6"], "database": ["db1"], "web": [], "ungrouped": []}
HOSTVARS = {
    "db1": {"monitoring_agents_listen_address": "10.0.0.5", "ansible_host": "203.0.113.5"},
    "web1": {"ansible_host": "10.0.0.6"},
    "v6": {"monitoring_agents_listen_address": "fd00::7"},
}
JOBS = [
    {"job": "node", "group": "all", "port": 9100},
    {"job": "postgres", "group": "database", "port": 9187, "scheme": "https"},
    {"job": "nginx", "group": "web", "port": 9113},
    {"job": "absent", "group": "nope", "port": 1},
]


def test_targets_use_the_private_address_then_ansible_host_and_carry_the_host_label():
    configs = prometheus_scrape_configs(JOBS, GROUPS, HOSTVARS)
    assert [c["job_name"] for c in configs] == ["node", "postgres"]  # empty and missing groups are left out
    node = configs[0]["static_configs"]
    assert node == [
        {"targets": ["10.0.0.5:9100"], "labels": {"host": "db1"}},
        {"targets": ["[fd00::7]:9100"], "labels": {"host": "v6"}},
        {"targets": ["10.0.0.6:9100"], "labels": {"host": "web1"}},
    ]
    assert configs[1]["scheme"] == "https"


def test_tls_and_basic_auth_go_only_to_the_jobs_that_ask_and_only_when_set():
    jobs = [
        {"job": "node", "group": "all", "port": 9100, "tls": True, "basic_auth": True},
        {"job": "redis", "group": "database", "port": 9121, "tls": True},
        {"job": "mtail", "group": "database", "port": 3903},
    ]
    tls = {"ca_file": "/etc/prometheus/exporters-ca.pem"}
    auth = {"username": "prometheus", "password_file": "/etc/prometheus/scrape-basic-auth.password"}
    node, redis, mtail = prometheus_scrape_configs(
        jobs, GROUPS, HOSTVARS, "monitoring_agents_listen_address", tls, auth
    )
    assert (node["scheme"], node["tls_config"], node["basic_auth"]) == ("https", tls, auth)
    assert (redis["scheme"], redis["tls_config"], "basic_auth" in redis) == ("https", tls, False)
    assert not {"scheme", "tls_config", "basic_auth"} & set(mtail)
    # Not configured on the server (the exporters still serve plain HTTP): plain scrapes, as before.
    plain = prometheus_scrape_configs(jobs, GROUPS, HOSTVARS, "monitoring_agents_listen_address", {}, {})
    assert all(not {"scheme", "tls_config", "basic_auth"} & set(c) for c in plain)
    node["tls_config"]["ca_file"] = "changed"
    assert tls["ca_file"] == "/etc/prometheus/exporters-ca.pem"  # each job gets its own copy


def test_an_inline_scrape_password_is_refused():
    jobs = [{"job": "node", "group": "all", "port": 9100, "basic_auth": True}]
    with pytest.raises(AnsibleFilterError, match="password_file, never an inline password"):
        prometheus_scrape_configs(jobs, GROUPS, HOSTVARS, "x", None, {"username": "u", "password": "p"})
    with pytest.raises(AnsibleFilterError, match="tls_config must be a dict"):
        prometheus_scrape_configs(jobs, GROUPS, HOSTVARS, "x", "/ca.pem", None)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        ("node", "expected a list"),
        ([{"job": "node", "port": 1}], r"jobs\[0\] needs job, group and port"),
        ([{"job": "bad job", "group": "all", "port": 1}], "job name 'bad job' is not valid"),
    ],
)
def test_bad_jobs_are_refused(jobs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        prometheus_scrape_configs(jobs, GROUPS, HOSTVARS)


def test_filters_are_registered():
    assert ForFilters().filters()["alert_rules_for"] is alert_rules_for
    assert ScrapeFilters().filters()["prometheus_scrape_configs"] is prometheus_scrape_configs
    assert ProbeFilters().filters()["blackbox_scrape_configs"] is blackbox_scrape_configs


@pytest.mark.parametrize(
    ("doc", "duration", "message"),
    [
        ({"groups": ["g"]}, "1m", r"groups\[0\] must be a dict with a 'rules' list"),
        ({"groups": [{"name": "g", "rules": ["alert"]}]}, "1m", r"groups\[0\] must be a dict with a 'rules' list"),
        ({"groups": [{"name": "g", "rules": "alert"}]}, "1m", r"groups\[0\] must be a dict with a 'rules' list"),
        (RULES, "99999999999999y", "at most 100y"),
    ],
)
def test_malformed_rules_and_overlong_durations_are_refused(doc, duration, message):
    with pytest.raises(AnsibleFilterError, match=message):
        alert_rules_for(doc, duration)


def test_groups_without_rules_are_kept():
    doc = {"groups": [{"name": "empty"}, {"name": "null", "rules": None}]}
    assert alert_rules_for(doc, "1m") == doc


@pytest.mark.parametrize(
    ("jobs", "groups", "hostvars", "message"),
    [
        (JOBS, None, HOSTVARS, "groups must be a dict"),
        (JOBS, GROUPS, None, "hostvars must be a dict"),
        ([{"job": None, "group": "all", "port": 1}], GROUPS, HOSTVARS, "job name None is not valid"),
        ([{"job": "node", "group": ["all"], "port": 1}], GROUPS, HOSTVARS, r"group \['all'\] must be an inventory"),
        ([JOBS[0], dict(JOBS[0], port=9101)], GROUPS, HOSTVARS, r"jobs\[1\] job name 'node' is used twice"),
        ([dict(JOBS[0], port=None)], GROUPS, HOSTVARS, "port None must be a TCP port"),
        ([dict(JOBS[0], port="http")], GROUPS, HOSTVARS, "port 'http' must be a TCP port"),
        ([dict(JOBS[0], port=70000)], GROUPS, HOSTVARS, "port 70000 must be a TCP port"),
        ([dict(JOBS[0], port=True)], GROUPS, HOSTVARS, "port True must be a TCP port"),
        ([dict(JOBS[0], scheme="ftp")], GROUPS, HOSTVARS, "scheme 'ftp' must be http or https"),
        (JOBS[:1], {"all": "db1"}, HOSTVARS, r"groups\['all'\] must be a list"),
        (JOBS[:1], GROUPS, dict(HOSTVARS, web1={"ansible_host": "10.0.0.6\n"}), "host web1 address '10.0.0.6\\\\n'"),
        (JOBS[:1], GROUPS, dict(HOSTVARS, web1={"ansible_host": ["10.0.0.6"]}), "host web1 address"),
        (JOBS[:1], GROUPS, dict(HOSTVARS, web1={"ansible_host": "10.0.0.6:22"}), "'10.0.0.6:22' .* carries a port"),
        (JOBS[:1], GROUPS, dict(HOSTVARS, web1={"ansible_host": "web1:22"}), "'web1:22' .* carries a port"),
    ],
)
def test_wrong_types_and_values_are_refused_before_promtool(jobs, groups, hostvars, message):
    with pytest.raises(AnsibleFilterError, match=message):
        prometheus_scrape_configs(jobs, groups, hostvars)


def test_ipv6_addresses_are_bracketed_once():
    hostvars = dict(HOSTVARS, web1={"ansible_host": "fd00::6"}, db1={"ansible_host": "[fd00::5]"})
    (node,) = prometheus_scrape_configs(JOBS[:1], {"all": ["db1", "web1"]}, hostvars)
    assert [c["targets"] for c in node["static_configs"]] == [["[fd00::5]:9100"], ["[fd00::6]:9100"]]


def test_a_port_given_as_a_string_is_written_as_a_number():
    (node,) = prometheus_scrape_configs([dict(JOBS[0], port="9100")], {"all": ["web1"]}, HOSTVARS)
    assert node["static_configs"][0]["targets"] == ["10.0.0.6:9100"]


# ---- blackbox_scrape_configs ------------------------------------------------------------------
EXPORTER = "10.0.0.9:9115"


def test_probes_go_through_the_exporter_with_the_url_as_target_and_instance():
    (job,) = blackbox_scrape_configs(["https://app.example.com/"], EXPORTER)
    assert job == {
        "job_name": "blackbox_https",
        "metrics_path": "/probe",
        "params": {"module": ["https_2xx"]},
        "static_configs": [{"targets": ["https://app.example.com/"]}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": EXPORTER},
        ],
    }


def test_a_probe_with_a_host_carries_its_host_label_and_urls_keep_their_order():
    probes = [
        "https://app.example.com/",
        {"url": "https://10.0.0.6/", "host": "web1"},
        {"url": "https://[fd00::7]:8443/health", "host": "v6"},
        {"url": "https://web1.example.com/", "host": "web1"},
        {"url": "https://cdn.example.com/"},
    ]
    (job,) = blackbox_scrape_configs(probes, EXPORTER, "https_2xx", "blackbox_https", GROUPS["all"])
    assert job["static_configs"] == [
        {"targets": ["https://app.example.com/", "https://cdn.example.com/"]},
        {"targets": ["https://10.0.0.6/", "https://web1.example.com/"], "labels": {"host": "web1"}},
        {"targets": ["https://[fd00::7]:8443/health"], "labels": {"host": "v6"}},
    ]


def test_no_probes_give_no_job():
    assert blackbox_scrape_configs([], EXPORTER) == []


@pytest.mark.parametrize(
    ("probes", "hosts", "message"),
    [
        ("https://app.example.com/", None, "expected a list of probes"),
        (["ftp://app.example.com/"], None, r"probes\[0\] url 'ftp://app.example.com/' must be an http or https URL"),
        (["app.example.com"], None, "must be an http or https URL with a host"),
        (["https:///path"], None, "must be an http or https URL with a host"),
        (["https://app.example.com/ x"], None, "without blanks or line breaks"),
        (["https://app.example.com/\n- targets: [x]"], None, "without blanks or line breaks"),
        (["https://app.example.com:99999/"], None, "is not a URL"),
        (["https://app.example.com:0/"], None, "port 0"),
        ([None], None, "url None must be a URL"),
        (["https://a/", "https://b/", "https://a/"], None, r"probes\[2\] url 'https://a/' is listed twice"),
        ([{"url": "https://a/", "host": "web1", "labels": {}}], None, "must have url and may have host"),
        ([{"host": "web1"}], None, "must have url and may have host"),
        ([{"url": "https://a/", "host": ""}], None, "host '' must be an inventory host name"),
        ([{"url": "https://a/", "host": ["web1"]}], None, "must be an inventory host name"),
        ([{"url": "https://a/", "host": "web01"}], GROUPS["all"], "host 'web01' is not in the inventory"),
    ],
)
def test_bad_probes_are_refused_with_their_index(probes, hosts, message):
    with pytest.raises(AnsibleFilterError, match=message):
        blackbox_scrape_configs(probes, EXPORTER, hosts=hosts)


def test_credentials_in_a_url_are_refused_without_being_echoed():
    with pytest.raises(AnsibleFilterError, match="carries credentials") as err:
        blackbox_scrape_configs(["https://probe:s3cret@app.example.com/"], EXPORTER)
    assert "s3cret" not in str(err.value)
    assert "app.example.com" in str(err.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("10.0.0.9:9115 --x",), "exporter"),
        ((EXPORTER, "bad module"), "module 'bad module'"),
        ((EXPORTER, "https_2xx", "bad job"), "job 'bad job'"),
        ((EXPORTER, "https_2xx", "blackbox_https", "web1"), "hosts must be a list"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(AnsibleFilterError, match=message):
        blackbox_scrape_configs(["https://a/"], *args)
