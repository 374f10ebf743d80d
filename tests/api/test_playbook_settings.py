"""The playbook on the settings page: read it as YAML with its hash, replace it (422 naming the
line or the field), preview the offline provider's replies under it; and the specialists, quiet
hours and time zone read and changed through these routes and PATCH /api/v1/settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import yaml

from api.app import create_app
from models.db import Database
from models.playbook import PLAYBOOK_DIR
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import make_tenant

pytestmark = pytest.mark.timeout(120)

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
async def http(
    sqlite_db: Database, sqlite_url: str, settings_factory: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as c:
            yield c


def auth(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


async def test_read_replace_and_refuse_with_where(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, key = await make_tenant(sqlite_db, settings=TenantSettings(playbook="car_dealership"))
    _, other_key = await make_tenant(sqlite_db)

    got = await http.get("/api/v1/settings/playbook", headers=auth(key))
    assert got.status_code == 200, got.text
    current = got.json()
    assert current["source"] == "builtin" and current["builtin"] == "car_dealership"
    assert current["yaml"] == (PLAYBOOK_DIR / "car_dealership.yaml").read_text(encoding="utf-8")
    neutral = (await http.get("/api/v1/settings/playbook", headers=auth(other_key))).json()
    assert neutral["source"] == "neutral" and neutral["builtin"] is None
    assert neutral["hash"] != current["hash"]

    # quiet hours are the playbook's: change them and read them back
    raw = yaml.safe_load(current["yaml"])
    raw["quiet_hours"] = {"start": "22:30", "end": "07:15", "timezone": "Europe/Amsterdam"}
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    saved = await http.put(
        "/api/v1/settings/playbook", headers=auth(key, **YAML), content=text.encode()
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["source"] == "custom" and saved.json()["yaml"] == text
    assert saved.json()["hash"] != current["hash"]
    again = (await http.get("/api/v1/settings/playbook", headers=auth(key))).json()
    assert again == saved.json()
    assert yaml.safe_load(again["yaml"])["quiet_hours"]["timezone"] == "Europe/Amsterdam"
    settings = (await http.get("/api/v1/settings", headers=auth(key))).json()
    assert settings["playbook_yaml"] == text
    # the neutral playbook's YAML saves as it is (it has no file of its own)
    same = await http.put(
        "/api/v1/settings/playbook", headers=auth(other_key), content=neutral["yaml"]
    )
    assert same.status_code == 200 and same.json()["hash"] == neutral["hash"]

    async def refused(body: bytes, status: int = 422) -> list[str]:
        response = await http.put(
            "/api/v1/settings/playbook", headers=auth(key, **YAML), content=body
        )
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        return detail if isinstance(detail, list) else [detail]

    (syntax,) = await refused(b"name: x\nbusiness_name: [unclosed\n")
    assert "line 3" in syntax or "line 2" in syntax, syntax
    bad_field = raw | {"quiet_hours": {"start": "25:99"}}
    problems = await refused(yaml.safe_dump(bad_field).encode())
    assert any(p.startswith("quiet_hours.start:") for p in problems), problems
    problems = await refused(yaml.safe_dump(raw | {"escalation": [{"nme": "x"}]}).encode())
    assert any(p.startswith("escalation.0.") for p in problems), problems
    assert await refused(b"- just\n- a list\n")
    assert await refused(b"\xff\xfe not utf-8")
    assert await refused(b"")
    assert await refused(b"x" * (256 * 1024 + 1), status=413)
    # YAML that would take the parser's stack or expand into billions of values: 422, not 500
    (deep,) = await refused(b"a: " + b"[" * 3000)
    assert "nested too deeply" in deep
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    (expanded,) = await refused(bomb.encode())
    assert "aliases" in expanded
    # nothing refused was stored
    assert (await http.get("/api/v1/settings/playbook", headers=auth(key))).json() == again
    assert (await http.put("/api/v1/settings/playbook", content=text)).status_code == 401


async def test_specialists_and_time_zone_round_trip(
    http: httpx.AsyncClient, sqlite_db: Database
) -> None:
    _, key = await make_tenant(sqlite_db, settings=TenantSettings(playbook="car_dealership"))
    specialists = [
        {"name": "Mila", "role": "manager", "email": "mila@example.com"},
        {"name": "Jan", "role": "sales", "whatsapp": "+31612345678"},
    ]
    changed = await http.patch(
        "/api/v1/settings",
        headers=auth(key),
        json={"specialists": specialists, "timezone": "Europe/Amsterdam"},
    )
    assert changed.status_code == 200, changed.text
    got = (await http.get("/api/v1/settings", headers=auth(key))).json()
    assert got["timezone"] == "Europe/Amsterdam"
    assert [(s["name"], s["role"]) for s in got["specialists"]] == [
        ("Mila", "manager"),
        ("Jan", "sales"),
    ]
    for patch, where in (
        ({"timezone": "Mars/Olympus"}, ["timezone"]),
        ({"specialists": [{"name": "X", "role": "sales", "email": "nope"}]}, ["specialists"]),
        ({"specialists": [{"role": "sales"}]}, ["specialists"]),
    ):
        refused = await http.patch("/api/v1/settings", headers=auth(key), json=patch)
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"][: len(where)] == where
    assert (await http.get("/api/v1/settings", headers=auth(key))).json() == got


async def test_preview_offline_replies(http: httpx.AsyncClient, sqlite_db: Database) -> None:
    _, key = await make_tenant(sqlite_db, settings=TenantSettings(playbook="car_dealership"))
    messages = [
        "Hallo, ik zoek een Volkswagen Golf tot 20000 euro",
        "Ik wil een klacht indienen, dit is belachelijk",
        "hallo?",
    ]
    current = await http.post(
        "/api/v1/settings/playbook/preview", headers=auth(key), json={"messages": messages}
    )
    assert current.status_code == 200, current.text
    body = current.json()
    assert body["provider"] == "offline"
    first, complaint, after = body["turns"]
    assert first["purpose"] == "reply" and first["language"] == "nl"
    assert "Golf" in first["reply"] and first["fields"]["budget"] == 20000
    assert first["stage"] == "qualifying"
    assert complaint["escalation"]["rule"] == "complaint"
    assert complaint["escalation"]["notify"] == ["manager"]
    assert complaint["purpose"] == "escalation_notice" and complaint["stage"] == "human_handoff"
    assert after["reply"] is None and "human" in after["note"]

    # a playbook not saved yet: its own escalation rule decides
    text = (PLAYBOOK_DIR / "car_dealership.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    raw["escalation"] = [
        {"name": "golf_fan", "keywords": {"nl": ["golf"]}, "notify": ["sales"]},
        *raw["escalation"],
    ]
    tried = await http.post(
        "/api/v1/settings/playbook/preview",
        headers=auth(key),
        json={"yaml": yaml.safe_dump(raw), "messages": messages[:1]},
    )
    assert tried.status_code == 200, tried.text
    (turn,) = tried.json()["turns"]
    assert turn["escalation"]["rule"] == "golf_fan" and turn["stage"] == "human_handoff"
    assert tried.json()["hash"] != body["hash"]
    # ... and nothing was saved by trying it
    stored = (await http.get("/api/v1/settings/playbook", headers=auth(key))).json()
    assert stored["source"] == "builtin" and stored["hash"] == body["hash"]

    bads: list[dict[str, object]] = [
        {"messages": []},
        {"messages": ["hi"] * 21},
        {"messages": ["x" * 2001]},
        {"messages": [""]},
        {"messages": "hi"},
        {"yaml": "name: [", "messages": ["hi"]},
        {"yaml": "name: x", "messages": ["hi"]},
        {"messages": ["hi"], "extra": 1},
    ]
    for bad in bads:
        response = await http.post("/api/v1/settings/playbook/preview", headers=auth(key), json=bad)
        assert response.status_code == 422, (bad, response.text)
