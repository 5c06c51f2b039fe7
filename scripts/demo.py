"""`make demo`, `make demo-check` and `make demo-clean`: the embedded default site with podman hosts (issue 13).

`up` starts (or reuses) what a real site has: systemd containers in podman for the database, web,
restore and monitoring hosts on the network locksmith-demo, and on the controller's address in that
network OpenBao (the Vault API) and moto (S3, two buckets for two regions). It then runs
playbooks/demo/prepare.yml (what a site already has before us: PostgreSQL with the app's data, a
login for the backup job, TLS material) and playbooks/site.yml exactly as a user runs them, runs the
proofs, and prints the posture report. `check` runs site.yml with --check --diff against the site
`up` left and fails unless it predicts 0 changes (what AWX's nightly check-mode job sees). `clean`
removes everything `up` created (containers, network, processes, files under .build/demo and the
data directory), and nothing else. State (ports, pids) is kept in .build/demo/state.json so a
second `up` reuses what is running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.ansible import ansible_env, run_task  # noqa: E402
from tests.harness.moto import CREDENTIALS, MotoServer  # noqa: E402
from tests.harness.openbao import OpenBaoServer  # noqa: E402
from tests.harness.podman import podman, podman_env, wait_for_systemd  # noqa: E402
from tests.harness.tls import CertFactory  # noqa: E402

STATE_DIR = REPO / ".build" / "demo"
STATE_FILE = STATE_DIR / "state.json"
ENDPOINTS_FILE = STATE_DIR / "endpoints.yml"
KNOWN_HOSTS = STATE_DIR / "known_hosts"  # the demo hosts' SSH keys (inventories/demo/hosts.yml)
ADMIN_KEY = STATE_DIR / "id_ed25519"  # the admin's SSH key: Ansible's and the proofs' login as ops
REPORT_DIR = STATE_DIR / "report"
APP_REPO = STATE_DIR / "app-repo"  # the demo app's source tree, which the secret scan covers
DATA_DIR = Path(os.environ.get("LOCKSMITH_DEMO_DATA", "/var/tmp/locksmith-demo"))
INVENTORY = REPO / "inventories" / "demo"
PREPARE = REPO / "playbooks" / "demo" / "prepare.yml"
SITE = REPO / "playbooks" / "site.yml"
# site.yml's Lynis audit after hardening (harden.yml's last step, tagged so), which the demo runs beside the proofs.
LYNIS_AFTER = REPO / "playbooks" / "harden_lynis_after.yml"
LYNIS_AFTER_TAG = "harden_lynis_after"
IMAGE = "localhost/bookworm-systemd"
NETWORK = "locksmith-demo"
SUBNET = "10.89.42.0/24"
GATEWAY = "10.89.42.1"  # the controller on the demo network: the admin address of the allowlists
LABEL = "io.locksmith.demo=true"
BAO_TOKEN = "locksmith-demo-root"  # dev-mode root token of a throwaway server on the demo network only
# name in the inventory -> (container, address, capabilities). NET_ADMIN lets nftables change the
# container's own network namespace (the firewall role), nothing else.
HOSTS = {
    "db1": ("locksmith-demo-db", "10.89.42.10", ["NET_ADMIN"]),
    "web1": ("locksmith-demo-web", "10.89.42.11", ["NET_ADMIN"]),
    "restore1": ("locksmith-demo-restore", "10.89.42.12", []),
    "mon1": ("locksmith-demo-mon", "10.89.42.13", []),
}


STARTED = time.monotonic()


def step(text: str) -> None:
    """One progress line, with the minutes and seconds since the demo started."""
    minutes, seconds = divmod(int(time.monotonic() - STARTED), 60)
    print(f"==> {minutes:3d}:{seconds:02d}  {text}", flush=True)


def load_state() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def alive(pid: int | None, host: str, port: int | None) -> bool:
    if not pid or not port:
        return False
    try:
        os.kill(pid, 0)
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# ---- hosts -----------------------------------------------------------------------------------------
def ensure_hosts() -> list[str]:
    """Every demo host up and answering; returns the hosts made anew (none of an earlier run's work on them)."""
    made = []
    subprocess.run([str(REPO / "molecule" / "build-image.sh")], check=True, env=podman_env())
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        step(f"creating the podman network {NETWORK} ({SUBNET})")
        podman("network", "create", "--label", LABEL, "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    for name, (container, address, caps) in HOSTS.items():
        state = podman("container", "inspect", "--format", "{{.State.Running}}", container, check=False)
        running = state.returncode == 0 and state.stdout.strip() == "true"
        if running and podman("exec", container, "true", check=False).returncode == 0:
            step(f"host {name} already up ({container}, {address})")
            continue
        if running:
            # podman's record outlived the container's processes (a machine restored without them, say):
            # nothing can start or stop it any more, so it is made again.
            step(f"host {name} is recorded as running but does not answer; removing it ({container})")
            podman("rm", "--force", "--time", "2", container, check=False)
        elif state.returncode == 0:
            step(f"starting host {name} ({container})")
            podman("start", container)
            continue
        step(f"creating host {name} ({container}, {address})")
        made.append(name)
        if KNOWN_HOSTS.exists():  # a new host, a new host key: forget the old one (learnt again on first contact)
            forget = ["ssh-keygen", "-q", "-R", address, "-f", str(KNOWN_HOSTS)]
            subprocess.run(forget, capture_output=True, check=False)
        podman(
            "run", "--detach", "--name", container, "--hostname", name, "--label", LABEL,
            "--network", NETWORK, "--ip", address, "--systemd", "always",
            *[arg for cap in caps for arg in ("--cap-add", cap)],
            IMAGE, "/sbin/init",
        )  # fmt: skip
    for _name, (container, _address, _caps) in HOSTS.items():
        wait_for_systemd(container)
    return made


def bring_up_hosts(state: dict) -> None:
    """ensure_hosts(), and forget the runs done when a host had to be made anew: site.yml's next run there is a
    first run, which changes everything, not a re-run that must change nothing."""
    made = ensure_hosts()
    if made and state.pop("runs_done", None):
        step(f"new host(s) {', '.join(made)}: the next site.yml run is a first run, not judged as a re-run")


# ---- services on the controller ----------------------------------------------------------------------
def ensure_process(state: dict, key: str, factory, describe: str) -> dict:
    saved = state.get(key, {})
    if alive(saved.get("pid"), GATEWAY, saved.get("port")):
        step(f"{describe} already up on {GATEWAY}:{saved['port']}")
        return saved
    step(f"starting {describe} on {GATEWAY}")
    server = factory(saved.get("port"))
    server.start()
    proc = server._proc.proc
    # The server outlives this script: `make demo-clean` stops it through the recorded pid.
    server._proc.proc = None
    return {"pid": proc.pid, "port": server.port}


def ensure_services(state: dict) -> None:
    bao = ensure_process(
        state,
        "openbao",
        lambda port: OpenBaoServer(port=port, root_token=BAO_TOKEN, log_dir=str(DATA_DIR / "bao"), host=GATEWAY),
        "OpenBao (Vault API)",
    )
    state["openbao"] = dict(bao, url=f"http://{GATEWAY}:{bao['port']}", token=BAO_TOKEN)
    moto = ensure_process(state, "moto", lambda port: MotoServer(port=port, host=GATEWAY), "moto (S3 API)")
    state["moto"] = moto
    state["s3"] = dict(
        moto,
        endpoint_url=f"http://{GATEWAY}:{moto['port']}",
        access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    ensure_buckets(state["s3"])
    state["tls"] = ensure_tls()
    state["ssh_public_key"] = ensure_ssh_key()
    ensure_app_repo()


def ensure_buckets(s3: dict) -> None:
    """The two regions' buckets a site has before its first backup (created by its cloud account, not by us)."""
    import boto3  # only `up` needs it

    inventory = yaml.safe_load((INVENTORY / "group_vars" / "all.yml").read_text())
    for bucket in inventory["demo_buckets"]:
        client = boto3.client(
            "s3", endpoint_url=s3["endpoint_url"], region_name=bucket["region"],
            aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"],
        )  # fmt: skip
        if bucket["name"] not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            step(f"creating the bucket {bucket['name']} ({bucket['region']})")
            client.create_bucket(
                Bucket=bucket["name"], CreateBucketConfiguration={"LocationConstraint": bucket["region"]}
            )


def ensure_tls() -> dict:
    """A private demo CA and the web host's certificate (what a site gets from its CA or ACME)."""
    tls_dir = DATA_DIR / "tls"
    fullchain = tls_dir / "web1-fullchain.pem"
    if not fullchain.exists():
        step("issuing the web host's certificate from a private demo CA")
        factory = CertFactory(tls_dir)  # a new CA each time: only when nothing was issued yet
        leaf = factory.leaf("web1", days=90, sans=("web1", HOSTS["web1"][1]), stem="web1")
        fullchain.write_text(leaf.cert_path.read_text() + factory.intermediate.cert_path.read_text())
    return {
        "ca_file": str(tls_dir / "root-ca.crt"),
        "cert_file": str(fullchain),
        "key_file": str(tls_dir / "web1.key"),
    }


def ensure_app_repo() -> None:
    """The app's repository as it should be: configuration read from the environment, no value in the tree."""
    APP_REPO.mkdir(parents=True, exist_ok=True)
    (APP_REPO / "app.py").write_text(
        "import hmac, os\n\n"
        "KEY = os.environ['WEBHOOK_SIGNING_KEY'].encode()\n\n\n"
        "def signed(body: bytes) -> str:\n"
        "    return hmac.new(KEY, body, 'sha256').hexdigest()\n"
    )
    (APP_REPO / "app.env.example").write_text(
        "# Written by the secrets role; never commit values.\nWEBHOOK_SIGNING_KEY=\n"
    )


def ensure_ssh_key() -> str:
    """The admin's key: the proofs log in over SSH from the admin address with it."""
    if not ADMIN_KEY.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "locksmith-demo", "-f", str(ADMIN_KEY)], check=True
        )
    return ADMIN_KEY.with_suffix(".pub").read_text().strip()


def admin_ssh(address: str, *command: str) -> tuple[int, str]:
    """Run `command` on a host as the admin (ops, the demo's key, the settings of inventories/demo/hosts.yml);
    return the exit status (255 when SSH itself failed or hung) and the end of stderr."""
    argv = ["ssh", "-i", str(ADMIN_KEY), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
            f"ops@{address}", *command]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return 255, "ssh did not finish within 30 s"
    return done.returncode, done.stderr.strip()[-120:]


def ssh_ready(address: str) -> bool:
    """Whether the admin already logs in to a host with the demo's key and may sudo (else prepare.yml's first
    play creates the account over podman exec)."""
    return ADMIN_KEY.exists() and admin_ssh(address, "sudo", "-n", "true")[0] == 0


# ---- proofs ------------------------------------------------------------------------------------------
OUTSIDER = "10.89.42.66"  # an address on the site's network that no allowlist holds
BENIGN = "10.89.42.67"
PROBE = r"""
import socket, ssl, sys, time, urllib.request
action, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def connect():
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            return "open"
    except socket.timeout:
        return "timeout"
    except OSError as err:
        return "refused" if isinstance(err, ConnectionRefusedError) else type(err).__name__
if action == "connect":
    print(connect())
else:
    # A client that cannot reach the site before it sends anything proves nothing about a ban.
    before = connect()
    if before != "open":
        print("unreachable-before %s" % before); sys.exit(0)
    context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()  # from the first request: a ban may land while the requests are still going
    for path in sys.argv[4:]:
        try:
            urllib.request.urlopen("https://%s:%d%s" % (host, port, path), context=context, timeout=3).read()
        except Exception:
            pass
    while time.monotonic() - started < 30:
        # The ban was in place when the first refused attempt began (a dropped SYN then takes the 3 s timeout).
        attempt = time.monotonic() - started
        if connect() in ("timeout", "refused"):
            print("banned %.1f" % attempt); break
        time.sleep(0.5)
    else:
        print("open")
"""


def from_address(address: str, *argv: str) -> str:
    """Run the probe in a throwaway container holding `address` on the demo network."""
    out = podman(
        "run", "--rm", "--network", NETWORK, "--ip", address, IMAGE, "python3", "-c", PROBE, *argv, check=False
    )  # fmt: skip
    return out.stdout.strip() or out.stderr.strip()[-200:]


def from_admin(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            return "open"
    except TimeoutError:
        return "timeout"
    except OSError as err:
        return "refused" if isinstance(err, ConnectionRefusedError) else type(err).__name__


def prove_network() -> list[dict]:
    """SSH and PostgreSQL on the database host: open from the admin address, closed from an outside one."""
    db = HOSTS["db1"][1]
    seen = {}
    for service, port in (("ssh", 22), ("postgresql", 5432)):
        seen[service] = {"admin": from_admin(db, port), "outside": from_address(OUTSIDER, "connect", db, str(port))}
    status, error = admin_ssh(db, "true")
    seen["ssh"]["admin_login"] = "ok" if status == 0 else error
    # The control: the same outside address reaches the web host's public port, so "closed" above is the
    # database host's firewall and not a probe that could reach nothing (no route, podman failing to start it).
    control = from_address(OUTSIDER, "connect", HOSTS["web1"][1], "443")
    (REPORT_DIR / "network.json").write_text(json.dumps({**seen, "control_web1_443": control}, indent=2))
    # Closed means refused or timed out; any other outcome (an error, no answer from podman) measured nothing.
    measured = control == "open" and all(s["outside"] in ("open", "refused", "timeout") for s in seen.values())
    leaks = sum(1 for s in seen.values() if s["outside"] == "open") if measured else None
    admin_ok = sum(1 for s in seen.values() if s["admin"] == "open") + (seen["ssh"]["admin_login"] == "ok")
    evidence = str(REPORT_DIR / "network.json")
    return [
        {
            "name": "network_outside_reachable",
            "title": f"Services of db1 reachable from outside the allowlists ({OUTSIDER}: ssh, postgresql)",
            "value": leaks, "target": 0, "compare": "eq", "evidence": evidence,
            "detail": ", ".join(f"{k} {v['outside']}" for k, v in seen.items())
            + f"; control: web1:443 {control} from {OUTSIDER}",
        },
        {
            "name": "network_admin_reachable",
            "title": f"Services of db1 the admin ({GATEWAY}) reaches: ssh port, ssh key login, postgresql",
            "value": admin_ok, "target": 3, "compare": "eq", "evidence": evidence,
            "detail": f"ssh {seen['ssh']['admin']} (login {seen['ssh']['admin_login']}), "
            f"postgresql {seen['postgresql']['admin']}",
        },
    ]  # fmt: skip


ATTACKS = ["/?id=1%27%20OR%20%271%27=%271", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E", "/../../etc/passwd"]
BENIGN_PATHS = ["/", "/search?q=postgres+backup", "/docs/index.html?page=2"]


def prove_intrusion() -> list[dict]:
    """Attack requests from the outside address get it banned; a benign client is not."""
    web = HOSTS["web1"][1]
    # Side by side: the benign client watches for 30 s while the attacker is banned.
    with ThreadPoolExecutor(max_workers=2) as pool:
        attacker = pool.submit(from_address, OUTSIDER, "requests", web, "443", *ATTACKS)
        benign = pool.submit(from_address, BENIGN, "requests", web, "443", *BENIGN_PATHS).result()
        attacked = attacker.result()
    # fail2ban must hold the ban itself: a refused connection alone could be anything.
    jails = podman("exec", HOSTS["web1"][0], "fail2ban-client", "banned", check=False)
    held = OUTSIDER in jails.stdout
    # Lift the ban so that the next demo run proves it again, and the network proof's control can reach web1.
    unban = podman("exec", HOSTS["web1"][0], "fail2ban-client", "unban", OUTSIDER, check=False)
    seconds = float(attacked.split()[1]) if attacked.startswith("banned") and held else None
    (REPORT_DIR / "intrusion.json").write_text(
        json.dumps(
            {"attacker": attacked, "fail2ban_banned": jails.stdout.strip() or jails.stderr.strip()[-200:],
             "unban_rc": unban.returncode, "benign": benign},
            indent=2,
        )
    )  # fmt: skip
    evidence = str(REPORT_DIR / "intrusion.json")
    return [
        {
            "name": "intrusion_ban_seconds", "title": f"Time from the first attack request to a ban of {OUTSIDER}",
            "value": seconds, "unit": "s", "target": 30, "compare": "le", "evidence": evidence,
            "detail": "payloads: SQL injection, XSS, path traversal; "
            + ("held by fail2ban" if held else "not in fail2ban-client banned"),
        },
        {
            "name": "intrusion_benign_banned", "title": f"Benign clients banned ({BENIGN}, ordinary URLs)",
            "value": 0 if benign == "open" else 1, "target": 0, "compare": "eq", "evidence": evidence,
        },
    ]  # fmt: skip


def prove_secret_scan() -> list[dict]:
    """The app's repository scans clean; a planted .env is found by file and line, its value never shown."""
    scan = {"paths": [str(APP_REPO)], "fail_on_findings": False}
    clean = run_task("locksmith.ops.secret_scan", scan)
    planted = APP_REPO / ".env"
    value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example key, not a real one
    planted.write_text(f"DEBUG=1\nAWS_SECRET_ACCESS_KEY={value}\n")
    try:
        found = run_task("locksmith.ops.secret_scan", scan)
    finally:
        planted.unlink()
    after = run_task("locksmith.ops.secret_scan", scan)
    hits = [f for f in found.get("findings", []) if f.get("file") == str(planted)]
    leaked_value = value in json.dumps(found)
    evidence = REPORT_DIR / "secret-scan.json"
    evidence.write_text(json.dumps({"clean": clean.get("findings"), "planted": hits, "after": after.get("findings")}))
    return [
        {
            "name": "secrets_in_repository", "title": "Secrets found in the app's repository (detect-secrets)",
            "value": len(clean.get("findings", [])) if "findings" in clean else None,
            "target": 0, "compare": "eq", "evidence": str(evidence),
        },
        {
            "name": "planted_secret_found", "title": "A planted .env with a key: found by file and line, value hidden",
            "value": 1 if any(h.get("line") == 2 for h in hits) and not leaked_value else 0,
            "target": 1, "compare": "eq", "evidence": str(evidence),
            "detail": ", ".join(f"{h['file'].rsplit('/', 1)[-1]}:{h['line']} {h['type']}" for h in hits),
        },
    ]  # fmt: skip


# What a run leaves behind for people to read: the controller's logs and reports, and on each host its journal (every
# module run is logged there with its arguments, no_log ones masked) and the text under /var/log. Not the demo's own
# settings (the OpenBao token, the SSH key) and not the app's repository (the secret scan's subject).
NOT_OUTPUT = {ENDPOINTS_FILE.name, STATE_FILE.name, KNOWN_HOSTS.name, ADMIN_KEY.name, ADMIN_KEY.name + ".pub"}
HOST_LOGS = r"""
import gzip, json, os, subprocess
logs = {"journal": subprocess.run(["journalctl", "-o", "cat", "--no-pager"], capture_output=True, text=True,
                                  errors="replace", check=True).stdout}
for top, dirs, files in os.walk("/var/log"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) != "/var/log/journal"]
    for name in files:
        path = os.path.join(top, name)
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(path, "rt", errors="replace") as handle:
                logs[path] = handle.read()
        except OSError:
            pass
print(json.dumps(logs))
"""
SECRET_MIN_LENGTH = 8  # shorter strings are not generated secrets and would match by chance


def bao(url: str, path: str, method: str = "GET") -> dict:
    """One answer of the demo's OpenBao (its dev-mode root token) as JSON."""
    if not url.startswith("http://"):
        raise ValueError(f"OpenBao URL {url!r} is not the demo's http:// endpoint")
    request = urllib.request.Request(f"{url}/v1/{path}", method=method, headers={"X-Vault-Token": BAO_TOKEN})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (checked above: the demo's own http URL)
        return json.load(answer)


# Fields of a secret_rotate record's value that name things rather than hold a secret (the PostgreSQL targets' login
# role): they appear in every log that names the role.
NOT_SECRET_FIELDS = {"username"}


def secret_parts(data) -> set[str]:
    """The values a secret_rotate record holds (under each stage's `value`: current, previous, pending)."""
    parts = set()

    def leaves(value):
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in NOT_SECRET_FIELDS:
                    leaves(item)
        elif isinstance(value, str) and len(value) >= SECRET_MIN_LENGTH:
            parts.add(value)

    for stage in (data or {}).values():
        if isinstance(stage, dict) and "value" in stage:
            leaves(stage["value"])
    return parts


def stored_secrets(url: str, mount: str = "secret") -> dict[str, set[str]]:
    """Every value every secret of the store has held: each KV version that is still readable, by secret name."""
    values, folders = {}, [""]
    while folders:
        folder = folders.pop()
        for key in bao(url, f"{mount}/metadata/{folder}", method="LIST")["data"]["keys"]:
            if key.endswith("/"):
                folders.append(folder + key)
                continue
            name = folder + key
            versions = bao(url, f"{mount}/metadata/{name}")["data"]["versions"]
            for version, meta in versions.items():
                if meta.get("destroyed") or meta.get("deletion_time"):
                    continue
                data = bao(url, f"{mount}/data/{name}?version={version}")["data"]["data"]
                values.setdefault(name, set()).update(secret_parts(data))
    return values


def secrets_in(values: dict[str, set[str]], text: str) -> list[str]:
    """The secrets of which any value appears in ``text``, as written or escaped in JSON."""
    return sorted(
        name for name, parts in values.items() if any(p in text or json.dumps(p)[1:-1] in text for p in parts)
    )


def run_output() -> dict[str, str]:
    """Place -> text of everything the run left for people to read (see NOT_OUTPUT and HOST_LOGS)."""
    places = {}
    for path in sorted(STATE_DIR.rglob("*")):
        if path.is_file() and path.name not in NOT_OUTPUT and APP_REPO not in path.parents:
            places[str(path)] = path.read_text(errors="replace")
    for host, (container, _address, _caps) in HOSTS.items():
        out = podman("exec", container, "python3", "-c", HOST_LOGS, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"the logs of {host} could not be read: {out.stderr.strip()[-200:]}")
        places.update({f"{host}:{path}": text for path, text in json.loads(out.stdout).items()})
    return places


def prove_no_secret_logged(url: str) -> list[dict]:
    """No value any secret of the store ever held appears in this site's logs, reports or journals."""
    evidence = REPORT_DIR / "secrets-in-logs.json"
    try:
        values = stored_secrets(url)
        places = run_output()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        values, places, error = {}, {}, f"{type(err).__name__}: {err}"
    else:
        # Secrets whose every value is shorter than SECRET_MIN_LENGTH leave nothing to look for: that proves nothing.
        error = None if any(values.values()) else "the store holds no secret values to look for"
    hits = [{"secret": name, "place": place} for place, text in places.items() for name in secrets_in(values, text)]
    evidence.write_text(json.dumps({"error": error, "secrets": sorted(values), "places": sorted(places), "hits": hits}))
    hosts = sorted({place.split(":", 1)[0] for place in places if not place.startswith("/")})
    return [
        {
            "name": "secrets_in_logs",
            "title": "Secret values in the run's logs and reports and the hosts' journals and /var/log",
            "value": None if error else len(hits), "target": 0, "compare": "eq", "evidence": str(evidence),
            "detail": error or (
                f"{sum(len(p) for p in values.values())} values of {len(values)} secrets, every version; "
                f"{len(places)} files and journals of the controller and {', '.join(hosts)}"
                + ("; found: " + ", ".join(f"{h['secret']} in {h['place']}" for h in hits) if hits else "")
            ),
        },
    ]  # fmt: skip


def clean_failure(result: dict, option: str) -> bool:
    """Refused by the input check before anything ran: failed, naming the option that held the payload, saying
    that nothing was sent, and not crashed. Any other failure (a refused connection, a missing library) would
    not show that the payload was refused."""
    text = result.get("msg", "") + result.get("module_stderr", "") + result.get("exception", "")
    return (
        bool(result.get("failed"))
        and re.sub(r"\[\d+\]$", "", str(result.get("option", ""))) == option
        and "nothing was sent to the server" in result.get("msg", "")
        and not re.search("Traceback|MODULE FAILURE", text)
    )


def prove_injection() -> list[dict]:
    """The seeds' payloads as identifiers to every module that takes one: all fail cleanly, no row is lost."""
    evidence = REPORT_DIR / "injection.json"
    evidence.unlink(missing_ok=True)
    run_play(REPO / "playbooks" / "demo" / "injection.yml", STATE_DIR / "injection.log")
    data = json.loads(evidence.read_text()) if evidence.exists() else None
    # Each run is keyed "<module> <option>", the option that held the payload.
    runs_by_key = (data or {}).get("runs", {})
    outcomes = [(key.split()[-1], result) for key, results in runs_by_key.items() for result in results]
    # A module whose payloads never ran (an empty loop, a skipped task) would count as "0 not rejected".
    tried = bool(runs_by_key) and all(runs_by_key.values())
    unclean = sum(1 for option, r in outcomes if not clean_failure(r, option)) if tried else None
    lost = None if data is None else data["rows_before"] - data["rows_after"]
    runs = len(outcomes)
    return [
        {
            "name": "injection_not_rejected", "title": f"Injection payloads not rejected cleanly (of {runs})",
            "value": unclean, "target": 0, "compare": "eq", "evidence": str(evidence),
            "detail": "audit_trigger, audit_trigger_info, pg_backup, secret_rotate; 5 payloads each identifier",
        },
        {
            "name": "injection_rows_lost", "title": "Rows of the app's tables lost to the payloads",
            "value": lost, "target": 0, "compare": "eq", "evidence": str(evidence),
        },
    ]  # fmt: skip


RECEIVER_LOG = "/var/log/webhook.jsonl"  # the monitoring host's webhook receiver (playbooks/demo/prepare.yml)


def received(since: int = 0) -> list[tuple[str, str, float]]:
    """(alertname, status, time the receiver got it) of every alert the receiver got, in order, from notification
    `since` on."""
    out = podman("exec", HOSTS["mon1"][0], "cat", RECEIVER_LOG, check=False).stdout.splitlines()
    seen = []
    for line in out[since:]:
        try:
            note = json.loads(line)
        except ValueError:
            continue
        body = note.get("body", note)
        # A line without the receiver's own stamp counts from when it was read (later, never earlier).
        at = note.get("received") or time.time()
        seen += [(a.get("labels", {}).get("alertname"), a.get("status"), at) for a in body.get("alerts", [])]
    return seen


def wait_for_alert(name: str, status: str, since: int, timeout: float) -> float | None:
    """Wall-clock time at which the receiver got `name` with `status` (its own timestamp, not when we looked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alertname, alert_status, at in received(since):
            if (alertname, alert_status) == (name, status):
                return at
        time.sleep(1)
    return None


def prometheus_alerts() -> list[str] | None:
    """Names of the alerts Prometheus on the monitoring host holds pending or firing (None: not answering)."""
    url = f"http://{HOSTS['mon1'][1]}:9090/api/v1/alerts"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    out = podman("exec", HOSTS["mon1"][0], "python3", "-c", code, check=False)
    try:
        return [a["labels"]["alertname"] for a in json.loads(out.stdout)["data"]["alerts"]]
    except (ValueError, KeyError):
        return None


def prove_detection(back: threading.Event) -> list[dict]:
    """Stop PostgreSQL on db1: time the PostgresDown notification at the receiver (MTTD), run the runbook's
    playbook when it arrives, time the service's return (MTTR), and time until the alert is resolved.
    `back` is set once PostgreSQL is running again (or was never stopped), for the proofs that need it."""
    try:
        return _prove_detection(back)
    finally:
        back.set()


def _prove_detection(back: threading.Event) -> list[dict]:
    before = prometheus_alerts()
    if before is None or "PostgresDown" in before:
        # No clean fault to time: a firing alert is not notified again before repeat_interval (hours).
        why = "Prometheus on mon1 does not answer" if before is None else "PostgresDown is active before any fault"
        step(f"    {why}: detection not measured")
        return [
            {"name": name, "title": title, "value": None, "unit": "s", "target": target, "compare": "le", "detail": why}
            for name, title, target in (
                ("mttd_seconds", "Time from PostgreSQL down to the PostgresDown notification (MTTD)", 60),
                ("mttr_seconds", "Time from PostgreSQL down to the service verified back (MTTR)", 300),
            )
        ]
    since = len(podman("exec", HOSTS["mon1"][0], "cat", RECEIVER_LOG, check=False).stdout.splitlines())
    # Wall-clock times: the receiver on mon1 stamps each notification with the same (shared kernel) clock.
    fault = time.time()
    podman("exec", HOSTS["db1"][0], "systemctl", "stop", "postgresql@15-main.service")
    step("    fault: PostgreSQL stopped on db1; waiting for PostgresDown at the receiver")
    detected = wait_for_alert("PostgresDown", "firing", since, timeout=600)
    mttd = None if detected is None else round(detected - fault, 1)
    step(f"    PostgresDown notified after {mttd} s; running playbooks/recover_service.yml")
    recovery = run_play(REPO / "playbooks" / "recover_service.yml", STATE_DIR / "recover_service.log", "--limit", "db1")
    recovered = time.time()
    back.set()
    mttr = round(recovered - fault, 1) if recovery["_rc"] == 0 else None
    step(f"    service back after {mttr} s; waiting for Prometheus to resolve the alert")
    # Prometheus resolves the alert on the first evaluation that sees pg_up == 1 and tells Alertmanager at once;
    # the resolved notification follows at the route's group_interval (5 min), which the demo does not wait for.
    resolved = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        active = prometheus_alerts()
        if active is not None and "PostgresDown" not in active:
            resolved = time.time()
            break
        time.sleep(1)
    evidence = REPORT_DIR / "detection.json"
    evidence.write_text(json.dumps({
        "fault": "systemctl stop postgresql@15-main.service on db1",
        "mttd_seconds": mttd, "mttr_seconds": mttr,
        "resolved_after_recovery_seconds": None if resolved is None else round(resolved - recovered, 1),
        "recover_service_rc": recovery["_rc"], "notifications": received(since),
    }, indent=2))  # fmt: skip
    return [
        {
            "name": "mttd_seconds", "title": "Time from PostgreSQL down to the PostgresDown notification (MTTD)",
            "value": mttd, "unit": "s", "target": 60, "compare": "le", "evidence": str(evidence),
            "detail": "production alerting: 10 s scrape and evaluation, for 30 s, critical group_wait 5 s",
        },
        {
            "name": "mttr_seconds", "title": "Time from PostgreSQL down to the service verified back (MTTR)",
            "value": mttr, "unit": "s", "target": 300, "compare": "le", "evidence": str(evidence),
            "detail": "playbooks/recover_service.yml run when the notification arrived",
        },
        {
            "name": "alert_resolved_seconds", "title": "Time from recovery to PostgresDown resolved in Prometheus",
            "value": None if resolved is None else round(resolved - recovered, 1), "unit": "s",
            "target": 60, "compare": "le", "evidence": str(evidence),
        },
    ]  # fmt: skip


# ---- playbooks ---------------------------------------------------------------------------------------
def run_play(playbook: Path, log: Path, *extra: str) -> dict:
    """Run one playbook as a user does; print each play as it starts; return the recap per host."""
    env = ansible_env(
        {
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
            "ANSIBLE_FORCE_COLOR": "0",
            # The log then says how long each task took and lists the slowest at the end.
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        }
    )
    env["CONTAINERS_CONF"] = podman_env()["CONTAINERS_CONF"]
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        str(playbook),
        "-i",
        str(INVENTORY),
        "-e",
        f"@{ENDPOINTS_FILE}",
        *extra,
    ]
    recap: dict = {}
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if line.startswith("PLAY [") and not line.startswith("PLAY RECAP"):
                print(f"    {time.monotonic() - started:6.0f}s  {line[6:].split(']')[0]}", flush=True)
            elif match := re.match(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", line):
                host, ok, changed, unreachable, failed = match.groups()
                recap[host] = {
                    "ok": int(ok),
                    "changed": int(changed),
                    "unreachable": int(unreachable),
                    "failed": int(failed),
                }
            elif line.startswith(("fatal:", "failed:")) or "FAILED!" in line:
                print(f"    {line.rstrip()[:300]}", flush=True)
        proc.wait()
    recap["_rc"] = proc.returncode
    recap["_seconds"] = round(time.monotonic() - started, 1)
    return recap


def changed_count(recap: dict) -> int | None:
    """Changes over every host of a run_play recap (its "_rc"/"_seconds" entries are not hosts); None when the
    recap lacks a demo host, so a recap that could not be read is not taken for a run that changed nothing."""
    if not set(HOSTS) <= set(recap):
        return None
    return sum(r["changed"] for h, r in recap.items() if not h.startswith("_"))


def write_endpoints(state: dict) -> None:
    endpoints = {
        "demo_endpoints": {
            "openbao": {"url": state["openbao"]["url"], "token": state["openbao"]["token"]},
            "s3": {k: state["s3"][k] for k in ("endpoint_url", "access_key", "secret_key")},
            "tls": state["tls"],
            "ssh_public_key": state["ssh_public_key"],
            "admin_address": GATEWAY,
        },
        "demo_report_dir": str(REPORT_DIR),
        "demo_app_repo": str(APP_REPO),
    }
    ENDPOINTS_FILE.write_text(yaml.safe_dump(endpoints, sort_keys=False))
    ENDPOINTS_FILE.chmod(0o600)


def prepared_fingerprint() -> str:
    """What prepare.yml's outcome depends on: its playbooks and inventory, the endpoints, and which containers."""
    digest = hashlib.sha256()
    for path in sorted([*PREPARE.parent.rglob("*"), *INVENTORY.rglob("*"), ENDPOINTS_FILE]):
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    for container, _address, _caps in HOSTS.values():
        found = podman("container", "inspect", "--format", "{{.Id}}", container, check=False)
        digest.update(found.stdout.strip().encode() + b"\0")
    return digest.hexdigest()


def up() -> int:
    started, run_started = time.monotonic(), time.time()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    state = load_state()
    bring_up_hosts(state)
    ensure_services(state)
    save_state(state)
    write_endpoints(state)
    runs = {}
    bootstrap = [name for name, (_c, address, _caps) in HOSTS.items() if not ssh_ready(address)]
    extra = {
        "prepare": ["-e", "demo_bootstrap_hosts=" + (",".join(bootstrap) or "demo_containers:!demo_containers")],
        # Lynis audits each host for about a minute of both cores; it runs below, beside the proofs, which
        # mostly wait (for an alert, for a ban) and change no setting it scores.
        "site": ["--skip-tags", LYNIS_AFTER_TAG],
    }
    # prepare.yml only builds the site as it was before us. A run that went to the end leaves it so; on the same
    # containers, with the same playbooks and endpoints, running it again changes nothing (about 20 s).
    fingerprint = prepared_fingerprint()
    plays = (("prepare", PREPARE), ("site", SITE))
    if not bootstrap and state.pop("prepared", None) == fingerprint:
        step(f"{PREPARE.relative_to(REPO)}: done by the last complete run on these hosts, with these files")
        plays = plays[1:]
    save_state(state)  # until this run ends, the proofs may leave the site in between (PostgreSQL stopped)
    for name, playbook in plays:
        step(f"running {playbook.relative_to(REPO)} (log: .build/demo/{name}.log)")
        runs[name] = run_play(playbook, STATE_DIR / f"{name}.log", *extra.get(name, []))
        if runs[name]["_rc"] != 0:
            step(f"FAILED: {playbook.name} exited {runs[name]['_rc']}; see .build/demo/{name}.log")
            return 1
    state["last_run"] = runs
    save_state(state)
    changed = changed_count(runs["site"])
    step(f"site.yml: {changed} changed in {runs['site']['_seconds']}s" + ("  (converged)" if changed == 0 else ""))
    promises = []
    if state.get("runs_done"):  # a re-run of a converged site must change nothing
        promises.append(
            {
                "name": "site_converged",
                "title": "Changes a re-run of site.yml made (idempotence)",
                "value": changed,
                "target": 0,
                "compare": "eq",
                "evidence": str(STATE_DIR / "site.log"),
            }
        )
    state["runs_done"] = state.get("runs_done", 0) + 1
    save_state(state)
    results = {}
    with ThreadPoolExecutor(max_workers=3) as pool:
        # Lynis (about a minute of both cores) and the detection proof (mostly waiting for the alert) take longest:
        # they start first. The others change nothing Lynis scores.
        step(f"auditing every host with Lynis ({LYNIS_AFTER.relative_to(REPO)}, beside the proofs)")
        lynis = pool.submit(run_play, LYNIS_AFTER, STATE_DIR / "lynis_after.log")
        step("proving: detection and recovery (beside the next proofs)")
        back = threading.Event()
        detection = pool.submit(prove_detection, back)
        for name, prove in (("intrusion", prove_intrusion), ("secret scan", prove_secret_scan)):
            step(f"proving: {name}")
            results[name] = prove()
        # network and injection use PostgreSQL on db1, which the detection proof stops: they wait until it is back.
        back.wait()
        step("proving: network and injection")
        network = pool.submit(prove_network)
        results["injection"] = prove_injection()
        results["network"] = network.result()
        results["detection"] = detection.result()
        audited = lynis.result()
        step(
            f"Lynis after hardening: exit {audited['_rc']} in {audited['_seconds']}s (log: .build/demo/lynis_after.log)"
        )
        if audited["_rc"] != 0:
            step("FAILED: the Lynis audit after hardening; see .build/demo/lynis_after.log")
            return 1
    # Last, so that it reads what every step and proof above wrote.
    step("proving: no secret value in the logs")
    results["secret logs"] = prove_no_secret_logged(state["openbao"]["url"])
    for name in ("network", "intrusion", "injection", "secret scan", "detection", "secret logs"):
        promises += results[name]
    proofs_file = STATE_DIR / "proofs.yml"
    proofs_file.write_text(yaml.safe_dump({"posture_proofs": promises}, sort_keys=False))
    step("writing the posture report (playbooks/posture.yml)")
    posture = run_play(REPO / "playbooks" / "posture.yml", STATE_DIR / "posture.log", "-e", f"@{proofs_file}",
                       "-e", f"posture_dest={REPORT_DIR}")  # fmt: skip
    report_md = REPORT_DIR / "posture.md"
    # Only this run's report: a posture.yml that failed before writing leaves the last run's file behind.
    if report_md.exists() and report_md.stat().st_mtime >= run_started:
        print("\n" + report_md.read_text())
        print(f"HTML: {REPORT_DIR / 'posture.html'}  JSON: {REPORT_DIR / 'posture.json'}")
    else:
        step("FAILED: playbooks/posture.yml wrote no report this run; see .build/demo/posture.log")
    state["prepared"] = fingerprint
    save_state(state)
    step(f"demo finished in {time.monotonic() - started:.0f}s")
    return 0 if posture["_rc"] == 0 else 1


def clean() -> int:
    state = load_state()
    for key in ("openbao", "moto"):
        pid = state.get(key, {}).get("pid")
        if pid:
            try:
                os.killpg(pid, signal.SIGTERM)
                step(f"stopped {key} (pid {pid})")
            except ProcessLookupError:
                pass
    for _name, (container, _address, _caps) in HOSTS.items():
        if podman("container", "exists", container, check=False).returncode == 0:
            step(f"removing host {container}")
            podman("rm", "--force", "--time", "5", container, check=False)
    if podman("network", "exists", NETWORK, check=False).returncode == 0:
        step(f"removing the network {NETWORK}")
        podman("network", "rm", NETWORK, check=False)
    for path in (DATA_DIR, STATE_DIR):
        if path.exists():
            step(f"removing {path}")
            shutil.rmtree(path, ignore_errors=True)
    step("demo removed")
    return 0


def check() -> int:
    """site.yml --check --diff on the converged site: every step predicts its changes, so 0 means no drift."""
    if not ENDPOINTS_FILE.exists():
        step("the demo is not up: run `make demo` first")
        return 2
    step("running playbooks/site.yml --check --diff (log: .build/demo/site-check.log)")
    recap = run_play(SITE, STATE_DIR / "site-check.log", "--check", "--diff")
    changed = changed_count(recap)
    step(f"site.yml --check --diff: exit {recap['_rc']}, {changed} changes predicted in {recap['_seconds']}s")
    return 0 if recap["_rc"] == 0 and changed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "check", "clean"])
    return {"up": up, "check": check, "clean": clean}[parser.parse_args().action]()


if __name__ == "__main__":
    sys.exit(main())
