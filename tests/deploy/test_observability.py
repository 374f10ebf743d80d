"""Prometheus, Grafana and the dashboard: the scrape targets are ports the services expose
and the settings use; every series and label the dashboard queries exists in
models/metrics.py or is a documented Temporal series; the panels sales ops asked for exist."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from models.settings import Settings
from tests.deploy.files import (
    DASHBOARD,
    GRAFANA,
    compose_command,
    compose_environment,
    compose_services,
    config_map,
    exposed_ports,
    scrape_targets,
    worker_queue,
)
from tests.deploy.promql import known_series, parse, problems


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_every_scrape_target_is_a_port_its_service_exposes() -> None:
    services = compose_services()
    for job, host, port in scrape_targets():
        assert host in services, f"{job}: {host} is no compose service"
        assert port in exposed_ports(services[host]), f"{job}: {host} does not expose {port}"


def test_leadflow_targets_are_the_ports_the_settings_serve_on() -> None:
    services = compose_services()
    targets = {host: port for job, host, port in scrape_targets() if job.startswith("leadflow")}
    workers = {
        name for name, svc in services.items() if worker_queue(compose_command(svc)) is not None
    }
    assert set(targets) == workers | {"api"}, "every worker service and the API are scraped"
    for host, port in targets.items():
        env = compose_environment(services[host])
        if host == "api":
            assert port == int(env["LEADFLOW_API_PORT"])
            assert env["LEADFLOW_API_HOST"] == "0.0.0.0"
        else:
            assert port == int(env["LEADFLOW_WORKER_METRICS_PORT"])
            assert env["LEADFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"
    # The same ports in Kubernetes, and a worker port that is leadflow's default.
    assert int(config_map()["LEADFLOW_WORKER_METRICS_PORT"]) == targets["worker-crm"]
    assert Settings.model_fields["worker_metrics_port"].default == targets["worker-crm"]
    assert Settings.model_fields["api_port"].default == targets["api"]


def test_grafana_provisions_the_dashboard_and_its_datasource() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/leadflow.yaml").read_text())[
        "providers"
    ]
    compose_grafana = compose_services()["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose_grafana
    assert (GRAFANA / "dashboards" / DASHBOARD.name).is_file()
    for panel in panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], f"{panel['title']} queries nothing"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids


def test_panel_ids_and_positions_are_unique() -> None:
    all_panels = dashboard()["panels"]
    assert len({p["id"] for p in all_panels}) == len(all_panels)
    cells = set()
    for p in all_panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for dx in range(g["w"]):
            for dy in range(g["h"]):
                cell = (g["x"] + dx, g["y"] + dy)
                assert cell not in cells, f"{p['title']} overlaps another panel"
                cells.add(cell)


@pytest.mark.parametrize("title,expr", expressions())
def test_dashboard_queries_only_series_and_labels_that_exist(title: str, expr: str) -> None:
    assert problems(expr, known_series()) == [], title


@pytest.mark.parametrize(
    "expr,problem",
    [
        ("sum(rate(leadflow_turns[5m]))", "unknown series leadflow_turns"),  # no _total
        ('leadflow_turn_seconds_bucket{frist="true"}', "no label(s) ['frist']"),
        ("sum by (tenant) (rate(leadflow_turns_total[5m]))", "unknown label(s) ['tenant']"),
        ("histogram_quantile(0.9, rate(temporal_made_up_bucket[5m]))", "unknown series"),
        ('{__name__="leadflow_turns_total"}', "without a metric name"),
    ],
)
def test_the_dashboard_check_catches_what_does_not_exist(expr: str, problem: str) -> None:
    try:
        found = problems(expr, known_series())
    except ValueError as exc:
        found = [str(exc)]
    assert any(problem in p for p in found), found


def test_the_panels_sales_ops_asked_for() -> None:
    titles = {p["title"] for p in panels()}
    assert {
        "Messages per hour",
        "Time to first reply",
        "Escalation rate",
        "Lead-quality distribution",
        "Cost per message (USD)",
        "CRM sync failures",
        "Queue backlog",
        "Webhook ack p99",
        "Model calls",
        "Model call errors",
        "Circuit breakers",
        "Enrichment throughput",
    } <= titles
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in panels()}
    first_reply = by_title["Time to first reply"]
    assert all('first="true"' in e for e in first_reply)
    assert {e.split("(", 2)[1].split(",")[0] for e in first_reply} == {"0.5", "0.9"}
    backlog = {s.metric for e in by_title["Queue backlog"] for s in parse(e).selectors}
    assert backlog == {"approximate_backlog_count", "leadflow_inbox_backlog"}
