"""playbooks/awx_configure.yml run by ansible-playbook against a stand-in for the AWX API.

No AWX server is reachable from the build machines, so a small in-memory REST server answers the calls
the awx.awx modules make (list with filters, create, update, associate) the way AWX's API v2 does:
objects carry `id`, `url` and `related` links, secret credential inputs read back as `$encrypted$`, and
requests without the bearer token are refused. It is not AWX: it checks no permissions and validates no
fields, so this test proves what the playbook sends and that a second run changes nothing, not that
AWX accepts every value (see docs/awx.md).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.harness.ansible import REPO

PLAYBOOK = REPO / "playbooks" / "awx_configure.yml"
# Built-in credential types and which of their inputs AWX stores encrypted.
BUILTIN_TYPES = {
    "Machine": ["password", "ssh_key_data", "ssh_key_unlock", "become_password"],
    "Vault": ["vault_password"],
    "Amazon Web Services": ["password", "security_token"],
    "HashiCorp Vault Secret Lookup": ["token", "secret_id", "client_cert_key"],
}
# Association lists under an object (AWX's related many-to-many endpoints).
ASSOCIATIONS = {"credentials", "labels", "instance_groups", "galaxy_credentials"}


class FakeController(ThreadingHTTPServer):
    """In-memory AWX API v2: /api/v2/<collection>/[<id>/[<association>/]]."""

    daemon_threads = True

    def __init__(self, token: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.store: dict[str, dict[int, dict]] = {}
        self.links: dict[tuple[str, int, str], list[int]] = {}
        self.writes: list[tuple[str, str, dict]] = []
        self.refused = 0
        self._next = 100
        self._lock = threading.Lock()
        for name, secret_fields in BUILTIN_TYPES.items():
            self.create("credential_types", {"name": name, "kind": "cloud", "managed": True, "_secret": secret_fields})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def create(self, collection: str, fields: dict) -> dict:
        with self._lock:
            self._next += 1
            item_id = self._next
        base = f"/api/v2/{collection}/{item_id}/"
        item = {
            **fields,
            "id": item_id,
            "type": collection.rstrip("s"),
            "url": base,
            "related": {name: f"{base}{name}/" for name in ASSOCIATIONS},
            "summary_fields": {},
        }
        if collection == "projects":
            item.setdefault("scm_revision", "0" * 40)
        if collection == "credential_types" and "_secret" not in item:
            fields_spec = (item.get("inputs") or {}).get("fields", [])
            item["_secret"] = [f["id"] for f in fields_spec if f.get("secret")]
        self.store.setdefault(collection, {})[item_id] = item
        return item

    def public(self, collection: str, item: dict) -> dict:
        """What AWX returns: no internal keys, secret credential inputs as $encrypted$."""
        shown = {k: v for k, v in item.items() if not k.startswith("_")}
        if collection == "credentials":
            secret_fields = self.store["credential_types"][item["credential_type"]]["_secret"]
            shown["inputs"] = {k: "$encrypted$" if k in secret_fields else v for k, v in item["inputs"].items()}
        return shown

    def named(self, collection: str, name: str) -> dict:
        (found,) = [i for i in self.store.get(collection, {}).values() if i.get("name") == name]
        return found

    def linked(self, collection: str, item: dict, association: str) -> list[str]:
        ids = self.links.get((collection, item["id"], association), [])
        return sorted(self.store["credentials"][i]["name"] for i in ids)


def _matches(item: dict, query: dict[str, str]) -> bool:
    """AWX list filters: plain keys must all match, `or__` keys need one match."""
    plain = {k: v for k, v in query.items() if not k.startswith("or__") and k not in ("page_size", "page")}
    either = {k[4:]: v for k, v in query.items() if k.startswith("or__")}
    if any(str(item.get(k)) != v for k, v in plain.items()):
        return False
    return not either or any(str(item.get(k)) == v for k, v in either.items())


class _Handler(BaseHTTPRequestHandler):
    server: FakeController

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-API-Product-Name", "AWX")
        self.send_header("X-API-Product-Version", "24.6.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.token}":
            return True
        self.server.refused += 1
        self._reply(401, {"detail": "Authentication credentials were not provided."})
        return False

    def _route(self):
        parts = urlsplit(self.path)
        match = re.fullmatch(r"/api/v2/([a-z_]+)/(?:(\d+)/(?:([a-z_]+)/)?)?", parts.path)
        query = dict(parse_qsl(parts.query))
        if not match:
            return None, None, None, query
        return match[1], int(match[2]) if match[2] else None, match[3], query

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def do_GET(self):
        if urlsplit(self.path).path == "/api/":
            return self._reply(200, {"current_version": "/api/v2/", "available_versions": {"v2": "/api/v2/"}})
        if not self._authorised():
            return None
        collection, item_id, association, query = self._route()
        store = self.server.store
        if collection == "unified_job_templates":
            items = [i for c in ("job_templates", "projects") for i in store.get(c, {}).values()]
            return self._list("job_templates", [i for i in items if _matches(i, query)])
        if collection is None or (item_id is not None and item_id not in store.get(collection, {})):
            return self._reply(404, {"detail": "Not found."})
        if item_id is None:
            found = [i for i in store.get(collection, {}).values() if _matches(i, query)]
            return self._list(collection, found)
        item = store[collection][item_id]
        if association:
            ids = self.server.links.get((collection, item_id, association), [])
            return self._list(association, [store[association][i] for i in ids])
        return self._reply(200, self.server.public(collection, item))

    def _list(self, collection: str, items: list[dict]) -> None:
        shown = [self.server.public(collection, i) for i in items]
        self._reply(200, {"count": len(shown), "next": None, "previous": None, "results": shown})

    def do_POST(self):
        if not self._authorised():
            return None
        collection, item_id, association, _query = self._route()
        body = self._body()
        self.server.writes.append(("POST", self.path, body))
        if association:
            links = self.server.links.setdefault((collection, item_id, association), [])
            if body.get("disassociate"):
                links.remove(body["id"])
            elif body["id"] not in links:
                links.append(body["id"])
            return self._reply(204)
        if collection is None or item_id is not None:
            return self._reply(405, {"detail": "Method not allowed."})
        return self._reply(201, self.server.public(collection, self.server.create(collection, body)))

    def do_PATCH(self):
        if not self._authorised():
            return None
        collection, item_id, _association, _query = self._route()
        body = self._body()
        self.server.writes.append(("PATCH", self.path, body))
        item = self.server.store[collection][item_id]
        if collection == "credentials" and "inputs" in body:
            body["inputs"] = {**item["inputs"], **{k: v for k, v in body["inputs"].items() if v != "$encrypted$"}}
        item.update(body)
        return self._reply(200, self.server.public(collection, item))


@pytest.fixture
def controller():
    server = FakeController(token=secrets.token_urlsafe(24))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(controller):
    """Extra vars as a user passes them (-e @awx.yml -e @awx-secrets.yml), secrets fresh and random."""
    return {
        "awx_controller_host": controller.url,
        "awx_controller_oauthtoken": controller.token,
        "awx_validate_certs": False,
        "awx_project_scm_url": "https://git.example.com/ops/locksmith-site.git",
        "awx_ee_image": "registry.example.com/locksmith-ee:0.1.0",
        "awx_machine_username": "deploy",
        "awx_vault_password": secrets.token_urlsafe(18),
        "awx_aws_access_key": "AKIA" + secrets.token_hex(8).upper(),
        "awx_aws_secret_key": secrets.token_urlsafe(30),
        "awx_openbao_url": "https://bao.example.com:8200",
        "awx_openbao_token": secrets.token_urlsafe(24),
        "awx_hashivault_url": "https://bao.example.com:8200",
        "awx_hashivault_token": secrets.token_urlsafe(24),
        "awx_credential_input_sources": [
            {"credential": "machine", "field": "ssh_key_data", "secret_path": "kv/data/awx/deploy", "secret_key": "key"}
        ],
    }


SECRET_SETTINGS = ("awx_controller_oauthtoken", "awx_vault_password", "awx_aws_secret_key", "awx_openbao_token")


def run(ansible, settings, *, check=False):
    result = ansible.run_playbook(PLAYBOOK, extra_vars=settings, check=check, diff=check)
    assert result.rc == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for name in (*SECRET_SETTINGS, "awx_hashivault_token"):
        assert settings[name] not in result.stdout + result.stderr, f"{name} shows in the playbook output"
    return result


def test_configures_every_object_then_changes_nothing(ansible, controller, settings):
    first = run(ansible, settings)
    assert first.changed() > 0
    store = controller.store

    org = controller.named("organizations", "locksmith")
    ee = controller.named("execution_environments", "locksmith EE")
    assert ee["image"] == settings["awx_ee_image"] and ee["organization"] == org["id"]
    project = controller.named("projects", "locksmith.ops")
    assert project["scm_url"] == settings["awx_project_scm_url"] and project["scm_update_on_launch"] is True
    assert project["default_environment"] == ee["id"]

    # Credentials hold the secrets they were given; AWX shows them as $encrypted$ only.
    credentials = {c["name"]: c for c in store["credentials"].values()}
    assert set(credentials) == {
        "locksmith machine",
        "locksmith ansible-vault",
        "locksmith AWS",
        "locksmith HashiCorp Vault lookup",
        "locksmith OpenBao token",
    }
    assert credentials["locksmith ansible-vault"]["inputs"] == {"vault_password": settings["awx_vault_password"]}
    assert credentials["locksmith AWS"]["inputs"]["password"] == settings["awx_aws_secret_key"]
    assert credentials["locksmith OpenBao token"]["inputs"]["token"] == settings["awx_openbao_token"]
    assert credentials["locksmith machine"]["inputs"] == {"username": "deploy", "become_method": "sudo"}
    token_type = controller.named("credential_types", "locksmith OpenBao / Vault token")
    assert token_type["injectors"] == {"env": {"VAULT_ADDR": "{{ url }}", "VAULT_TOKEN": "{{ token }}"}}
    assert token_type["_secret"] == ["token"]
    (source,) = store["credential_input_sources"].values()
    assert source["target_credential"] == credentials["locksmith machine"]["id"]
    assert source["source_credential"] == credentials["locksmith HashiCorp Vault lookup"]["id"]
    assert source["input_field_name"] == "ssh_key_data"

    inventory_source = controller.named("inventory_sources", "locksmith example from locksmith.ops")
    assert inventory_source["source"] == "scm" and inventory_source["source_path"] == "inventories/example/hosts.yml"
    assert inventory_source["source_project"] == project["id"]

    templates = {t["name"]: t for t in store["job_templates"].values()}
    assert {t["playbook"] for t in templates.values()} == {
        f"playbooks/{name}.yml"
        for name in ("harden", "audit", "secrets", "backup", "tls_audit", "monitoring", "dr_drill", "site")
    }
    assert controller.linked("job_templates", templates["locksmith site"], "credentials") == [
        "locksmith AWS",
        "locksmith OpenBao token",
        "locksmith ansible-vault",
        "locksmith machine",
    ]
    assert controller.linked("job_templates", templates["locksmith tls_audit"], "credentials") == [
        "locksmith ansible-vault",
        "locksmith machine",
    ]
    assert templates["locksmith harden"]["ask_job_type_on_launch"] is True

    schedules = {s["name"]: s for s in store["schedules"].values()}
    nightly = schedules["locksmith hardening check nightly 01:00"]
    assert nightly["unified_job_template"] == templates["locksmith harden"]["id"]
    assert nightly["job_type"] == "check" and nightly["diff_mode"] is True
    backup = schedules["locksmith backup daily 02:00"]
    assert backup["rrule"] == "DTSTART;TZID=UTC:20260101T020000 RRULE:FREQ=DAILY;INTERVAL=1"
    assert backup["unified_job_template"] == templates["locksmith backup"]["id"]
    assert len(schedules) == 5
    assert controller.refused == 0

    # Second run with a changed secret in the vars: nothing changes, nothing is written, the stored
    # secret stays (AWX never returns it, so re-sending would report a change on every run).
    writes = len(controller.writes)
    rotated = dict(settings, awx_aws_secret_key=secrets.token_urlsafe(30))
    second = run(ansible, rotated)
    changed = [t["task"]["name"] for t in second.tasks() if any(h.get("changed") for h in t["hosts"].values())]
    assert second.changed() == 0, changed
    check = run(ansible, rotated, check=True)
    assert check.changed() == 0
    assert len(controller.writes) == writes, controller.writes[writes:]
    assert credentials["locksmith AWS"]["inputs"]["password"] == settings["awx_aws_secret_key"]

    # Rotating a secret is one run with awx_update_secrets=true (templates and schedules left out to keep
    # the run short: extra vars replace the playbook's lists).
    only_credentials = {"awx_job_templates": [], "awx_schedules": [], "awx_inventories": []}
    third = run(ansible, dict(rotated, awx_update_secrets=True, **only_credentials))
    assert third.changed() > 0
    assert credentials["locksmith AWS"]["inputs"]["password"] == rotated["awx_aws_secret_key"]


def test_missing_settings_fail_before_any_api_call(ansible, controller, settings):
    incomplete = {k: v for k, v in settings.items() if k != "awx_ee_image"}
    result = ansible.run_playbook(PLAYBOOK, extra_vars=incomplete)
    assert result.rc != 0
    failed = result.result("Check the required settings are given")
    assert "awx_ee_image" in failed["msg"] and "docs/awx.md" in failed["msg"]
    assert controller.writes == [] and controller.store.get("organizations") is None


def test_a_wrong_token_is_refused(ansible, controller, settings):
    result = ansible.run_playbook(PLAYBOOK, extra_vars=dict(settings, awx_controller_oauthtoken="not-the-token"))
    assert result.rc != 0
    assert "401" in result.result("Ensure the organization exists")["msg"]
    assert controller.refused > 0 and controller.writes == []
