"""The `leadflow` CLI as an operator uses it: tenants, their settings, plugins, help and the
errors a typo produces. Every command runs against a SQLite file in the test's directory."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from models.db import Database
from models.repo import tenants as tenant_repo
from workers.cli import app

SECRET = "cli-test-secret"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", SECRET)
    # `worker` and `api` refuse to run without a payload key (models/payload_codec.py).
    monkeypatch.setenv("LEADFLOW_PAYLOAD_KEYS", "7ZitmTi9GtSiUxeEz1OFhX7SrA6pDxU9yaXhW6uhdlQ=")
    # Wide enough that rich neither wraps the messages nor truncates table cells.
    monkeypatch.setenv("COLUMNS", "240")
    return url


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def text(result: Result) -> str:
    """Everything the user saw (stdout and stderr), whitespace collapsed."""
    return re.sub(r"\s+", " ", result.output)


def _tenant_for_key(url: str, key: str) -> str | None:
    async def lookup() -> str | None:
        db = Database(url)
        try:
            async with db.session() as session:
                tenant = await tenant_repo.tenant_for_key(session, key=key)
                return tenant.id if tenant else None
        finally:
            await db.dispose()

    return asyncio.run(lookup())


def _stored_settings(url: str, tenant_id: str) -> tuple[str, dict[str, object]]:
    """(the raw stored column, the settings decrypted with the key)."""

    async def load() -> tuple[str, dict[str, object]]:
        db = Database(url)
        try:
            async with db.session() as session:
                tenant = await tenant_repo.get_tenant(session, tenant_id=tenant_id)
                assert tenant is not None
                from models.tenant import dump_settings

                decrypted = tenant_repo.tenant_settings(tenant, secret_key=SECRET)
                return tenant.settings_encrypted, dump_settings(decrypted)
        finally:
            await db.dispose()

    return asyncio.run(load())


def test_tenant_create_prints_a_working_key(db_url: str) -> None:
    created = run("tenant", "create", "Acme Cars", "--json")
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    assert body["tenant_id"] == "acme-cars"
    assert body["name"] == "Acme Cars"
    assert body["api_key"].startswith("lf_")
    assert _tenant_for_key(db_url, body["api_key"]) == "acme-cars"
    assert _tenant_for_key(db_url, body["api_key"] + "x") is None

    again = run("tenant", "create", "Acme Cars", "--json")
    assert again.exit_code != 0
    assert "tenant 'acme-cars' already exists" in text(again)
    assert "Traceback" not in again.output

    # Without --json the key is printed for a human, with the warning that it is shown once.
    other = run("tenant", "create", "Zeta Motors", "--id", "zeta", "--playbook", "b2b_outreach")
    assert other.exit_code == 0, other.output
    key = re.search(r"API key: (lf_\S+)", other.output)
    assert key and _tenant_for_key(db_url, key.group(1)) == "zeta"
    assert "keep it now" in other.output

    listed = run("tenant", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["name"]) for r in rows] == [
        ("acme-cars", "Acme Cars"),
        ("zeta", "Zeta Motors"),
    ]
    assert all(r["created_at"] for r in rows)

    table = run("tenant", "list")
    assert "acme-cars" in table.output and "Zeta Motors" in table.output

    shown = run("tenant", "show", "zeta")
    assert json.loads(shown.stdout)["playbook"] == "b2b_outreach"


def test_tenant_create_refuses_an_unknown_playbook(db_url: str) -> None:
    result = run("tenant", "create", "Acme", "--playbook", "used_boats")
    assert result.exit_code != 0
    assert "unknown playbook 'used_boats'" in text(result)
    assert "car_dealership" in text(result)
    assert json.loads(run("tenant", "list", "--json").stdout) == []


@pytest.mark.parametrize("bad_id", ["Acme_Cars", "-acme", "a" * 64, "acme cars"])
def test_tenant_create_refuses_an_invalid_id(db_url: str, bad_id: str) -> None:
    result = run("tenant", "create", "Acme", "--id", bad_id)
    assert result.exit_code != 0
    assert "must be lowercase letters, digits and dashes" in text(result)
    assert json.loads(run("tenant", "list", "--json").stdout) == []


def test_configure_then_show_masks_secrets(db_url: str, tmp_path: Path) -> None:
    assert run("tenant", "create", "Acme Cars").exit_code == 0
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        "timezone: Europe/Amsterdam\n"
        "waha:\n"
        "  base_url: http://waha:3000\n"
        "  api_key: waha-key-s3cret\n"
        "  webhook_secret: hmac-s3cret\n"
        "specialists:\n"
        "  - {name: Sanne, role: finance, whatsapp: '31687654321'}\n"
    )
    configured = run("tenant", "configure", "acme-cars", "--file", str(settings_file))
    assert configured.exit_code == 0, configured.output
    assert "settings of acme-cars saved" in text(configured)

    shown = run("tenant", "show", "acme-cars")
    assert shown.exit_code == 0, shown.output
    assert "s3cret" not in shown.output
    current = json.loads(shown.stdout)
    assert current["timezone"] == "Europe/Amsterdam"
    assert current["waha"]["base_url"] == "http://waha:3000"
    assert current["waha"]["api_key"] == "**********"
    assert current["waha"]["webhook_secret"] == "**********"
    assert current["specialists"][0]["name"] == "Sanne"

    # The secret is kept (encrypted at rest), not lost by masking.
    raw, decrypted = _stored_settings(db_url, "acme-cars")
    assert "s3cret" not in raw
    assert decrypted["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": "waha-key-s3cret",
        "session": "default",
        "webhook_secret": "hmac-s3cret",
    }

    # A second file is merged at the top level: waha stays as it was.
    patch = tmp_path / "tz.json"
    patch.write_text('{"timezone": "UTC"}')
    assert run("tenant", "configure", "acme-cars", "-f", str(patch)).exit_code == 0
    _, decrypted = _stored_settings(db_url, "acme-cars")
    assert decrypted["timezone"] == "UTC"
    assert decrypted["waha"]["api_key"] == "waha-key-s3cret"  # type: ignore[index]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("wahaa:\n  base_url: http://waha:3000\n", ["wahaa", "Extra inputs are not permitted"]),
        ("smtp:\n  host: smtp.example\n  port: lots\n", ["smtp.port", "valid integer"]),
        ("specialists:\n  - {role: finance}\n", ["specialists.0.name", "Field required"]),
        ("waha: [unclosed\n", ["is not valid YAML/JSON"]),
        ("- just\n- a list\n", ["must hold a mapping"]),
        ("playbook: used_boats\n", ["used_boats", "car_dealership"]),
    ],
    ids=["unknown-key", "wrong-type", "missing-field", "not-yaml", "not-a-mapping", "playbook"],
)
def test_configure_refuses_a_bad_file(
    db_url: str, tmp_path: Path, content: str, expected: list[str]
) -> None:
    assert run("tenant", "create", "Acme Cars").exit_code == 0
    before = run("tenant", "show", "acme-cars").stdout
    bad = tmp_path / "settings.yaml"
    bad.write_text(content)
    result = run("tenant", "configure", "acme-cars", "--file", str(bad))
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in text(result), result.output
    assert run("tenant", "show", "acme-cars").stdout == before


def test_configure_and_show_unknown_tenant(db_url: str, tmp_path: Path) -> None:
    good = tmp_path / "settings.yaml"
    good.write_text("timezone: UTC\n")
    for args in (("show", "nobody"), ("configure", "nobody", "--file", str(good))):
        result = run("tenant", *args)
        assert result.exit_code != 0
        assert "no tenant 'nobody'" in text(result)
    missing = run("tenant", "configure", "nobody", "--file", str(tmp_path / "absent.yaml"))
    assert missing.exit_code == 2 and "does not exist" in text(missing)


def test_plugins_lists_the_builtin_ones(db_url: str) -> None:
    result = run("plugins")
    assert result.exit_code == 0, result.output
    names = {line.split("│")[1].strip() for line in result.output.splitlines() if "│" in line}
    assert {"builtin", "enrichment", "crm"} <= names
    assert "activities.plugin:builtin_plugin" in result.output
    assert "hubspot" in result.output and "waha" in result.output


def test_help_mentions_the_commands_and_options(db_url: str) -> None:
    top = run("--help")
    assert top.exit_code == 0
    for command in ("up", "worker", "api", "migrate", "plugins", "tenant"):
        assert re.search(rf"│ {command}\s", top.output), command

    up = run("up", "--help")
    assert up.exit_code == 0
    for option in ("--data-dir", "--host", "--api-port", "--temporal-port", "--ui-port"):
        assert option in up.output
    assert "Ctrl-C" in up.output

    tenant = run("tenant", "--help")
    for command in ("create", "list", "show", "configure", "key"):
        assert re.search(rf"│ {command}\s", tenant.output), command


def test_worker_refuses_an_unknown_queue(db_url: str) -> None:
    result = run("worker", "--queue", "nope")
    assert result.exit_code != 0
    out = text(result)
    assert "unknown task queue(s) ['nope']" in out
    assert "leadflow-conversations" in out
    assert "Traceback" not in result.output


def test_up_refuses_a_busy_port_before_starting_anything(db_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("up", "--data-dir", str(tmp_path / "up"), "--api-port", str(port))
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in text(result) and "--api-port" in text(result)
    assert not (tmp_path / "up" / "temporal.sqlite").exists(), "no dev server was started"
