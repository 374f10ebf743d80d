"""Open-loop load generation and /proc accounting for the benchmarks.

- `open_loop`: send i is scheduled at `start + i / rate` whatever earlier answers did; each send
  records its wall-clock send time (`time.time()`, compared with the fake WAHA's own
  `time.time()` on the same host) and its ack latency (the webhook's HTTP response time).
- `wait_replies` / `summarise`: replies are counted at a WAHA recorder (`GET /sent` answering
  `[{"received_at": ..., "body": {"chatId": ..., "text": ...}}]`, the shape of
  `../shared/peers/fakes.py waha`) and matched to sends by chatId.
- `tree_cpu_seconds` / `tree_rss_mib`: utime+stime and VmRSS summed over a process and its live
  descendants, read from /proc (not estimated).

Percentiles are nearest-rank, as in the peer's runner. The open-loop schedule and the
percentile are `leadflow simulate`'s (workers/simulator.py): one rule for both.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from workers.simulator import pct as pct  # re-exported: the benchmarks use loadgen.pct
from workers.simulator import schedule_open_loop

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def proc_tree(root: int) -> list[int]:
    """A process and its live descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, frontier = [root], [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in tree:
                tree.append(child)
                frontier.append(child)
    return tree


def pid_cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pid_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_cpu_seconds(root: int) -> float:
    """utime+stime summed over the live process tree (children that exited are not counted,
    so sample before and after a case while the processes run)."""
    return sum(pid_cpu_seconds(pid) for pid in proc_tree(root))


def tree_rss_mib(root: int) -> float:
    """VmRSS summed over the process tree (shared pages counted once per process)."""
    return round(sum(pid_rss_kib(pid) for pid in proc_tree(root)) / 1024, 1)


def cpu_snapshot(roots: dict[str, int]) -> dict[str, float]:
    return {name: tree_cpu_seconds(pid) for name, pid in roots.items()}


# ---- load ---------------------------------------------------------------------------------------


def waha_message(chat_id: str, i: int, text: str) -> dict[str, Any]:
    """A WAHA `message` webhook body (the fields both receivers read; ../shared/wire/waha.md §2).

    The WhatsApp part of the id is random, as WhatsApp's are: leadflow deduplicates on it across
    a contact's id forms (`{fromMe}_{id}`), so a counter would collide between contacts and runs."""
    return {
        "event": "message",
        "session": "default",
        "payload": {
            "id": f"false_{chat_id}_{i:06d}{secrets.token_hex(7).upper()}",
            "from": chat_id,
            "fromMe": False,
            "body": text,
            "timestamp": int(time.time()),
        },
    }


@dataclass
class Sent:
    send_at: dict[str, float] = field(default_factory=dict)  # chatId -> time.time() before POST
    acks_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dispatch_s: float = 0.0


async def open_loop(
    client: httpx.AsyncClient,
    url: str,
    chat_ids: list[str],
    rate: float,
    *,
    text: str,
    accept: Callable[[httpx.Response], bool] = lambda r: r.is_success,
) -> Sent:
    """POST one webhook per chatId at `rate` msg/s, open loop; wait for every ack."""
    out = Sent()

    async def send(i: int, chat_id: str) -> None:
        body = waha_message(chat_id, i, text)
        out.send_at[chat_id] = time.time()
        t0 = time.perf_counter()
        try:
            response = await client.post(url, json=body)
            out.acks_ms.append((time.perf_counter() - t0) * 1000)
            if not accept(response):
                out.errors.append(f"{response.status_code} {response.text[:80]}")
        except httpx.HTTPError as exc:
            out.errors.append(repr(exc))

    await schedule_open_loop(len(chat_ids), rate, lambda i: send(i, chat_ids[i]))
    if out.send_at:
        out.dispatch_s = max(out.send_at.values()) - min(out.send_at.values())
    return out


async def wait_replies(
    client: httpx.AsyncClient,
    waha_url: str,
    chat_ids: Iterable[str],
    *,
    timeout: float,
    check: Callable[[], Awaitable[None] | None] | None = None,
) -> list[dict[str, Any]]:
    """Poll the WAHA recorder until every chatId has a reply or `timeout` seconds passed."""
    want = set(chat_ids)
    deadline = time.monotonic() + timeout
    while True:
        sent: list[dict[str, Any]] = (await client.get(f"{waha_url}/sent", timeout=30)).json()
        if want <= {s["body"].get("chatId") for s in sent} or time.monotonic() > deadline:
            return sent
        if check is not None:
            result = check()
            if result is not None:
                await result
        await asyncio.sleep(0.1)


def summarise(
    sent: Sent,
    replies: list[dict[str, Any]],
    chat_ids: list[str],
    *,
    classify: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Ack and e2e percentiles, throughput, lost/duplicates and (optionally) reply kinds."""
    wanted = set(chat_ids)
    first: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for reply in replies:
        chat_id = reply["body"].get("chatId")
        if chat_id not in wanted:
            continue
        if chat_id in first:
            duplicates += 1
        else:
            first[chat_id] = reply
    e2e = [
        (first[c]["received_at"] - sent.send_at[c]) * 1000
        for c in chat_ids
        if c in first and c in sent.send_at
    ]
    completed = len(e2e)
    kinds: dict[str, int] = {}
    if classify is not None:
        for reply in first.values():
            kind = classify(str(reply["body"].get("text", "")))
            kinds[kind] = kinds.get(kind, 0) + 1
    span = 0.0
    if completed and sent.send_at:
        span = max(r["received_at"] for r in first.values()) - min(sent.send_at.values())
    n = len(chat_ids)
    return {
        "n": n,
        "achieved_send_rate_per_s": round((n - 1) / sent.dispatch_s, 2)
        if sent.dispatch_s > 0
        else None,
        "ack_ms": {
            "p50": pct(sent.acks_ms, 50),
            "p99": pct(sent.acks_ms, 99),
            "max": pct(sent.acks_ms, 100),
        },
        "ack_errors": len(sent.errors),
        "error_samples": sent.errors[:3],
        "e2e_ms": {"p50": pct(e2e, 50), "p99": pct(e2e, 99), "max": pct(e2e, 100)},
        "completed": completed,
        "lost": n - completed,
        "duplicate_replies": duplicates,
        "throughput_msg_per_s": round(completed / span, 2) if span > 0 else None,
        "window_s": round(span, 2),
        "reply_kinds": kinds,
    }
