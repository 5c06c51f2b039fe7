"""Every EXAMPLES block of every module and lookup works as written: what users paste from `ansible-doc`.

Read, for every plugin: `ansible-doc` renders it without a warning; each example parses and names its actions and
lookups by FQCN; each option it sets is documented (doc fragments merged) and passes the argument spec the module's
main() really builds (required_if, mutually_exclusive and all); each lookup keyword is a documented option; a registered
result is read only through keys its RETURN documents; secret options are no_log and no example holds a literal value
for one.

Run: every example runs through ansible-playbook against real servers on 127.0.0.1 (PostgreSQL 15 with SSL and
scram-sha-256, OpenBao, moto S3 and Secrets Manager, openssl s_server, a STARTTLS SMTP peer). Only what is specific to
an environment is replaced: host names, ports, paths (mirrored under a temporary root), the backup id of a named
restore and the owner of one file. A second run changes nothing where the module promises that, nothing warns or
deprecates, results hold only keys RETURN documents, and no secret shows in any output.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import jinja2
import jinja2.nodes
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.mod_args import ModuleArgsParser
from ansible.parsing.plugin_docs import read_docstring

from tests.harness.ansible import REPO, ansible_env, module_spec, run_playbook
from tests.harness.postgres import PostgresCluster
from tests.harness.tls import TLSPeer

pytestmark = pytest.mark.postgres

COLLECTION = "locksmith.ops"
PLUGIN_DIRS = {"module": REPO / "plugins" / "modules", "lookup": REPO / "plugins" / "lookup"}
PLUGINS = [(kind, path.stem) for kind, folder in PLUGIN_DIRS.items() for path in sorted(folder.glob("[a-z]*.py"))]
# Lookup keywords every lookup takes from Ansible itself, not from its documentation.
LOOKUP_KEYWORDS = {"errors", "wantlist"}
# Keys Ansible (or the json callback) adds to every result, documented by no module.
RESULT_KEYS = {"changed", "failed", "msg", "invocation", "warnings", "deprecations", "diff", "action", "skipped"}
# ansible-test's validate-modules rule (no-log-needed): an option so named needs an explicit no_log.
SECRET_NAME = re.compile(r"(?:pass(?!ive)|secret|token|key)", re.I)
NOT_SECRET_SUFFIXES = ("_count", "_type", "_alg", "_algorithm", "_timeout", "_name", "_comment", "_bits", "_id",
                       "_identifier", "_period", "_file", "_filename")  # fmt: skip
PLACEHOLDER = {"str": "x", "path": "/x", "int": 1, "float": 1.0, "bool": True, "list": [], "dict": {}, "raw": "x"}

# What the examples name that exists only at the user's site, and where it lives here.
HOSTS = ("db1.example.com", "www.example.com", "api.example.com", "mail.example.com", "10.0.0.5")
PATHS = (
    "/var/backups/postgresql",
    "/var/backups/staging",
    "/var/lib/prometheus/node-exporter",
    "/var/lib/locksmith/drills",
    "/etc/locksmith",
    "/etc/ssl/certs/db-ca.pem",
    "/etc/ssl/certs/internal-root.pem",
    "/etc/systemd",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/api",
    "/etc/app",
    "/etc/receiver",
    "/srv/app",
    "/srv/reports",
    "/usr/sbin/sshd",
)


# ---- reading the examples -------------------------------------------------------------------------
def plugin_path(kind, name):
    return PLUGIN_DIRS[kind] / f"{name}.py"


def examples(kind, name):
    """The EXAMPLES of one plugin as ansible-doc reads them, parsed."""
    text = read_docstring(str(plugin_path(kind, name)))["plainexamples"]
    tasks = yaml.safe_load(text)
    assert isinstance(tasks, list) and tasks, f"{kind} {name}: EXAMPLES is not a list of tasks"
    return tasks


def action_of(task):
    """(action, module args) of a task, as Ansible parses it."""
    action, args, _delegate = ModuleArgsParser(copy.deepcopy(task)).parse()
    return action, args


def strings(value):
    """Every string in a task, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def lookup_calls(text):
    """(plugin, {keyword: value or None when not a constant}) of each lookup()/query() in the Jinja of a string."""
    env = jinja2.Environment()  # noqa: S701 - parsed only, never rendered
    try:
        tree = env.parse(text)
    except jinja2.TemplateSyntaxError as err:
        raise AssertionError(f"{text!r} is not valid Jinja: {err}") from err
    for call in tree.find_all(jinja2.nodes.Call):
        if not (isinstance(call.node, jinja2.nodes.Name) and call.node.name in ("lookup", "query", "q")):
            continue
        assert call.args and isinstance(call.args[0], jinja2.nodes.Const), f"{text!r}: lookup name is not literal"
        keywords = {}
        for keyword in call.kwargs:
            try:
                keywords[keyword.key] = keyword.value.as_const()
            except jinja2.nodes.Impossible:
                keywords[keyword.key] = None
        yield call.args[0].value, keywords


def documented_spec(options, required=True):
    """An argument spec from documented options (types, choices, elements, aliases, suboptions, and required)."""
    spec = {}
    for name, option in (options or {}).items():
        keys = ("choices", "elements", "aliases", "required") if required else ("choices", "elements", "aliases")
        entry = {"type": option.get("type", "str"), **{k: option[k] for k in keys if k in option}}
        if option.get("suboptions"):
            entry["options"] = documented_spec(option["suboptions"], required)
        spec[name] = entry
    return spec


def concrete(args, spec):
    """The args with each Jinja value replaced by a value of the option's type (its first choice if it has any)."""
    out = {}
    for key, value in args.items():
        option = spec.get(key) or next((o for o in spec.values() if key in o.get("aliases", ())), {})
        if isinstance(value, str) and "{{" in value:
            value = option["choices"][0] if option.get("choices") else PLACEHOLDER[option.get("type", "str")]
        elif option.get("options") and isinstance(value, dict):
            value = concrete(value, option["options"])
        elif option.get("options") and isinstance(value, list):
            value = [concrete(item, option["options"]) if isinstance(item, dict) else item for item in value]
        out[key] = value
    return out


def validate(args, spec, **rules):
    result = ArgumentSpecValidator(spec, **rules).validate(concrete(args, spec))
    return [str(error) for error in result.errors]


def no_log_options(spec, prefix=""):
    for name, option in spec.items():
        if option.get("no_log"):
            yield prefix + name
        if option.get("options"):
            yield from no_log_options(option["options"], f"{prefix}{name}.")


def literal_values(args, dotted):
    """Values at a dotted option path (through lists of suboptions) that are not Jinja expressions."""
    head, _dot, rest = dotted.partition(".")
    value = args.get(head) if isinstance(args, dict) else None
    items = value if isinstance(value, list) and rest else [value]
    for item in items:
        if rest:
            yield from literal_values(item, rest)
        elif item is not None and not (isinstance(item, str) and "{{" in item):
            yield item


@pytest.fixture(scope="module")
def docs():
    """ansible-doc --json for every module and lookup: {kind: {fqcn: doc}}."""
    found = {}
    for kind in PLUGIN_DIRS:
        names = [f"{COLLECTION}.{name}" for k, name in PLUGINS if k == kind]
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-doc"), "--json", "-t", kind, *names],
            capture_output=True,
            text=True,
            env=ansible_env(),
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        found[kind] = json.loads(proc.stdout)
    return found


def return_keys(docs, kind, fqcn):
    returned = docs[kind][fqcn].get("return") or {}
    if kind == "lookup":
        return set((returned.get("_raw") or {}).get("contains") or {})
    return set(returned)


# ---- static checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(PLUGIN_DIRS))
def test_ansible_doc_renders_every_plugin_without_a_warning(kind):
    names = [f"{COLLECTION}.{name}" for k, name in PLUGINS if k == kind]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-t", kind, *names],
        capture_output=True,
        text=True,
        env=ansible_env({"ANSIBLE_DEPRECATION_WARNINGS": "True"}),
        check=False,
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    assert proc.stdout.count("EXAMPLES:") == len(names)


@pytest.mark.parametrize(("kind", "name"), PLUGINS)
def test_examples_name_every_action_and_lookup_by_fqcn(kind, name):
    for task in examples(kind, name):
        action, _args = action_of(task)
        assert action.count(".") == 2, f"{kind} {name}: task {task.get('name')!r} runs {action!r}, not an FQCN"
        for text in strings(task):
            for plugin, _keywords in lookup_calls(text):
                assert plugin.count(".") == 2, f"{kind} {name}: lookup {plugin!r} is not an FQCN"


@pytest.mark.parametrize(("kind", "name"), PLUGINS)
def test_module_options_in_examples_pass_the_documented_and_the_real_spec(docs, kind, name):
    for task in examples(kind, name):
        action, args = action_of(task)
        if not action.startswith(COLLECTION + "."):
            continue
        module = action.split(".")[-1]
        label = f"{kind} {name}: task {task['name']!r}"
        doc_spec = documented_spec(docs["module"][action]["doc"]["options"])
        assert validate(args, doc_spec) == [], f"{label} against the documentation"
        real = module_spec(module)
        if real is not None:
            spec = real.pop("argument_spec")
            real.pop("supports_check_mode", None)
            assert validate(args, spec, **real) == [], f"{label} against main()'s argument spec"


@pytest.mark.parametrize(("kind", "name"), PLUGINS)
def test_lookup_keywords_in_examples_are_documented_options(docs, kind, name):
    for task in examples(kind, name):
        for text in strings(task):
            for plugin, keywords in lookup_calls(text):
                if not plugin.startswith(COLLECTION + "."):
                    continue
                options = docs["lookup"][plugin]["doc"]["options"]
                unknown = set(keywords) - set(options) - LOOKUP_KEYWORDS
                assert not unknown, f"{kind} {name}: {plugin} has no option {sorted(unknown)}"
                constants = {k: v for k, v in keywords.items() if k in options and v is not None}
                # Terms and keywords given as variables are not checked here, so nothing counts as required.
                spec = documented_spec(options, required=False)
                assert validate(constants, spec) == [], f"{kind} {name}: {plugin} {constants}"


REFERENCE = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)")
LOOKUP_ATTRIBUTE = re.compile(r"""(?:lookup|query)\(\s*'(locksmith\.ops\.\w+)'[^()]*(?:\([^()]*\)[^()]*)*\)\.(\w+)""")


@pytest.mark.parametrize(("kind", "name"), PLUGINS)
def test_results_read_in_examples_are_documented_in_return(docs, kind, name):
    registered = {}  # variable -> (kind, fqcn) whose RETURN it holds
    for task in examples(kind, name):
        action, _args = action_of(task)
        holders = dict(registered)
        for variable, value in (task.get("vars") or {}).items():
            for plugin, _keywords in lookup_calls(str(value)):
                if plugin.startswith(COLLECTION + "."):
                    holders[variable] = ("lookup", plugin)
        for plugin, _keywords in lookup_calls(str(task.get("loop", ""))):
            if plugin.startswith(COLLECTION + "."):
                holders["item"] = ("lookup", plugin)
        for text in strings({k: v for k, v in task.items() if k != "register"}):
            for variable, key in REFERENCE.findall(text):
                if variable in holders:
                    where = holders[variable]
                    assert key in return_keys(docs, *where), f"{kind} {name}: {variable}.{key} is not in {where}"
            for plugin, key in LOOKUP_ATTRIBUTE.findall(text):
                assert key in return_keys(docs, "lookup", plugin), f"{kind} {name}: {plugin} returns no {key}"
        if task.get("register") and action.startswith(COLLECTION + "."):
            registered[task["register"]] = ("module", action)


@pytest.mark.parametrize("name", [name for kind, name in PLUGINS if kind == "module"])
def test_secret_options_are_no_log_and_examples_never_hold_one(name):
    captured = module_spec(name)
    if captured is None:
        pytest.skip("an action plugin: its options are ansible.builtin's")

    def unsure(spec, prefix=""):
        for option, data in spec.items():
            secretish = SECRET_NAME.search(option) and not option.endswith(NOT_SECRET_SUFFIXES)
            if secretish and data.get("no_log") is None and data.get("type") not in ("path", "bool"):
                yield prefix + option
            yield from unsure(data.get("options") or {}, f"{prefix}{option}.")

    spec = captured["argument_spec"]
    assert list(unsure(spec)) == []
    secrets = list(no_log_options(spec))
    for kind, plugin in PLUGINS:
        for task in examples(kind, plugin):
            action, args = action_of(task)
            if action == f"{COLLECTION}.{name}":
                for option in secrets:
                    literal = list(literal_values(args, option))
                    assert not literal, f"{kind} {plugin}: {option} is written out; take it from a lookup or vault"


# ---- the site the examples run against ----------------------------------------------------------------
class Site:
    """Servers, files and the one-pass substitution from the examples' names to this machine's."""

    def __init__(self, root, ca_file):
        self.root = root
        self.fs = root / "fs"
        self.ca_file = ca_file
        self.ports = {}
        self.urls = {}
        self.env = {}
        self.secrets = set()
        self.outputs = []
        self.pg = None

    # Substitution: one pass each, so nothing already replaced is replaced again.
    def localize_text(self, text, extra=None):
        table = dict(self.urls)
        table.update({host: "127.0.0.1" for host in HOSTS})
        table.update(extra or {})
        if table:
            pattern = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
            text = re.sub(pattern, lambda m: table[m.group(0)], text)
        paths = "|".join(re.escape(p) for p in PATHS)
        return re.sub(rf"(?<![\w/.-])({paths})", lambda m: str(self.fs) + m.group(1), text)

    def localize(self, value, extra=None):
        if isinstance(value, str):
            return self.localize_text(value, extra)
        if isinstance(value, list):
            return [self.localize(v, extra) for v in value]
        if isinstance(value, dict):
            return {k: self.localize(v, extra) for k, v in value.items()}
        return value

    def task(self, kind, name, index, *, args=None, extra=None, pg=None, **keywords):
        """Example `index` of a plugin, localized; `args` replaces module options, `keywords` task keywords."""
        task = copy.deepcopy(examples(kind, name)[index])
        action, _args = action_of(task)
        module_args = task[action] if isinstance(task.get(action), dict) else None
        if module_args is not None and action.startswith(COLLECTION + "."):
            spec = (module_spec(action.split(".")[-1]) or {}).get("argument_spec", {})
            if "login_port" in spec:
                module_args.setdefault("login_host", "127.0.0.1")
                module_args["login_port"] = (pg or self.pg).port
            if isinstance(module_args.get("endpoints"), list):
                for endpoint in module_args["endpoints"]:
                    endpoint["port"] = self.ports[endpoint["host"]]
        task = self.localize(task, extra)
        if args:
            task[action].update(args)
        task.update(keywords)
        return task

    def play(self, tasks, *, name="play", variables=None, check=False, expect_rc=0):
        """Run the tasks in one play; -> one result per task, in order."""
        directory = self.root / "plays" / f"{name}-{uuid.uuid4().hex[:6]}" / "playbooks"
        shutil.copytree(self.root / "playbook_files", directory)
        playbook = directory / "site.yml"
        play = {"hosts": "localhost", "gather_facts": False, "vars": variables or {}, "tasks": tasks}
        playbook.write_text(yaml.safe_dump([play], sort_keys=False), encoding="utf-8")
        run = run_playbook(playbook, env=self.env, check=check)
        self.outputs.append(run.stdout + run.stderr)
        assert run.rc == expect_rc, f"rc={run.rc}\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
        assert "WARNING" not in run.stderr, run.stderr
        results = [task["hosts"]["localhost"] for task in run.tasks()]
        for task, result in zip(tasks, results, strict=expect_rc == 0):
            assert not result.get("warnings") and not result.get("deprecations"), (task["name"], result)
        return results

    def assert_no_secret_in_output(self):
        for secret in self.secrets:
            assert len(secret) >= 8
            for output in self.outputs:
                assert secret not in output, "a secret shows in the output of a run"


def check_returned_keys(docs, tasks, results):
    """Each result of one of our modules holds only keys its RETURN documents."""
    for task, result in zip(tasks, results, strict=True):
        action, _args = action_of(task)
        if not action.startswith(COLLECTION + ".") or result.get("skipped"):
            continue
        extra = {k for k in result if not k.startswith("_ansible")} - RESULT_KEYS - return_keys(docs, "module", action)
        assert not extra, f"{task['name']!r} returns undocumented keys {sorted(extra)}"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ssl_scram_cluster(issued):
    """PostgreSQL 15 of our own: SSL only; postgres by trust, every other role by scram-sha-256."""
    cluster = PostgresCluster().start()
    pg = pwd.getpwnam("postgres")
    cert, key = cluster.datadir / "server.crt", cluster.datadir / "server.key"
    cert.write_bytes(issued.cert_path.read_bytes() + issued.chain_path.read_bytes())
    key.write_bytes(issued.key_path.read_bytes())
    for path in (cert, key):
        os.chown(path, pg.pw_uid, pg.pw_gid)
    key.chmod(0o600)
    for setting, value in (("ssl", "on"), ("ssl_cert_file", str(cert)), ("ssl_key_file", str(key))):
        cluster.query(f"ALTER SYSTEM SET {setting} = %s", (value,))
    (cluster.datadir / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        encoding="utf-8",
    )
    cluster.query("SELECT pg_reload_conf()")
    return cluster


def _seed(cluster):
    for database in ("app", "shop", "crm"):
        cluster.create_database(database)
    cluster.query(
        "CREATE ROLE auditor; CREATE ROLE app_rw; CREATE ROLE app LOGIN IN ROLE app_rw; "
        "CREATE ROLE app_clone LOGIN IN ROLE app_rw"
    )
    cluster.query(
        "CREATE TABLE workflows (id int PRIMARY KEY, name text); "
        "INSERT INTO workflows SELECT g, 'workflow ' || g FROM generate_series(1, 1500) g; "
        "CREATE SCHEMA app; CREATE TABLE app.accounts (id int); INSERT INTO app.accounts VALUES (1); "
        "GRANT USAGE ON SCHEMA app TO app_rw; GRANT SELECT ON app.accounts TO app_rw; ANALYZE",
        dbname="app",
    )
    cluster.query(
        "CREATE SCHEMA sales; "
        "CREATE TABLE public.users (id int PRIMARY KEY, email text, password_hash text, api_token text); "
        "CREATE TABLE sales.orders (id int PRIMARY KEY, user_id int, total numeric); "
        "INSERT INTO public.users VALUES (1, 'a@example.com', 'hash', 'token')",
        dbname="shop",
    )
    cluster.query("CREATE TABLE contacts (id int PRIMARY KEY); INSERT INTO contacts VALUES (1)", dbname="crm")


def _smtp_starttls_peer(issued, stop):
    """A STARTTLS SMTP peer (the one test_tls_check uses); -> its port."""
    from tests.integration.test_tls_check import _server_ctx, _smtp_session

    ctx, sock = _server_ctx(issued), socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)

    def serve():
        with sock:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    conn = sock.accept()[0]
                    conn.settimeout(5)
                    threading.Thread(target=_smtp_session, args=(conn, ctx, True), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock.getsockname()[1], thread


@pytest.fixture(scope="module")
def site(tmp_path_factory, cert_factory, openbao, moto):
    root = tmp_path_factory.mktemp("examples")
    site = Site(root, cert_factory.ca_file)
    fs = site.fs
    for path in PATHS:
        if not path.endswith((".pem", "sshd")):
            (fs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for pem in ("etc/ssl/certs/db-ca.pem", "etc/ssl/certs/internal-root.pem"):
        (fs / pem).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(cert_factory.ca_file, fs / pem)
    (fs / "etc/ssh/sshd_config.d").mkdir()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    # visudo and sshd are not installed here: stand-ins that log how they are called and accept the file.
    for stub in (bin_dir / "visudo", fs / "usr/sbin/sshd"):
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f'#!/bin/sh\necho "{stub.name} $*" >> {root}/validate.log\n', encoding="utf-8")
        stub.chmod(0o755)
    key_hex = os.urandom(32).hex()
    key_file = fs / "etc/locksmith/backup.key"
    key_file.write_text(key_hex + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    files = root / "playbook_files"
    (files / "files").mkdir(parents=True)
    (files / "templates").mkdir()
    (files / "files/sudoers-ops").write_text("ops ALL=(root) NOPASSWD: /usr/bin/systemctl\n", encoding="utf-8")
    (files / "templates/sshd_config.j2").write_text(
        "{{ ansible_managed | comment }}\nPermitRootLogin no\nPasswordAuthentication no\n", encoding="utf-8"
    )
    (files / "templates/app.env.j2").write_text(
        "DB_USER={{ app_db_user }}\nDB_PASSWORD={{ app_db_password }}\n", encoding="utf-8"
    )

    issued = cert_factory.leaf("db1.example.com", sans=(*HOSTS[:4], "localhost", "127.0.0.1"))
    site.pg = _ssl_scram_cluster(issued)
    _seed(site.pg)
    web, api = TLSPeer(issued).start(), TLSPeer(issued).start()
    stop = threading.Event()
    smtp_port, smtp_thread = _smtp_starttls_peer(issued, stop)
    site.ports = {
        "www.example.com": web.port,
        "api.example.com": api.port,
        "10.0.0.5": web.port,
        "db1.example.com": site.pg.port,
        "mail.example.com": smtp_port,
    }
    site.urls = {
        "https://vault.example.com:8200": openbao.url,
        "https://api.example.com/v1/whoami": f"https://127.0.0.1:{api.port}/v1/whoami",
    }

    client = openbao.client()
    for path in ("app/db", "webhooks/signing"):
        with contextlib.suppress(Exception):
            client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
    admin_pw, backup_pw = f"admin-{uuid.uuid4().hex}", f"backup-{uuid.uuid4().hex}"
    for path, data in (("pg/admin", {"password": admin_pw}), ("pg/backup", {"password": backup_pw})):
        client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")
    client.secrets.kv.v2.create_or_update_secret(path="backup/key", secret={"key": key_hex}, mount_point="secret")
    with contextlib.suppress(Exception):
        client.sys.enable_auth_method("approle")
    client.sys.create_or_update_policy(
        "locksmith-examples", 'path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }'
    )
    client.auth.approle.create_or_update_approle("locksmith-examples", token_policies=["locksmith-examples"])
    site.approle = {
        "vault_role_id": client.auth.approle.read_role_id("locksmith-examples")["data"]["role_id"],
        "vault_secret_id": client.auth.approle.generate_secret_id("locksmith-examples")["data"]["secret_id"],
    }
    s3 = moto.client("s3")
    for bucket, region in (("acme-backups-eu-west-1", "eu-west-1"), ("acme-backups-eu-central-1", "eu-central-1")):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            moto.client("s3", region).create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
            )
    with contextlib.suppress(Exception):
        moto.client("secretsmanager").delete_secret(SecretId="prod/app-db", ForceDeleteWithoutRecovery=True)

    site.env = {
        **moto.env(),
        **openbao.env(),
        "SSL_CERT_FILE": str(cert_factory.ca_file),  # the system trust store of tls_check and fetch_url
        "PGADMIN_PASSWORD": admin_pw,
        "ANSIBLE_DEPRECATION_WARNINGS": "True",
        "PATH": os.pathsep.join((str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
    }
    site.secrets.update({admin_pw, backup_pw, key_hex, site.approle["vault_secret_id"]})
    site.key_hex = key_hex
    site.openbao, site.moto = openbao, moto
    yield site
    stop.set()
    smtp_thread.join()
    web.stop()
    api.stop()
    site.pg.stop()


S3_DESTINATIONS = [
    {"type": "s3", "bucket": "acme-backups-eu-west-1", "region": "eu-west-1", "prefix": "postgresql"},
    {"type": "s3", "bucket": "acme-backups-eu-central-1", "region": "eu-central-1", "prefix": "postgresql"},
]


@pytest.fixture(scope="module")
def backups(site):
    """pg_backup's examples 0-2 run twice each (local, two S3 regions, all databases), then crm to both regions."""
    tasks = [site.task("module", "pg_backup", i) for i in (0, 0, 1, 1, 2, 2)]
    results = site.play(tasks, name="pg_backup")
    crm = site.task("module", "pg_backup", 1, args={"database": "crm"})
    site.play([crm], name="crm")
    return tasks, results


# ---- the examples, run ------------------------------------------------------------------------------
def test_audit_trigger_examples(site, docs):
    ex = [site.task("module", "audit_trigger", i) for i in range(4)]
    info = [site.task("module", "audit_trigger_info", i) for i in range(2)]
    # 0 and 1 twice; 2 (check mode) and then 1 again, which finds nothing changed; 3 twice; the info module last.
    tasks = [ex[0], ex[0], ex[1], ex[1], ex[2], ex[1], ex[3], ex[3], *info]
    results = site.play(tasks, name="audit")
    assert [r["changed"] for r in results[:8]] == [True, False, True, False, True, False, True, False]
    assert results[4]["diff"]["before"] != results[4]["diff"]["after"]
    assert results[7]["trigger"]["tables"] == {}  # the tables named (sales.orders) carry no audit triggers now
    assert "public.users" in results[8]["tables"] and results[9]["msg"] == "All assertions passed"
    check_returned_keys(docs, tasks, results)
    # Example 1 connected with verify-full to the CA the server's certificate chains to, as the example says.
    assert results[2]["invocation"]["module_args"]["ssl_mode"] == "verify-full"
    # An independent client sees the triggers example 1 left on public.users and example 3 removed from sales.orders.
    triggers = site.pg.query(
        "SELECT tgrelid::regclass::text, count(*) FROM pg_trigger WHERE tgname LIKE 'locksmith_audit_%%' GROUP BY 1",
        dbname="shop",
    )
    assert triggers == [("users", 4)]
    site.assert_no_secret_in_output()


def test_pg_backup_and_pg_backup_info_examples(site, docs, backups):
    tasks, results = backups
    assert [r["changed"] for r in results] == [True, False, True, False, True, False]
    assert {c["status"] for r in results[2:4] for c in r["copies"]} <= {"verified"} and len(results[2]["copies"]) == 2
    assert results[2]["backup"]["encryption"] and results[2]["metrics_file"].startswith(str(site.fs))
    assert results[4]["backup"]["label"] == "all-databases" and {"app", "shop", "crm"} <= set(
        results[4]["backup"]["databases"]
    )
    more = [site.task("module", "pg_backup", i) for i in (3, 4)]
    more += [site.task("module", "pg_backup_info", i) for i in range(3)]
    later = site.play(more, name="pg_backup_more")
    assert later[0]["changed"] is False and later[0]["pruned"] == []  # not due; nothing to prune
    assert later[1]["changed"] is False and later[1]["backup"]["id"] == results[0]["backup"]["id"]
    assert 0 <= later[2]["rpo_seconds"]["app"] < 600 and later[3]["msg"] == "All assertions passed"
    assert {"app", "crm"} <= set(later[4]["rpo_seconds"])
    check_returned_keys(docs, tasks + more, results + later)
    site.assert_no_secret_in_output()


def test_pg_backup_latest_examples(site, backups):
    tasks = [site.task("lookup", "pg_backup_latest", i) for i in range(3)]
    results = site.play(tasks, name="latest", variables={"backup_destinations": S3_DESTINATIONS})
    assert results[0]["msg"] == "All assertions passed"
    assert results[1]["ansible_facts"]["crm_backup_id"].startswith("20")
    assert [r["item"]["database"] for r in results[2]["results"]] == ["app", "crm"]


def test_pg_backup_restore_examples(site, docs, backups, tmp_path):
    _tasks, made = backups
    named = made[0]["backup"]["id"]  # the local backup of app
    drill = site.task("module", "pg_backup_restore", 0)
    recover = site.task("module", "pg_backup_restore", 1, extra={"20261127T020000Z-1a2b": named})
    tables = site.task("module", "pg_backup_restore", 3)
    tasks = [drill, drill, dict(recover, check_mode=True), recover, tables]
    results = site.play(tasks, name="restore")
    assert [r["changed"] for r in results] == [False, False, True, True, True]
    assert results[0]["restore"]["source"].startswith("destinations[0] s3://acme-backups-eu-west-1/postgresql/")
    assert results[0]["report_files"]["json"].startswith(str(site.fs)) and results[0]["metrics_file"]
    assert "safety_backup" not in results[2] and results[3]["safety_backup"]["id"]
    assert results[3]["restore"]["id"] == named
    assert site.pg.query("SELECT count(*) FROM restored.workflows", dbname="app") == [(1500,)]
    check_returned_keys(docs, tasks, results)

    # Example 2 rebuilds a lost server: a new, empty cluster.
    lost = PostgresCluster().start()
    try:
        rebuild = site.task("module", "pg_backup_restore", 2, pg=lost)
        result = site.play([rebuild], name="rebuild")[0]
        assert result["changed"] and {d["database"] for d in result["restore"]["databases"]} >= {"app", "shop"}
        assert lost.query("SELECT count(*) FROM workflows", dbname="app") == [(1500,)]
        assert lost.query("SELECT 1 FROM pg_roles WHERE rolname = 'auditor'") == [(1,)]
    finally:
        lost.stop()
    site.assert_no_secret_in_output()


def _vault_secret(site, path):
    kv = site.openbao.client().secrets.kv.v2
    return kv.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)["data"]["data"]


def _login(site, user, password):
    import psycopg2

    conn = psycopg2.connect(**site.pg.conn_params("app", user, password), sslmode="require")
    conn.close()


def test_secret_rotate_and_secret_examples(site, docs):
    first = site.task("module", "secret_rotate", 0)
    results = site.play([first, first], name="rotate_vault", variables=site.approle)
    assert [r["changed"] for r in results] == [True, False] and results[0]["steps"][-1] == "promote"
    stored = _vault_secret(site, "app/db")["current"]["value"]
    _login(site, "app", stored["password"])  # an independent client logs in with what Vault holds
    site.secrets.add(stored["password"])
    assert results[0]["secret"]["age_seconds"] >= 0

    ex = [site.task("module", "secret_rotate", i) for i in range(7)]
    # 1 and 2 twice; then the api/token flow (3 in check mode, stage, handler, promote) twice.
    tasks = [ex[1], ex[1], ex[2], ex[2], *ex[3:7], *ex[3:7]]
    results = site.play(tasks, name="rotate")
    assert [r.get("changed") for r in results] == [True, False, True, False, True, True, True, True] + [False] * 4
    assert results[8]["rotation_due"] is False and results[10].get("skipped") is True  # nothing staged: no handler
    check_returned_keys(docs, tasks, results)

    aws = site.moto.client("secretsmanager")
    current = json.loads(aws.get_secret_value(SecretId="prod/app-db", VersionStage="AWSCURRENT")["SecretString"])
    _login(site, current["username"], current["password"])
    signing = _vault_secret(site, "webhooks/signing")["current"]["value"]["key"]
    token_file = site.fs / "etc/api/token"
    token = json.loads((site.fs / "etc/locksmith/secrets.json").read_text())["secrets"]["api/token"]
    assert token_file.read_text() == token["current"]["value"]["value"] and oct(token_file.stat().st_mode)[-3:] == "600"
    assert len(signing) == 64
    site.secrets.update({current["password"], signing, token["current"]["value"]["value"]})

    lookups = [site.task("lookup", "secret", i, args={"owner": "root"} if i == 0 else None) for i in (0, 0, 1, 1)]
    results = site.play(lookups, name="secret_lookup")
    assert [r["changed"] for r in results] == [True, False, True, False]
    assert (
        site.fs / "etc/app/app.env"
    ).read_text() == f"DB_USER={current['username']}\nDB_PASSWORD={current['password']}\n"
    assert json.loads((site.fs / "etc/receiver/keys.json").read_text()) == {"current": signing, "previous": None}
    site.assert_no_secret_in_output()


def test_posture_report_examples(site, docs):
    variables = {
        "lynis_before": {"hardening_index": 58},
        "lynis_after": {"hardening_index": 74},
        "backups": {"rpo_seconds": {"app": 600}},
        "site_promises": [
            {"name": "rpo", "title": "RPO of app", "value": 600, "target": 86400, "unit": "s"},
            {"name": "rto", "title": "RTO of app", "value": 9000, "target": 3600, "unit": "s"},
        ],
    }
    ex = [site.task("module", "posture_report", i) for i in range(3)]
    tasks = [ex[0], ex[0], *ex[1:], *ex[1:]]
    results = site.play(tasks, name="posture", variables=variables)
    assert [r["changed"] for r in results[:3]] == [True, False, True] and results[4]["changed"] is False
    assert results[0]["passed"] is True and results[2]["passed"] is False
    assert results[3]["msg"] == "1 of 2 promises met"
    assert Path(results[0]["files"]["html"]).is_file()
    check_returned_keys(docs, tasks, results)
    # Without a measured RPO the first example fails, as its name says, after writing the report.
    del variables["backups"]
    failed = site.play(ex[:1], name="posture_missed", variables=variables, expect_rc=2)[0]
    assert failed["failed"] and "rpo (unmeasured)" in failed["msg"]


def test_secret_scan_examples(site, docs):
    repo = site.root / "ops-repo"
    for relative, text in {
        "group_vars/all.yml": 'db_password: "Zq8kL2pWnb71xq"\n',
        ".venv/lib/leak.py": 'aws = "AKIAZXCVBNMASDFGHJKL"\n',
        "node_modules/x/leak.js": 'aws = "AKIAZXCVBNMASDFGHJKL"\n',
        "poetry.lock": "token: AKIAZXCVBNMASDFGHJKL\n",
    }.items():
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text(text, encoding="utf-8")
    (site.fs / "srv/app/.env.production").write_text("DB_PASSWORD=hunter2hunter2\n", encoding="utf-8")
    (site.fs / "srv/app/settings.py").write_text('api_key = "8f14e45fceea167a5a36dedd4bea2543"\n', encoding="utf-8")
    scan = site.task("module", "secret_scan", 0)
    # The checkout is the playbook directory's parent: run it from the repository's playbooks/.
    playbooks = repo / "playbooks"
    playbooks.mkdir()
    (playbooks / "site.yml").write_text(
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [scan]}]), encoding="utf-8"
    )
    run = run_playbook(playbooks / "site.yml", env=site.env)
    assert run.rc == 2, run.stderr
    result = run.result(scan["name"])
    assert [(Path(f["file"]).resolve(), f["line"]) for f in result["findings"]] == [
        ((repo / "group_vars/all.yml").resolve(), 1)
    ]
    tasks = [site.task("module", "secret_scan", i) for i in (1, 2)]
    results = site.play(tasks, name="scan")
    files = {Path(f).name for f in results[1]["msg"]}
    assert results[0]["changed"] is False and files == {".env.production", "settings.py"}
    check_returned_keys(docs, tasks, results)


def test_tls_check_examples(site, docs):
    ex = [site.task("module", "tls_check", i) for i in range(3)]
    tasks = [ex[0], ex[1], ex[1], ex[2]]
    endpoints = [{"host": "127.0.0.1", "port": site.ports["www.example.com"]}]
    results = site.play(tasks, name="tls", variables={"tls_audit_endpoints": endpoints})
    assert not any(r["changed"] for r in results)
    assert [e["status"] for e in results[0]["endpoints"]] == ["ok", "ok"]
    audit = {e["starttls"]: e for e in results[1]["endpoints"]}
    assert audit["postgres"]["status"] == "ok" and audit["postgres"]["plaintext_accepted"] is False
    assert audit["smtp"]["reachable"] and audit["smtp"]["chain"]["trusted"]
    assert audit["none"]["http"] is not None and results[1]["failing"] == []
    assert (site.fs / "var/lib/prometheus/node-exporter/locksmith_tls_production.prom").is_file()
    assert results[3]["summary"]["ok"] == 1
    check_returned_keys(docs, tasks, results)


def test_textfile_timestamp_examples(site, docs):
    ex = site.task("module", "textfile_timestamp", 0)
    results = site.play([ex, ex], name="timestamp")
    # The first run publishes a new series; the second only moves its value, which is no change.
    assert [r["changed"] for r in results] == [True, False]
    prom = site.fs / "var/lib/prometheus/node-exporter/locksmith_hardening_ssh_hardening.prom"
    assert results[1]["metrics_file"] == str(prom)
    assert f'locksmith_hardening_last_run_timestamp_seconds{{role="ssh_hardening"}} {results[1]["timestamp"]}' in (
        prom.read_text()
    )
    check_returned_keys(docs, [ex, ex], results)


def test_copy_and_template_examples(site, docs):
    ex = [site.task("module", "copy", i) for i in range(3)]
    tpl = site.task("module", "template", 0)
    tasks = [*ex, tpl, *ex, tpl]
    results = site.play(tasks, name="files")
    assert [r["changed"] for r in results] == [True, True, True, True, False, False, False, False]
    dropin = site.fs / "etc/systemd/coredump.conf.d/50-locksmith.conf"
    assert dropin.read_text() == "[Coredump]\nStorage=none\n" and oct(dropin.stat().st_mode)[-3:] == "644"
    assert oct((site.fs / "etc/sudoers.d/ops").stat().st_mode)[-3:] == "440"
    assert "PermitRootLogin no" in (site.fs / "etc/ssh/sshd_config.d/50-locksmith.conf").read_text()
    validated = (site.root / "validate.log").read_text().splitlines()
    assert [line.split()[:2] for line in validated] == [["visudo", "-cf"], ["sshd", "-t"]]
    check_returned_keys(docs, tasks, results)
