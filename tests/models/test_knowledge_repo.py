"""Knowledge documents and their full-text search, on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

import pytest

from models.db import Database
from models.repo import knowledge as repo
from tests.conftest import make_tenant

HOSTILE_QUERIES = [
    '"foo" OR bar* (NEAR',
    "NEAR(a b) AND NOT",
    "'; DROP TABLE knowledge_documents; --",
    "a:* & !b | (c",
    '"""',
    "***",
    "   ",
    "",
    "ö' \" \\ % _",
]


async def _seed(db: Database, tenant_id: str) -> dict[str, str]:
    docs = {
        "financing": (
            "Financiering en lease",
            "Wij bieden financial lease en private lease aan. Financiering vanaf 3,9% rente, "
            "looptijd 12 tot 72 maanden.",
        ),
        "testdrive": (
            "Proefrit maken",
            "Een proefrit kan van maandag tot en met zaterdag, zonder afspraak of met afspraak.",
        ),
        "tradein": (
            "Inruil",
            "Wij taxeren je huidige auto gratis. Inruil is mogelijk bij aankoop van elke auto.",
        ),
    }
    ids: dict[str, str] = {}
    async with db.session() as session:
        for key, (title, body) in docs.items():
            doc = await repo.add_document(session, tenant_id=tenant_id, title=title, body=body)
            ids[key] = doc.id
    return ids


async def test_added_documents_are_listed_per_tenant(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    async with db.session() as session:
        listed = await repo.list_documents(session, tenant_id=tid)
        assert {d.id for d in listed} == set(ids.values())
        assert await repo.list_documents(session, tenant_id=other) == []


async def test_search_ranks_the_best_matching_document_first(db: Database) -> None:
    tid, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    async with db.session() as session:
        hits = await repo.search(
            session, tenant_id=tid, query="Kan ik de auto met private lease financiering?", limit=3
        )
    assert hits, "expected at least one hit"
    assert hits[0].document_id == ids["financing"]
    assert hits[0].title == "Financiering en lease"
    assert "lease" in hits[0].snippet.lower()
    assert "<b>" not in hits[0].snippet
    # Scores are higher-is-better and sorted.
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].score > 0


async def test_search_respects_limit_and_finds_any_word(db: Database) -> None:
    tid, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    async with db.session() as session:
        # "proefrit" only occurs in one document, "auto" in another: OR semantics finds both.
        both = await repo.search(session, tenant_id=tid, query="proefrit auto", limit=5)
        one = await repo.search(session, tenant_id=tid, query="proefrit auto", limit=1)
        none = await repo.search(session, tenant_id=tid, query="helikopter", limit=5)
    assert {h.document_id for h in both} == {ids["testdrive"], ids["tradein"]}
    assert len(one) == 1
    assert none == []


async def test_search_never_returns_another_tenants_documents(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    await _seed(db, tid)
    async with db.session() as session:
        own = await repo.add_document(
            session, tenant_id=other, title="Onze proefrit", body="Proefrit alleen op afspraak."
        )
        hits = await repo.search(session, tenant_id=other, query="proefrit lease inruil", limit=10)
    assert [h.document_id for h in hits] == [own.id]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
async def test_hostile_query_text_does_not_break_the_search(db: Database, query: str) -> None:
    tid, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    async with db.session() as session:
        hits = await repo.search(session, tenant_id=tid, query=query, limit=3)
        # Operator words are searched as plain words: "NEAR" and "or" match nothing here.
        assert all(h.document_id in ids.values() for h in hits)
        mixed = await repo.search(session, tenant_id=tid, query=query + " proefrit", limit=3)
    assert mixed and mixed[0].document_id == ids["testdrive"]


async def test_deleted_documents_are_no_longer_found(db: Database) -> None:
    tid, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    async with db.session() as session:
        other, _ = await make_tenant(db)
        assert not await repo.delete_document(
            session, tenant_id=other, document_id=ids["testdrive"]
        )
        assert await repo.delete_document(session, tenant_id=tid, document_id=ids["testdrive"])
        hits = await repo.search(session, tenant_id=tid, query="proefrit", limit=3)
    assert hits == []


def test_query_terms_drop_operators_and_stopwords() -> None:
    assert repo.query_terms('"foo" OR bar* (NEAR') == ["foo", "bar", "near"]
    assert repo.query_terms("Wat kost de Golf?") == ["kost", "golf"]
    # Only stopwords: keep them rather than searching for nothing.
    assert repo.query_terms("hoe wat") == ["hoe", "wat"]
    assert repo.query_terms("  ") == []


async def test_search_knowledge_activity_returns_the_tenants_hits(db: Database) -> None:
    from temporalio.testing import ActivityEnvironment

    from activities.knowledge import KnowledgeActivities
    from models.agent import SearchKnowledgeInput
    from models.knowledge.database_index import DatabaseIndex
    from models.knowledge.service import KnowledgeService

    tid, _ = await make_tenant(db)
    ids = await _seed(db, tid)
    acts = KnowledgeActivities(KnowledgeService(db, DatabaseIndex(db)))
    env = ActivityEnvironment()
    hits = await env.run(
        acts.search_knowledge, SearchKnowledgeInput(tenant_id=tid, query="inruil", limit=2)
    )
    assert isinstance(hits, tuple)
    assert [h.document_id for h in hits] == [ids["tradein"]]
    assert (
        await env.run(acts.search_knowledge, SearchKnowledgeInput(tenant_id=tid, query=" ")) == ()
    )
