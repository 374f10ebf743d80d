"""Replies that cite the inventory: a lead's wish looked up after perception, the offline
writer's car list (nl and en), the plain "not in stock" with the nearest alternatives, the
hosted model's <inventory> block, and the reply guard accepting exactly the cited prices.

The inventory is the real one: items applied through `KnowledgeService.apply_items` on the
test database and searched by the database backend."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activities import LlmActivities
from activities.llm.agent import Agent
from activities.llm.base import BackendFactory, PerceptionContext, WritingContext
from activities.llm.guard import check_reply
from activities.llm.model_backend import hosted_backend
from activities.llm.offline import OfflinePerceiver, offline_backend
from activities.llm.offline_write import OfflineWriter
from models.agent import DraftTurnInput, GenerateReplyInput, Perception, TurnDraft
from models.common import Intent, ReplyPurpose, Role, Stage
from models.conversation import conversation_workflow_id
from models.db import Database
from models.inventory import (
    InventoryAnswer,
    InventoryItem,
    InventoryQuery,
    ItemHit,
    NewInventoryItem,
)
from models.knowledge.database_index import DatabaseIndex
from models.knowledge.index import ItemMatch, KnowledgeBackendUnavailable
from models.knowledge.service import KnowledgeService
from models.messages import TranscriptEntry
from models.policy import PlaybookRef
from models.repo import usage as usage_repo
from models.repo.playbooks import builtin_playbook
from models.settings import Settings
from models.tenant import TenantLlmSettings, TenantSettings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.llm import FakeOpenAI

FACTORIES: dict[str, BackendFactory] = {"offline": offline_backend, "openai": hosted_backend}
SHOP = "https://autohuis-vandijk.example/occasions"


def car(key: str, **facts: Any) -> InventoryItem:
    return NewInventoryItem(key=key, make="Volkswagen", url=f"{SHOP}/{key}", **facts).keyed()


# Cheapest first is how the database backend orders matches without free text.
GOLFS = [
    car("golf-1", model="Golf", variant="1.6 TDI Comfortline", year=2018, fuel="diesel",
        mileage=98_000, price=Decimal("16450")),
    car("golf-2", model="Golf", variant="2.0 TDI Highline", year=2019, fuel="diesel",
        mileage=61_000, price=Decimal("18950")),
    car("golf-3", model="Golf", variant="2.0 TDI Style", year=2020, fuel="diesel",
        mileage=45_500, price=Decimal("21990")),
    car("golf-4", model="Golf", variant="2.0 TDI R-Line", year=2021, fuel="diesel",
        mileage=30_000, price=Decimal("24750")),
    car("golf-5", model="Golf", variant="1.5 TSI Life", year=2021, fuel="benzine",
        mileage=20_000, price=Decimal("21450")),
    car("golf-6", model="Golf", variant="2.0 TDI GTD", year=2022, fuel="diesel",
        mileage=12_000, price=Decimal("26900")),
    car("polo-1", model="Polo", variant="1.0 TSI", year=2020, fuel="petrol",
        mileage=40_000, price=Decimal("14950")),
    # Sold: never offered, however well it matches.
    car("golf-sold", model="Golf", variant="1.9 TDI", year=2012, fuel="diesel",
        mileage=210_000, price=Decimal("6500"), available=False),
]  # fmt: skip


@pytest.fixture
async def shop(sqlite_db: Database, tmp_path: Any) -> Any:
    """(agent, tenant, knowledge) for a car dealership tenant on the offline provider."""

    async def make(
        items: Sequence[InventoryItem] = GOLFS, llm: TenantLlmSettings | None = None, **env: Any
    ) -> tuple[Agent, str, KnowledgeService]:
        settings = Settings(
            data_dir=tmp_path, database_url="sqlite://", secret_key=TEST_SECRET, **env
        )
        tenant, _ = await make_tenant(
            sqlite_db,
            settings=TenantSettings(playbook="car_dealership", llm=llm or TenantLlmSettings()),
        )
        knowledge = KnowledgeService(sqlite_db, DatabaseIndex(sqlite_db))
        if items:
            await knowledge.apply_items(tenant_id=tenant, items=items, replace=True)
        agent = Agent(settings=settings, db=sqlite_db, factories=FACTORIES, knowledge=knowledge)
        return agent, tenant, knowledge

    return make


def turn(tenant: str, text: str) -> DraftTurnInput:
    return DraftTurnInput(
        tenant_id=tenant,
        playbook=PlaybookRef(tenant_id=tenant),
        conversation_id=conversation_workflow_id(tenant, "waha", "31611111111"),
        new_messages=(text,),
        turn=1,
        stage=Stage.QUALIFYING,
    )


async def draft(agent: Agent, tenant: str, text: str) -> TurnDraft:
    return await ActivityEnvironment().run(LlmActivities(agent).draft_turn, turn(tenant, text))


def cited_urls(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(SHOP)]


async def test_a_dutch_wish_is_answered_with_the_three_cheapest_matching_golfs(
    shop: Any, sqlite_db: Database
) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "heb je een Golf diesel onder de 25.000?")
    perception = ready.analysis.perception
    assert perception.fields["model"] == "Golf" and perception.fields["fuel_type"] == "diesel"
    assert perception.fields["budget"] == 25000
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    print("\n--- nl reply (matches) ---\n" + reply.text)
    text = reply.text
    # Three cars, cheapest first, each with its exact price as the business writes it and its
    # link; the fourth matching Golf (€ 24.750) is left out, the sold one never offered.
    assert "• 2018 Volkswagen Golf 1.6 TDI Comfortline, diesel, 98.000 km, € 16.450" in text
    assert "• 2019 Volkswagen Golf 2.0 TDI Highline, diesel, 61.000 km, € 18.950" in text
    assert "• 2020 Volkswagen Golf 2.0 TDI Style, diesel, 45.500 km, € 21.990" in text
    assert cited_urls(text) == [f"{SHOP}/golf-1", f"{SHOP}/golf-2", f"{SHOP}/golf-3"]
    assert "24.750" not in text and "6.500" not in text and "benzine" not in text
    assert "op voorraad" in text and text.rstrip().endswith("?")
    assert reply.inventory_keys == ("golf-1", "golf-2", "golf-3")
    # The ledger knows what was cited.
    async with sqlite_db.session() as session:
        rows = await usage_repo.calls_for_conversation(
            session, conversation_id=turn(tenant, "").conversation_id or ""
        )
    reply_rows = [r for r in rows if r.step == "reply"]
    assert reply_rows and reply_rows[-1].output is not None
    assert reply_rows[-1].output["inventory"] == ["golf-1", "golf-2", "golf-3"]


async def test_an_english_wish_gets_english_prices_and_the_same_cars(shop: Any) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "Hi! Do you have a Golf diesel under €25,000?")
    assert ready.analysis.perception.language == "en"
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    print("\n--- en reply (matches) ---\n" + reply.text)
    assert "in stock" in reply.text
    assert "• 2019 Volkswagen Golf 2.0 TDI Highline, diesel, 61,000 km, €18,950" in reply.text
    assert "€16,450" in reply.text and "€21,990" in reply.text and "€24,750" not in reply.text
    # The lead wrote the budget as money: the reply may repeat it as money.
    assert "up to €25,000" in reply.text
    assert len(cited_urls(reply.text)) == 3
    assert reply.inventory_keys == ("golf-1", "golf-2", "golf-3")


async def test_no_match_says_so_plainly_and_offers_the_nearest_alternatives(shop: Any) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "Hebben jullie een Golf diesel onder de 15.000?")
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    print("\n--- nl reply (alternatives) ---\n" + reply.text)
    text = reply.text
    # Plain: no such car; the budget repeated without a currency, as the lead wrote it.
    assert "geen Volkswagen Golf diesel tot 15.000 op voorraad" in text
    assert "€ 15.000" not in text
    # The nearest: the same wish above the budget, cheapest first, and what they give up.
    assert "(boven je budget)" in text
    assert "€ 16.450" in text and "€ 18.950" in text and "€ 21.990" in text
    assert reply.inventory_keys == ("golf-1", "golf-2", "golf-3")
    assert text.rstrip().endswith("Is een van deze iets voor je?")


async def test_a_fuel_not_in_stock_offers_the_same_model_with_another_fuel_in_english(
    shop: Any,
) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "Do you have an electric Golf?")
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    print("\n--- en reply (alternatives, fuel) ---\n" + reply.text)
    assert "Right now we have no electric Volkswagen Golf in stock" in reply.text
    assert "(a different fuel)" in reply.text
    # The cheapest Golfs whatever their fuel: the petrol one is among them.
    assert "€16,450" in reply.text and "€18,950" in reply.text and "€21,450" in reply.text
    assert "petrol" in reply.text


async def test_nothing_near_the_wish_is_said_plainly_with_an_offer_to_keep_looking(
    shop: Any,
) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "Heb je een Tesla Model 3?")
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    print("\n--- nl reply (nothing) ---\n" + reply.text)
    assert "geen Tesla Model 3 op voorraad" in reply.text
    assert "in de gaten houden" in reply.text and "collega" in reply.text
    assert "€" not in reply.text and SHOP not in reply.text
    assert reply.inventory_keys == ()


async def test_a_tenant_without_inventory_never_claims_a_car_is_not_in_stock(
    shop: Any,
) -> None:
    agent, tenant, _ = await shop(items=[])
    ready = await draft(agent, tenant, "heb je een Golf diesel onder de 25.000?")
    reply = ready.reply
    assert reply is not None and reply.guard is None
    assert "voorraad" not in reply.text and reply.inventory_keys == ()
    assert "Golf" in reply.text  # the reply it gave before there was an inventory


async def test_build_year_and_mileage_narrow_the_wish(shop: Any) -> None:
    agent, tenant, _ = await shop()
    ready = await draft(agent, tenant, "Ik zoek een Golf diesel vanaf 2019 met max 50.000 km")
    fields = ready.analysis.perception.fields
    assert fields["year"] == 2019 and fields["max_mileage"] == 50000
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    # 2019 with 61.000 km is out; the 2020, 2021 and 2022 diesels are in.
    assert reply.inventory_keys == ("golf-3", "golf-4", "golf-6")
    assert "vanaf 2019 met maximaal 50.000 km" in reply.text


@pytest.mark.parametrize(
    ("text", "year", "km"),
    [
        ("vanaf 2018 graag", 2018, None),
        ("2019 or newer please", 2019, None),
        ("bouwjaar 2020 zou mooi zijn", 2020, None),
        ("max 100.000 km", None, 100_000),
        ("under 80k km if possible", None, 80_000),
        ("minder dan 60.000 km gelopen", None, 60_000),
        ("mijn Corsa is bouwjaar 2012 en heeft minder dan 90.000 km", None, None),
        ("budget 2019 euro", None, None),
    ],
)
def test_the_offline_rules_read_build_year_and_mileage_wishes(
    text: str, year: int | None, km: int | None
) -> None:
    playbook = builtin_playbook("car_dealership")
    perceived = OfflinePerceiver(playbook).perceive(
        PerceptionContext(playbook=playbook, new_messages=(text,))
    )
    assert perceived.fields.get("year") == year
    assert perceived.fields.get("max_mileage") == km


def test_the_guard_accepts_the_cited_prices_in_any_spelling_and_refuses_others() -> None:
    cited = [Decimal("18950.00"), Decimal("21990.50")]

    def verdict(reply: str, prices: Sequence[Decimal] = cited) -> str | None:
        result = check_reply(
            reply,
            lead_language=None,
            allowed_languages=("nl", "en"),
            lead_texts=["heb je een Golf diesel onder de 25.000?"],
            knowledge_texts=[],
            protected_texts=[],
            cited_prices=prices,
        )
        return None if result.ok else result.rule

    for spelling in ("€ 18.950", "€18,950", "EUR 18950", "18.950 euro", "€ 21.990,50", "€21,991"):
        assert verdict(f"De Golf kost {spelling}.") is None, spelling
    # The fourth Golf's price was not given to the writer: invented, as any other amount.
    assert verdict("De R-Line kost € 24.750.") == "unsupported_amount"
    assert verdict("De Golf kost € 18.950.", prices=()) == "unsupported_amount"


async def test_the_agent_guard_refuses_an_uncited_price_from_a_hosted_model(
    shop: Any, fake_openai: FakeOpenAI
) -> None:
    agent, tenant, _ = await shop(
        llm=TenantLlmSettings(provider="openai"),
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
    )
    request = GenerateReplyInput(
        tenant_id=tenant,
        playbook=PlaybookRef(tenant_id=tenant),
        purpose=ReplyPurpose.REPLY,
        stage=Stage.QUALIFYING,
        perception=Perception(
            intent=Intent.PRODUCT_INQUIRY,
            language="en",
            fields={"make": "Volkswagen", "model": "Golf", "fuel_type": "diesel", "budget": 25000},
        ),
        new_messages=("Do you have a Golf diesel under 25k?",),
    )
    fake_openai.ok_text(
        f"Yes! The 2019 Golf 2.0 TDI Highline is €18,950: {SHOP}/golf-2. Want to see it?"
    )
    ok = await agent.write_reply(request)
    assert ok.guard is None and ok.inventory_keys == ("golf-2",)
    # The model was shown the three cheapest matches with their prices and links, and the rule.
    sent = json.dumps(fake_openai.requests[-1].json, ensure_ascii=False)
    assert '<inventory match=\\"yes\\">' in sent
    assert 'price=\\"€18,950\\"' in sent and f'url=\\"{SHOP}/golf-3\\"' in sent
    assert "golf-4" not in sent and "Never mention a car" in sent
    # A price of a car it was not shown (the fourth Golf) is invented: blocked.
    fake_openai.ok_text("We also have a 2021 R-Line for €24,750.")
    blocked = await agent.write_reply(request)
    assert blocked.guard is not None and blocked.guard.rule == "unsupported_amount"


async def test_the_hosted_block_says_when_nothing_matches_and_what_the_alternatives_give_up(
    shop: Any, fake_openai: FakeOpenAI
) -> None:
    agent, tenant, _ = await shop(
        llm=TenantLlmSettings(provider="openai"),
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
    )
    fake_openai.ok_text(
        "Een elektrische Golf hebben we nu niet; de dichtstbijzijnde is een benzine."
    )
    await agent.write_reply(
        GenerateReplyInput(
            tenant_id=tenant,
            playbook=PlaybookRef(tenant_id=tenant),
            purpose=ReplyPurpose.REPLY,
            stage=Stage.QUALIFYING,
            perception=Perception(
                intent=Intent.PRODUCT_INQUIRY,
                language="nl",
                fields={"model": "Golf", "fuel_type": "electric"},
            ),
            new_messages=("Heb je een elektrische Golf?",),
        )
    )
    sent = json.dumps(fake_openai.requests[-1].json, ensure_ascii=False)
    assert '<inventory match=\\"none\\" gave_up=\\"a different fuel\\">' in sent
    assert 'price=\\"€ 21.450\\"' in sent  # written as the Dutch reply should quote it


class _DownIndex(DatabaseIndex):
    """The database backend whose item search fails as an unreachable Weaviate does."""

    name = "weaviate"

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        raise KnowledgeBackendUnavailable("weaviate at http://127.0.0.1:1 is unreachable")


async def test_an_unreachable_backend_is_a_retryable_error_that_names_it(
    shop: Any, sqlite_db: Database
) -> None:
    agent, tenant, _ = await shop()
    agent.knowledge = KnowledgeService(sqlite_db, _DownIndex(sqlite_db))
    with pytest.raises(ApplicationError) as err:
        await agent.write_reply(
            GenerateReplyInput(
                tenant_id=tenant,
                playbook=PlaybookRef(tenant_id=tenant),
                purpose=ReplyPurpose.REPLY,
                stage=Stage.QUALIFYING,
                perception=Perception(
                    intent=Intent.PRICING, language="nl", fields={"model": "Golf"}
                ),
                new_messages=("Wat kost een Golf?",),
            )
        )
    assert err.value.type == "KnowledgeUnavailable" and not err.value.non_retryable
    assert "weaviate" in str(err.value) and "127.0.0.1:1" in str(err.value)


def test_a_question_about_opening_hours_does_not_list_the_cars_again() -> None:
    playbook = builtin_playbook("car_dealership")
    golf = GOLFS[1]
    answer = InventoryAnswer(query=InventoryQuery(model="Golf"), matches=(ItemHit(item=golf),))
    perception = Perception(intent=Intent.PRODUCT_INQUIRY, language="en")
    writer = OfflineWriter(playbook)
    text, _ = writer.write(
        WritingContext(
            playbook=playbook,
            purpose=ReplyPurpose.REPLY,
            stage=Stage.QUALIFYING,
            perception=perception,
            inventory=answer,
            known_fields={"model": "Golf"},
            transcript=(),
            language="en",
        )
    )
    assert SHOP in text  # no question about anything else: the list answers the wish
    asked = (
        TranscriptEntry(role=Role.LEAD, text="What are your opening hours?", at=datetime.now(UTC)),
    )
    text, _ = OfflineWriter(playbook).write(
        WritingContext(
            playbook=playbook,
            purpose=ReplyPurpose.REPLY,
            stage=Stage.QUALIFYING,
            perception=perception,
            inventory=answer,
            known_fields={"model": "Golf"},
            transcript=asked,
            language="en",
        )
    )
    assert SHOP not in text and "18,950" not in text
    assert "09:00" in text  # answered from the persona


def test_a_reply_echoing_the_inventory_block_is_a_leak() -> None:
    verdict = check_reply(
        '<inventory match="yes"><car key="golf-2">2019 Volkswagen Golf</car></inventory>',
        lead_language=None,
        allowed_languages=("nl", "en"),
        lead_texts=[],
        knowledge_texts=[],
        protected_texts=[],
    )
    assert verdict.rule == "leak" and "<inventory" in (verdict.reason or "")


def test_a_list_later_in_the_conversation_does_not_greet_again() -> None:
    playbook = builtin_playbook("car_dealership")
    answer = InventoryAnswer(
        query=InventoryQuery(model="Golf", min_year=2021), matches=(ItemHit(item=GOLFS[3]),)
    )
    now = datetime.now(UTC)
    text, _ = OfflineWriter(playbook).write(
        WritingContext(
            playbook=playbook,
            purpose=ReplyPurpose.REPLY,
            stage=Stage.QUALIFYING,
            perception=Perception(
                intent=Intent.PRODUCT_INQUIRY, language="nl", fields={"year": 2021}
            ),
            inventory=answer,
            known_fields={"model": "Golf", "year": 2021},
            transcript=(
                TranscriptEntry(role=Role.LEAD, text="Heb je een Golf?", at=now),
                TranscriptEntry(role=Role.AI, text="Dit hebben we nu op voorraad…", at=now),
                TranscriptEntry(role=Role.LEAD, text="En vanaf 2021?", at=now),
            ),
            language="nl",
        )
    )
    assert text.startswith("Dit hebben we nu op voorraad (Golf vanaf 2021):"), text
    assert "€ 24.750" in text and f"{SHOP}/golf-4" in text


async def test_a_test_drive_asked_with_a_wish_keeps_the_meeting_answer_and_lists_the_cars(
    shop: Any,
) -> None:
    """The demo's example message: a wish and a test drive in one. The meeting keeps its own
    answer (and the day the lead named), the cars it could be with follow it."""
    agent, tenant, _ = await shop()
    ready = await draft(
        agent,
        tenant,
        "Hoi! Ik zoek een Volkswagen Golf diesel, budget rond de €25.000. "
        "Kan ik deze week een proefrit maken?",
    )
    reply = ready.reply
    assert reply is not None and reply.guard is None, reply
    text = reply.text
    print("\n--- nl reply (meeting + wish) ---\n" + text)
    assert text.startswith("Een proefrit plannen we graag voor je in!"), text
    assert "Hoi!" not in text  # the meeting's opening greets; the list does not again
    assert cited_urls(text) == [f"{SHOP}/golf-1", f"{SHOP}/golf-2", f"{SHOP}/golf-3"]
    assert "deze week" in text  # the day the lead named is noted, not asked again
    assert "Wil je er een komen bekijken" not in text  # they asked for the test drive already
    assert reply.inventory_keys == ("golf-1", "golf-2", "golf-3")
