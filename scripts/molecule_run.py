"""Run molecule scenarios, N at a time, and fail when any fails (`make molecule`).

Each scenario's output goes to .build/molecule/<scenario>.log; a line per scenario says whether it passed
and how long it took, and the tail of every failed scenario's log is printed at the end. Scenarios do not
share anything on the host: each has its own container (named after the scenario) and network namespace.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOG_DIR = REPO / ".build" / "molecule"


def run(scenario: str) -> tuple[str, int, float]:
    started = time.monotonic()
    log = LOG_DIR / f"{scenario}.log"
    with log.open("w") as out:
        rc = subprocess.run(
            [str(Path(sys.executable).parent / "molecule"), "test", "-s", scenario],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    seconds = time.monotonic() - started
    print(f"== molecule {scenario}: {'passed' if rc == 0 else f'FAILED (exit {rc})'} in {seconds:.0f}s", flush=True)
    return scenario, rc, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="+")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MOLECULE_JOBS", "2")))
    args = parser.parse_args()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run, args.scenarios))
    failed = [(scenario, rc) for scenario, rc, _seconds in results if rc != 0]
    for scenario, _rc in failed:
        print(f"\n---- tail of .build/molecule/{scenario}.log ----")
        print("\n".join((LOG_DIR / f"{scenario}.log").read_text(errors="replace").splitlines()[-80:]))
    total = time.monotonic() - started
    passed = len(results) - len(failed)
    print(f"== molecule: {passed} passed, {len(failed)} failed, {args.jobs} at a time, {total:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
