"""tls_check's core (certificate, trust, protocol checks) against sslyze on the same local endpoints.

Starts PEERS `openssl s_server` peers (private CA, valid chain) and checks each REPEAT times, so the
default is 50 x 4 = 200 endpoint checks. tls_check runs in this process (its module_utils, the code
the module runs); sslyze runs in its own venv, because it pins cryptography < 47 and the collection's
venv holds cryptography 50. Both get the same concurrency. sslyze is asked for what it needs to
answer the same questions: certificate_info (chain, trust, OCSP stapling) and the protocol scans
(SSL 2.0/3.0, TLS 1.0-1.3); it answers them by trying every cipher suite, which is its design.

    .venv/bin/python benchmarks/tls_check_vs_sslyze.py [--peers 50] [--repeat 4] [--concurrency 16]

The sslyze venv is made on first use: python3 -m venv .build/bench-venv && .build/bench-venv/bin/pip
install sslyze==6.3.1.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tests.conftest as _conftest  # noqa: E402 - installs the collection loader
from ansible_collections.locksmith.ops.plugins.module_utils import _tls  # noqa: E402
from tests.harness.tls import CertFactory, TLSPeer  # noqa: E402

BENCH_VENV = _conftest.REPO / ".build" / "bench-venv"
SSLYZE_VERSION = "6.3.1"

SSLYZE_RUNNER = r"""
import json, sys, time
from pathlib import Path
from sslyze import (Scanner, ServerScanRequest, ServerNetworkLocation, ScanCommand,
                    ScanCommandsExtraArguments, CertificateInfoExtraArgument, ServerScanStatusEnum)
spec = json.load(sys.stdin)
commands = {ScanCommand.CERTIFICATE_INFO, ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES,
            ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES, ScanCommand.TLS_1_2_CIPHER_SUITES,
            ScanCommand.TLS_1_3_CIPHER_SUITES}
extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(spec["ca_file"])))
requests = [ServerScanRequest(server_location=ServerNetworkLocation("localhost", port, "127.0.0.1"),
                              scan_commands=commands, scan_commands_extra_arguments=extra) for port in spec["ports"]]
started = time.perf_counter()
scanner = Scanner(concurrent_server_scans_limit=spec["concurrency"])
scanner.queue_scans(requests)
done = 0
for result in scanner.get_results():
    done += result.scan_status == ServerScanStatusEnum.COMPLETED
print(json.dumps({"seconds": time.perf_counter() - started, "completed": done}))
"""


def ensure_sslyze() -> Path:
    """The bench venv's python, with sslyze installed (made once)."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import sslyze"], capture_output=True, check=False)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sslyze==%s" % SSLYZE_VERSION], check=True)
    return python


def run_tls_check(ports: list[int], ca_file: str, concurrency: int) -> tuple[float, list]:
    params = dict(_tls_defaults(), ca_file=ca_file, concurrency=concurrency)
    params["endpoints"] = [
        dict(_endpoint_defaults(), host="127.0.0.1", port=port, server_name="localhost", name="%d-%d" % (port, i))
        for i, port in enumerate(ports)
    ]
    started = time.perf_counter()
    results = _tls.run_checks(params)  # the trust store is loaded inside, as in a module run
    return time.perf_counter() - started, results


def _tls_defaults() -> dict:
    return {k: v.get("default") for k, v in _tls.tls_check_argument_spec().items()}


def _endpoint_defaults() -> dict:
    return {k: v.get("default") for k, v in _tls.endpoint_spec().items()}


def run_sslyze(python: Path, ports: list[int], ca_file: str, concurrency: int) -> dict:
    spec = json.dumps({"ports": ports, "ca_file": ca_file, "concurrency": concurrency})
    out = subprocess.run([str(python), "-c", SSLYZE_RUNNER], input=spec, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--skip-sslyze", action="store_true")
    args = parser.parse_args()

    python = None if args.skip_sslyze else ensure_sslyze()
    factory = CertFactory(tempfile.mkdtemp(prefix="locksmith-bench-tls-"))
    peers = []
    try:
        for _peer_index in range(args.peers):
            peers.append(TLSPeer(factory.leaf()).start())
        ports = [peer.port for peer in peers] * args.repeat
        total = len(ports)
        print(
            "endpoints: %d (%d s_server peers x %d), concurrency %d"
            % (total, args.peers, args.repeat, args.concurrency)
        )
        seconds, results = run_tls_check(ports, str(factory.ca_file), args.concurrency)
        ok = sum(r["status"] == "ok" for r in results)
        ours = total / seconds
        print("tls_check: %6.2f s  %8.1f endpoints/s  (%d/%d ok)" % (seconds, ours, ok, total))
        if python is None:
            return
        theirs = run_sslyze(python, ports, str(factory.ca_file), args.concurrency)
        rate = total / theirs["seconds"]
        print(
            "sslyze %s: %6.2f s  %8.1f endpoints/s  (%d/%d completed)"
            % (SSLYZE_VERSION, theirs["seconds"], rate, theirs["completed"], total)
        )
        print("ratio: tls_check is %.1fx sslyze's throughput (target >= 10x)" % (ours / rate))
    finally:
        for peer in peers:
            peer.stop()
        factory.cleanup()


if __name__ == "__main__":
    main()
