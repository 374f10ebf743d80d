"""Every module that defines tables, so Alembic and tests see the whole schema."""

from __future__ import annotations

import importlib

TABLE_MODULES = (
    "models.tables",
    "models.enrichment_tables",
    "models.crm_tables",
    "models.llm_tables",
    "models.inbox_tables",
    "models.identity_tables",
    "models.audit_tables",
    "models.key_tables",
    "models.knowledge_tables",
    "models.campaign_tables",
    "models.email_tables",
    "models.user_tables",
)


def import_all() -> None:
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
