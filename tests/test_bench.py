"""Benchmarks run as documented: `python -m bench.<name>` ends with a JSON summary line and
exits 0 (small sizes here; the figures are the README's business, not the tests')."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.config import ROOT


@pytest.mark.parametrize("args", [
    ["bench.import", "--rows", "3000", "--preload-plays", "2000", "--account-rows", "3000"],
    ["bench.completeness", "--users", "12", "--days", "0.5", "--policies", "adaptive"],
    ["bench.dashboard", "--plays", "20000", "--others", "0", "--cold", "1", "--warm", "1"],
    ["bench.export", "--plays", "3000", "--small", "1000"],
    ["bench.ingest", "--clients", "2", "--users", "2", "--seconds", "1", "--web-workers", "1", "--lastfm-rows", "500"],
])
def test_a_benchmark_prints_its_summary_last_and_exits_0(args):
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(summary, dict) and summary
