"""`make demo` and `make demo-clean`: the embedded default site.

`up` starts (or reuses) the embedded services on 127.0.0.1, runs the demo playbook against
inventories/smoke exactly as a user runs a playbook, and prints the posture report. `clean` stops
and removes everything `up` created, and nothing else. State (ports, pids) is kept in
.build/demo/state.json so a second `up` reuses what is running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.ansible import run_playbook  # noqa: E402
from tests.harness.moto import CREDENTIALS, MotoServer  # noqa: E402
from tests.harness.openbao import OpenBaoServer  # noqa: E402
from tests.harness.postgres import PostgresCluster  # noqa: E402
from tests.harness.tls import CertFactory, TLSPeer  # noqa: E402

STATE_DIR = REPO / ".build" / "demo"
STATE_FILE = STATE_DIR / "state.json"
# PostgreSQL runs as `postgres`, which may not be able to enter the clone (e.g. under /root).
DATA_DIR = Path(os.environ.get("LOCKSMITH_DEMO_DATA", "/var/tmp/locksmith-demo"))
PLAYBOOK = REPO / "playbooks" / "smoke.yml"
INVENTORY = REPO / "inventories" / "smoke"
BAO_TOKEN = "locksmith-demo-root"  # dev-mode root token of a loopback-only throwaway server


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def load_state() -> dict:
    return json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state, indent=2))


def alive(pid: int | None, port: int | None) -> bool:
    if not pid or not port:
        return False
    try:
        os.kill(pid, 0)
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_postgres(state: dict) -> dict:
    saved = state.get("postgres", {})
    cluster = PostgresCluster(base_dir=str(DATA_DIR / "pg"), port=saved.get("port"))
    if (cluster.datadir / "postmaster.pid").exists() and alive(_pg_pid(cluster), cluster.port):
        step(f"PostgreSQL 15 already up on 127.0.0.1:{cluster.port}")
    else:
        step("starting PostgreSQL 15 (initdb on first run)")
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        os.chmod(DATA_DIR, 0o755)
        cluster.start()
    return {"host": "127.0.0.1", "port": cluster.port, "user": "postgres", "datadir": str(cluster.datadir)}


def _pg_pid(cluster: PostgresCluster) -> int | None:
    try:
        return int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ensure_process(state: dict, key: str, factory, describe: str) -> dict:
    saved = state.get(key, {})
    if alive(saved.get("pid"), saved.get("port")):
        step(f"{describe} already up on 127.0.0.1:{saved['port']}")
        return saved
    step(f"starting {describe}")
    server = factory(saved.get("port"))
    server.start()
    proc = server._proc.proc
    # The server outlives this script: `make demo-clean` stops it through the recorded pid.
    server._proc.proc = None
    return {"pid": proc.pid, "port": server.port}


def ensure_tls_peer(state: dict) -> dict:
    """An HTTPS-like endpoint (openssl s_server) with a 90-day certificate from a private CA."""
    saved = state.get("tls", {})
    if alive(saved.get("pid"), saved.get("port")) and Path(saved.get("ca_file", "")).exists():
        step(f"TLS endpoint already up on 127.0.0.1:{saved['port']}")
        return saved
    step("starting a TLS endpoint (openssl s_server, certificate from a private demo CA)")
    factory = CertFactory(DATA_DIR / "tls")
    peer = TLSPeer(factory.leaf("localhost", days=90)).start()
    proc = peer._proc.proc
    peer._proc.proc = None  # outlives this script, like the other services
    return {"pid": proc.pid, "port": peer.port, "ca_file": str(factory.ca_file)}


def up() -> int:
    started = time.monotonic()
    state = load_state()
    state["postgres"] = ensure_postgres(state)
    bao = ensure_process(
        state,
        "openbao",
        lambda port: OpenBaoServer(port=port, root_token=BAO_TOKEN, log_dir=str(DATA_DIR / "bao")),
        "OpenBao (Vault API)",
    )
    state["openbao"] = dict(bao, url=f"http://127.0.0.1:{bao['port']}", token=BAO_TOKEN)
    moto = ensure_process(state, "moto", lambda port: MotoServer(port=port), "moto (S3 and Secrets Manager API)")
    state["s3"] = dict(
        moto,
        endpoint_url=f"http://127.0.0.1:{moto['port']}",
        access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    state["moto"] = moto
    state["tls"] = ensure_tls_peer(state)
    save_state(state)
    metrics_dir = DATA_DIR / "metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)

    step(f"running {PLAYBOOK.relative_to(REPO)} against {INVENTORY.relative_to(REPO)}")
    run = run_playbook(
        PLAYBOOK, inventory=INVENTORY, extra_vars={"demo_endpoints": state, "demo_metrics_dir": str(metrics_dir)}
    )
    if run.rc != 0 or run.data is None:
        failed = [
            (t["task"]["name"], r.get("msg")) for t in run.tasks() for r in t["hosts"].values() if r.get("failed")
        ]
        for name, msg in failed:
            print(f"    FAILED   {name}: {msg}", file=sys.stderr)
        if not failed:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
        step(f"FAILED: ansible-playbook exited {run.rc}")
        return 1
    for task in run.tasks():
        result = task["hosts"].get("localhost", {})
        status = "changed" if result.get("changed") else ("skipped" if result.get("skipped") else "ok")
        print(f"    {status:8} {task['task']['name']}")
    report(state, run, time.monotonic() - started)
    return 0


def report(state: dict, run, elapsed: float) -> None:
    stats = run.stats.get("localhost", {})
    smoke = run.result("Record what the smoke run saw")["ansible_facts"]["smoke_result"]
    demo = run.result("Record what the modules measured")["ansible_facts"]["demo_result"]
    pending = "not measured yet"
    rpo = demo["rpo_seconds"]
    rotation = demo["rotation"]
    rows = [
        (
            "services",
            f"PostgreSQL {smoke['postgres_version']} 127.0.0.1:{state['postgres']['port']}; "
            f"OpenBao {state['openbao']['url']}; S3 {state['s3']['endpoint_url']} "
            f"buckets {', '.join(smoke['buckets'])}",
        ),
        (
            "run",
            f"{stats.get('ok', 0)} ok, {stats.get('changed', 0)} changed, {stats.get('failures', 0)} failed "
            f"in {elapsed:.1f}s" + ("  (converged: nothing to change)" if not stats.get("changed") else ""),
        ),
        ("hardened", f"{pending}: hardening roles and Lynis index (issue 9)"),
        (
            "backed up",
            f"{demo['backups_valid']} verified copies across {demo['backup_destinations']} buckets "
            f"(two regions); newest good backup is {rpo}s old (RPO target 86400s)",
        ),
        ("recoverable", f"{pending}: DR drill RTO/RPO (issue 5)"),
        (
            "watched",
            f"TLS endpoint status {', '.join(map(str, demo['tls']))}, days left "
            f"{', '.join(map(str, demo['tls_days_left']))}; alert rules unit-tested by make test; "
            "firing on a live stack: molecule/monitoring_server",
        ),
        (
            "secrets",
            f"webhook HMAC key in OpenBao at version {rotation.get('current_version', '?')}, next rotation due in "
            f"{int(rotation.get('next_due_timestamp', time.time()) - time.time())}s (daily); "
            "audit triggers: locksmith.ops.audit_trigger",
        ),
    ]
    print("\nlocksmith.ops posture report: embedded default (smoke stage until playbooks/site.yml lands)")
    for name, value in rows:
        print(f"  {name:12} {value}")
    print(f"  evidence     {STATE_FILE.relative_to(REPO)}, service logs under {DATA_DIR}")


def clean() -> int:
    state = load_state()
    for key in ("openbao", "moto", "tls"):
        pid = state.get(key, {}).get("pid")
        if pid and alive(pid, state[key].get("port")):
            step(f"stopping {key} (pid {pid})")
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    if (DATA_DIR / "pg").exists():
        step("stopping PostgreSQL and removing its data")
        PostgresCluster(base_dir=str(DATA_DIR / "pg"), port=state.get("postgres", {}).get("port")).stop()
    for path in (DATA_DIR, STATE_DIR):
        if path.exists():
            step(f"removing {path}")
            shutil.rmtree(path, ignore_errors=True)
    step("demo removed")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "clean"])
    return up() if parser.parse_args().action == "up" else clean()


if __name__ == "__main__":
    sys.exit(main())
