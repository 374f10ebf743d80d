"""`leadflow key list|create|revoke|rotate` and `leadflow audit` as an operator uses them, on a
SQLite file: the secret printed once and working, revocation and rotation refused at once by
the service the API authenticates with, the audit entries under the operator's name, and the
exit codes of typos, unknown tenants and keys, and refusals."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from models import api_keys
from models.db import Database
from models.repo import tenants as tenant_repo
from tests.conftest import TEST_SECRET, migrate_sqlite
from workers.cli import app


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "240")
    migrate_sqlite(url)

    async def tenant() -> None:
        db = Database(url)
        try:
            async with db.session() as session:
                await tenant_repo.create_tenant(
                    session, tenant_id="acme", name="Acme", secret_key=TEST_SECRET
                )
        finally:
            await db.dispose()

    asyncio.run(tenant())
    return url


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def text(result: Result) -> str:
    return re.sub(r"\s+", " ", result.output)


def works(url: str, secret: str) -> bool:
    async def check() -> bool:
        db = Database(url)
        try:
            async with db.session() as session:
                return await api_keys.authenticate(session, secret=secret) is not None
        finally:
            await db.dispose()

    return asyncio.run(check())


def test_create_list_revoke_rotate_and_their_audit(db_url: str) -> None:
    created = run("key", "create", "--tenant", "acme", "--label", "ci", "--by", "alice", "--json")
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    ci_id, ci_secret = body["key"]["id"], body["secret"]
    assert body["key"]["label"] == "ci" and works(db_url, ci_secret)

    # without --json: the secret alone on stdout (for `$(...)`), the warning beside it
    human = run("key", "create", "--tenant", "acme", "--label", "zapier")
    assert human.exit_code == 0, human.output
    zap_secret = human.stdout.strip().splitlines()[-1]
    assert zap_secret.startswith("lf_") and works(db_url, zap_secret)
    assert "not shown again" in human.output

    listed = run("key", "list", "--tenant", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["label"] for r in rows] == ["zapier", "ci"]
    assert ci_secret not in listed.output and zap_secret not in listed.output
    table = run("key", "list", "--tenant", "acme")
    assert table.exit_code == 0 and "zapier" in table.output and ci_secret not in table.output

    rotated = run("key", "rotate", str(ci_id), "--tenant", "acme", "--grace", "1h", "--json")
    assert rotated.exit_code == 0, rotated.output
    new = json.loads(rotated.stdout)
    assert new["key"]["label"] == "ci" and new["replaced"]["active"] is True
    assert works(db_url, ci_secret) and works(db_url, new["secret"])  # during the grace

    revoked = run("key", "revoke", str(ci_id), "--tenant", "acme", "--by", "bob", "--json")
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["active_keys_left"] == 2
    assert not works(db_url, ci_secret) and works(db_url, new["secret"])

    audit = run("audit", "--tenant", "acme", "--json")
    assert audit.exit_code == 0, audit.output
    entries = json.loads(audit.stdout)
    assert [(e["action"], e["resource_id"], e["actor_kind"]) for e in entries] == [
        ("key.revoke", str(ci_id), "cli"),
        ("key.rotate", str(ci_id), "cli"),
        ("key.create", str(rows[0]["id"]), "cli"),
        ("key.create", str(ci_id), "cli"),
    ]
    assert entries[0]["actor"] == "bob" and entries[3]["actor"] == "alice"
    assert entries[1]["detail"]["grace_seconds"] == 3600
    for secret in (ci_secret, zap_secret, new["secret"]):
        assert secret not in audit.output
    only = run("audit", "--tenant", "acme", "--action", "key.rotate", "--json")
    assert [e["action"] for e in json.loads(only.stdout)] == ["key.rotate"]
    human_log = run("audit", "--tenant", "acme")
    assert human_log.exit_code == 0 and "cli bob" in text(human_log)


def test_revoking_the_last_key_is_allowed_with_a_warning(db_url: str) -> None:
    created = run("key", "create", "--tenant", "acme", "--label", "only", "--json")
    key_id = json.loads(created.stdout)["key"]["id"]
    revoked = run("key", "revoke", str(key_id), "--tenant", "acme")
    assert revoked.exit_code == 0, revoked.output
    assert "no active API key left" in text(revoked)
    assert not works(db_url, json.loads(created.stdout)["secret"])


def test_rotate_without_grace_refuses_the_old_key_at_once(db_url: str) -> None:
    created = json.loads(run("key", "create", "--tenant", "acme", "--label", "x", "--json").stdout)
    rotated = run("key", "rotate", str(created["key"]["id"]), "--tenant", "acme")
    assert rotated.exit_code == 0, rotated.output
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert "refused now" in text(rotated)
    assert not works(db_url, created["secret"]) and works(db_url, new_secret)
    # a revoked key cannot be rotated: refused, exit code 3
    again = run("key", "rotate", str(created["key"]["id"]), "--tenant", "acme")
    assert again.exit_code == 3 and "is revoked" in text(again)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("key", "list", "--tenant", "nope"), 1, "no tenant 'nope'"),
        (("key", "revoke", "999", "--tenant", "acme"), 1, "no key 999 in tenant 'acme'"),
        (("key", "rotate", "999", "--tenant", "acme"), 1, "no key 999"),
        (("key", "revoke", "0", "--tenant", "acme"), 2, "greater than or equal to 1"),
        (("key", "revoke", "x", "--tenant", "acme"), 2, "should be a valid integer"),
        (("key", "create", "--tenant", "acme", "--label", " "), 2, "the label is empty"),
        (("key", "create", "--tenant", "acme", "--label", "y" * 101), 2, "longer than 100"),
        (("key", "create", "--tenant", "acme"), 2, "Missing option '--label'"),
        (("key", "rotate", "1", "--tenant", "acme", "--grace", "soon"), 2, "not a duration"),
        (("key", "rotate", "1", "--tenant", "acme", "--grace", "8d"), 2, "between 0 and 7 days"),
        (("audit", "--tenant", "acme", "--since", "yesterday"), 2, "not an ISO date"),
        (("audit", "--tenant", "acme", "--limit", "501"), 2, "less than or equal to 500"),
        (("audit", "--tenant", "nope"), 1, "no tenant 'nope'"),
    ],
)
def test_bad_input_exits_with_a_reason(
    db_url: str, args: tuple[str, ...], code: int, message: str
) -> None:
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in text(result)
    assert "Traceback" not in result.output


def test_another_tenants_key_is_not_found(db_url: str) -> None:
    created = json.loads(run("key", "create", "--tenant", "acme", "--label", "a", "--json").stdout)

    async def other() -> None:
        db = Database(db_url)
        try:
            async with db.session() as session:
                await tenant_repo.create_tenant(
                    session, tenant_id="zeta", name="Zeta", secret_key=TEST_SECRET
                )
        finally:
            await db.dispose()

    asyncio.run(other())
    key_id = str(created["key"]["id"])
    for command in ("revoke", "rotate"):
        result = run("key", command, key_id, "--tenant", "zeta")
        assert result.exit_code == 1 and f"no key {key_id}" in text(result)
    assert works(db_url, created["secret"])
