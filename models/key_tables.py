"""Deployment-wide keys kept in the database, so every process of a deployment (API, workers,
CLI) derives the same values from them without a file to copy between machines."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from models.tables import utcnow


class DeploymentKey(SQLModel, table=True):
    """A named random key, written once (the first process or migration to need it inserts it,
    `ON CONFLICT DO NOTHING`) and never changed: what is derived from it (workflow ids,
    models/workflow_ids.py) must stay the same for the life of the deployment."""

    __tablename__ = "deployment_keys"
    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=128, description="The key's bytes, URL-safe base64.")
    created_at: datetime = Field(default_factory=utcnow)
