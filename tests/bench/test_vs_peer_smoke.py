"""bench.vs_peer cannot rot silently: its CLI parses and the load generator's accounting (open
loop, reply matching, percentiles, /proc sampling) works on loopback. The full comparison needs
redis-server and the peer's venv, so it is not run here; no timing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench import loadgen
from bench.vs_peer import CASES, table

ROOT = Path(__file__).resolve().parents[2]


def test_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.vs_peer", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for flag in ("--cases", "--no-peer", "--json", "--workdir"):
        assert flag in proc.stdout


def test_percentiles_are_nearest_rank() -> None:
    assert loadgen.pct([], 50) is None
    assert loadgen.pct([3.0, 1.0, 2.0], 50) == 2.0
    assert loadgen.pct(range(1, 101), 99) == 99
    assert loadgen.pct([5.0], 99) == 5.0


def test_proc_accounting_reads_this_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in loadgen.proc_tree(os.getpid())
        assert loadgen.tree_rss_mib(os.getpid()) > 0
        before = loadgen.tree_cpu_seconds(os.getpid())
        deadline = time.process_time() + 0.2
        while time.process_time() < deadline:
            pass
        assert loadgen.tree_cpu_seconds(os.getpid()) > before
    finally:
        child.kill()
        child.wait()


def test_open_loop_matches_replies_by_chat_id() -> None:
    """A webhook receiver that 'replies' at once, as a WAHA recorder would store it."""
    stored: list[dict[str, Any]] = []

    async def webhook(request: Request) -> JSONResponse:
        body = await request.json()
        chat = body["payload"]["from"]
        stored.append({"received_at": time.time(), "body": {"chatId": chat, "text": "hi"}})
        if chat.endswith("1@c.us"):  # one duplicate reply
            stored.append({"received_at": time.time(), "body": {"chatId": chat, "text": "hi"}})
        return JSONResponse({"status": "queued"})

    async def sent(_: Request) -> JSONResponse:
        return JSONResponse(stored)

    app = Starlette(
        routes=[Route("/hook", webhook, methods=["POST"]), Route("/sent", sent, methods=["GET"])]
    )

    async def main() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            chats = [f"3160000000{i}@c.us" for i in range(5)]
            out = await loadgen.open_loop(client, "/hook", chats, 100, text="hallo")
            replies = await loadgen.wait_replies(client, "", chats, timeout=5)
            return loadgen.summarise(out, replies, chats, classify=lambda t: t)

    row = asyncio.run(main())
    assert row["completed"] == 5
    assert row["lost"] == 0
    assert row["duplicate_replies"] == 1
    assert row["reply_kinds"] == {"hi": 5}
    assert row["ack_errors"] == 0
    assert row["e2e_ms"]["p50"] is not None


def test_table_prints_ratios() -> None:
    assert {"small", "full"} <= set(CASES)

    def row(system: str, e2e: float) -> dict[str, Any]:
        return {
            "case": "c",
            "system": system,
            "peer_pool": None,
            "e2e_ms": {"p50": e2e},
            "ack_ms": {},
            "reply_kinds": {},
        }

    text = table({"results": [row("peer", 10.0), row("leadflow[fake]", 20.0)]})
    assert "leadflow[fake] / peer" in text
    assert "2.00x" in text


def test_repeats_report_the_median_run_and_every_run() -> None:
    from bench.vs_peer import cpu_breakdown, median_run, positive_int

    def run(cpu: float, p50: float) -> dict[str, Any]:
        return {
            "cpu_ms_per_msg": cpu,
            "cpu_ms_per_msg_by_process": {"leadflow-temporal": cpu / 2},
            "fakes_cpu_seconds": {"fake-waha": 0.1},
            "e2e_ms": {"p50": p50},
            "ack_ms": {"p50": 5.0},
            "throughput_msg_per_s": 2.0,
        }

    row = median_run([run(129.5, 70.0), run(110.8, 64.0), run(111.5, 65.0)])
    assert row["cpu_ms_per_msg"] == 111.5
    assert row["e2e_ms"] == {"p50": 65.0}  # every figure from the one median run
    assert [r["cpu_ms_per_msg"] for r in row["repeats"]] == [129.5, 110.8, 111.5]
    row.update({"case": "2/s LLM 0", "system": "leadflow[offline]"})
    assert "CPU ms/msg of each run: 129.5 / 110.8 / 111.5" in cpu_breakdown({"results": [row]})
    single = median_run([run(100.0, 60.0)])
    assert "repeats" not in single
    assert positive_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="1 or more"):
        positive_int("0")
