"""How long `audiospective run --demo` takes until /healthz answers 200.

Cold: a data directory that does not exist yet (initdb, migrations, every process).
Warm: the same directory again (the embedded Postgres and schema are reused).

    python -m bench.startup [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from app.config import ROOT
from app.runner import wait_for_200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_healthy(data_dir: Path) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SPOTIFY_CLIENT_ID", "PORT")}
    env["AUDIOSPECTIVE_DATA_DIR"] = str(data_dir)
    process = subprocess.Popen([sys.executable, "-m", "app", "run", "--demo", "--port", str(port),
                                "--simulator-port", str(free_port())],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seconds = wait_for_200(f"http://127.0.0.1:{port}/healthz", lambda: process.poll() is None, timeout=120,
                               interval=0.05)
        if seconds is None:
            raise SystemExit(f"audiospective run did not become healthy (exit status {process.poll()})")
        return seconds
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cold, warm = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            data_dir = Path(tmp) / "var"
            cold.append(time_to_healthy(data_dir))
            warm.append(time_to_healthy(data_dir))
        print(f"run {i + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s", file=sys.stderr)
    print(json.dumps({
        "runs": args.runs,
        "cold_s": {"median": round(statistics.median(cold), 2), "max": round(max(cold), 2)},
        "warm_s": {"median": round(statistics.median(warm), 2), "max": round(max(warm), 2)},
    }))


if __name__ == "__main__":
    main()
