"""The search interface every knowledge backend implements.

The database keeps the canonical copy of documents and items (their keys, content hashes, what
an ingestion changed, what the reply guard checks prices against); a backend keeps what it needs
to *search* them and answers with ids, keys and scores. The database backend searches the
canonical tables themselves; the Weaviate backend mirrors them into one multi-tenant collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from models.inventory import InventoryItem, InventoryQuery


class KnowledgeBackendError(Exception):
    """The root of knowledge-backend failures."""


class KnowledgeBackendUnavailable(KnowledgeBackendError):
    """A configured backend cannot be reached or refuses us; the message names it and where
    (never a silent fallback to another backend)."""


class IndexedDocument(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: str
    title: str
    body: str


class DocumentMatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    document_id: str
    snippet: str = ""  # the best-matching passage, plain text
    score: float = 0.0  # higher is better; comparable only within one answer


class ItemMatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    score: float = 0.0


class KnowledgeIndex(Protocol):
    """Search over one tenant's documents and items. Writes are idempotent (an upsert of an
    unchanged document or item, or a delete of an absent one, is no error)."""

    @property
    def name(self) -> str:
        """'database' or 'weaviate': shown in errors, /ready and the operator API."""
        ...

    async def check(self) -> None:
        """Raise KnowledgeBackendUnavailable when the backend cannot serve."""

    async def upsert_documents(
        self, tenant_id: str, documents: Sequence[IndexedDocument]
    ) -> None: ...

    async def delete_documents(self, tenant_id: str, document_ids: Sequence[str]) -> None: ...

    async def upsert_items(self, tenant_id: str, items: Sequence[InventoryItem]) -> None: ...

    async def delete_items(self, tenant_id: str, keys: Sequence[str]) -> None: ...

    async def search_documents(self, tenant_id: str, query: str, limit: int) -> list[DocumentMatch]:
        """The documents best matching the free text, best first."""
        ...

    async def search_items(self, tenant_id: str, query: InventoryQuery) -> list[ItemMatch]:
        """The items that pass every filter of `query` (`InventoryQuery.matches` is the
        reference), ranked by its free text when it has one (else by price, lowest first),
        at most `query.limit`."""
        ...

    async def drop_tenant(self, tenant_id: str) -> None:
        """Forget everything of the tenant (its deletion; a changed embedding model)."""

    async def close(self) -> None: ...
