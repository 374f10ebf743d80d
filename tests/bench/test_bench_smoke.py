"""The enrichment benchmark still runs end to end (20 rows, short latencies). No timing asserted:
the benchmark measures, the test suite only keeps it from rotting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_with_20_rows(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.enrichment",
            "--rows",
            "20",
            "--baseline-rows",
            "2",
            "--workers",
            "1",
            "--site-latency-ms",
            "20",
            "--llm-latency-ms",
            "20",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(figures),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "records/s" in proc.stdout
    report = json.loads(figures.read_text())
    job = report["job"]
    assert job["status"] == "completed"
    assert job["done"] + job["failed"] == 20
    assert job["result_rows"] == 20
    assert job["peak_worker_rss_mib"] > 0
    assert report["baseline"]["done"] + report["baseline"]["failed"] == 2
