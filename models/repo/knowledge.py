"""A tenant's knowledge documents and the embedded full-text search over them.

SQLite searches the FTS5 table `knowledge_fts` (kept in step with `knowledge_documents` here);
PostgreSQL searches `to_tsvector('simple', title || ' ' || body)`, the expression migration 0001
indexes with GIN. Both OR the query's words together, so a question in the lead's own words
finds documents sharing any of its words, the best (most matching, rarest words) first.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Result, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.agent import KnowledgeHit
from models.tables import KnowledgeDocument

MAX_QUERY_TERMS = 16

# Words that say nothing about a document; ORing them in would rank every document alike.
_STOPWORDS = frozenset(
    """
    a an and are as at be but by can could do does for from have how i if in is it me my of on
    or our so that the their there this to was we what when where which who why will with would
    you your yours de het een en van ik je jij u uw is zijn wat hoe wie waar wanneer welke die
    dat deze dit er op in met voor naar te om aan bij of ook maar als nog wel niet mijn jullie
    hebben heb heeft kan kun kunnen wil wilt willen graag hoi hallo hi hello
    """.split()
)
_WORD_RE = re.compile(r"\w+", re.UNICODE)

# Snippets: up to 24 words around the matches, no highlight markers (they are cited to leads).
_SQLITE_SEARCH = (
    "SELECT document_id, title, snippet(knowledge_fts, 3, '', '', '…', 24) AS snip, "
    "bm25(knowledge_fts) AS rank "
    "FROM knowledge_fts WHERE knowledge_fts MATCH :q AND tenant_id = :tenant_id "
    "ORDER BY rank LIMIT :limit"
)
# The tsvector expression must stay identical to the GIN index of migration 0001.
_POSTGRES_SEARCH = (
    "SELECT id, title, "
    "ts_headline('simple', body, q, "
    '\'StartSel="", StopSel="", MaxWords=24, MinWords=8\') AS snip, '
    "ts_rank(to_tsvector('simple', title || ' ' || body), q) AS rank "
    "FROM knowledge_documents, to_tsquery('simple', :q) AS q "
    "WHERE tenant_id = :tenant_id AND to_tsvector('simple', title || ' ' || body) @@ q "
    "ORDER BY rank DESC, id LIMIT :limit"
)


def query_terms(query: str) -> list[str]:
    """The distinct words of a free-text query, lowercased, stopwords dropped when others remain.

    Only word characters survive, so FTS5 or tsquery operators in user text (quotes, *, NEAR,
    parentheses, colons) can never reach the query syntax."""
    words: list[str] = []
    for word in _WORD_RE.findall(query.lower()):
        word = word.strip("_")
        if word and word not in words:
            words.append(word)
    meaningful = [w for w in words if w not in _STOPWORDS]
    return (meaningful or words)[:MAX_QUERY_TERMS]


def _fts5_query(terms: list[str]) -> str:
    # Each term becomes an FTS5 string ("..." with inner quotes doubled), so even a term that
    # spells an operator (OR, NEAR, AND) is matched as a plain word.
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _tsquery(terms: list[str]) -> str:
    # Quoted lexemes ('...' with inner quotes doubled) are taken literally by to_tsquery.
    return " | ".join("'" + term.replace("'", "''") + "'" for term in terms)


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _execute(session: AsyncSession, sql: str, params: dict[str, Any]) -> Result[Any]:
    # Raw SQL runs on the session's connection: same transaction, and typed for mypy (sqlmodel's
    # `exec` only types ORM statements).
    connection = await session.connection()
    return await connection.execute(text(sql), params)


async def add_document(
    session: AsyncSession, *, tenant_id: str, title: str, body: str
) -> KnowledgeDocument:
    doc = KnowledgeDocument(id=uuid.uuid4().hex, tenant_id=tenant_id, title=title, body=body)
    session.add(doc)
    await session.flush()
    if _dialect(session) == "sqlite":
        await _execute(
            session,
            "INSERT INTO knowledge_fts (document_id, tenant_id, title, body) "
            "VALUES (:id, :tenant_id, :title, :body)",
            {"id": doc.id, "tenant_id": tenant_id, "title": title, "body": body},
        )
    await session.commit()
    return doc


async def delete_document(session: AsyncSession, *, tenant_id: str, document_id: str) -> bool:
    doc = await session.get(KnowledgeDocument, document_id)
    if doc is None or doc.tenant_id != tenant_id:
        return False
    if _dialect(session) == "sqlite":
        await _execute(
            session, "DELETE FROM knowledge_fts WHERE document_id = :id", {"id": document_id}
        )
    await session.delete(doc)
    await session.commit()
    return True


async def list_documents(session: AsyncSession, *, tenant_id: str) -> list[KnowledgeDocument]:
    rows = await session.exec(
        select(KnowledgeDocument)
        .where(KnowledgeDocument.tenant_id == tenant_id)
        .order_by(col(KnowledgeDocument.created_at), col(KnowledgeDocument.id))
    )
    return list(rows.all())


async def search(
    session: AsyncSession, *, tenant_id: str, query: str, limit: int = 3
) -> list[KnowledgeHit]:
    """The tenant's documents best matching any word of `query`, best first (higher score)."""
    terms = query_terms(query)
    if not terms or limit <= 0:
        return []
    if _dialect(session) == "sqlite":
        # bm25() is lower-is-better (negative); the hit's score is its negation.
        result = await _execute(
            session,
            _SQLITE_SEARCH,
            {"q": _fts5_query(terms), "tenant_id": tenant_id, "limit": limit},
        )
        return [
            KnowledgeHit(
                document_id=row["document_id"],
                title=row["title"],
                snippet=row["snip"],
                score=-float(row["rank"]),
            )
            for row in result.mappings().all()
        ]
    result = await _execute(
        session,
        _POSTGRES_SEARCH,
        {"q": _tsquery(terms), "tenant_id": tenant_id, "limit": limit},
    )
    return [
        KnowledgeHit(
            document_id=row["id"], title=row["title"], snippet=row["snip"], score=float(row["rank"])
        )
        for row in result.mappings().all()
    ]


async def documents_by_id(
    session: AsyncSession, *, tenant_id: str, document_ids: Sequence[str], max_chars: int = 2000
) -> list[KnowledgeHit]:
    """The tenant's documents with these ids, in that order, their text cut at `max_chars`
    (activities receive ids through the workflow history and read the text here)."""
    if not document_ids:
        return []
    rows = await session.exec(
        select(KnowledgeDocument).where(
            KnowledgeDocument.tenant_id == tenant_id, col(KnowledgeDocument.id).in_(document_ids)
        )
    )
    by_id = {doc.id: doc for doc in rows.all()}
    return [
        KnowledgeHit(document_id=doc.id, title=doc.title, snippet=doc.body[:max_chars])
        for doc in (by_id.get(i) for i in document_ids)
        if doc is not None
    ]
