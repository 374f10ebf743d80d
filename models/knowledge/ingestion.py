"""Contracts of inventory ingestion: the workflow's input and result, the ids of its runs and
schedules, and the error types its activities raise (workflows/ingestion.py,
activities/ingestion.py, models/knowledge/schedules.py).

Ids name the tenant and the source id only: a source's URL or name could identify a person (a
private seller's page), and Temporal keeps ids in clear."""

from __future__ import annotations

from pydantic import Field

from models.inventory import IngestDiff
from models.messages import Frozen

WORKFLOW_NAME = "InventoryIngestionWorkflow"
WORKFLOW_PREFIX = "ingest-source"
SCHEDULE_PREFIX = "inventory-source"
API_SOURCE_ID = "api"  # the items posted through the API, replaced as one list by PUT

SKIPPED_REASONS_KEPT = 10

# ApplicationError types (`non_retryable` ones are final: trying again fetches the same answer).
ERROR_SOURCE_NOT_FOUND = "SourceNotFound"  # deleted after the schedule fired: final
ERROR_SOURCE_FORMAT = "SourceFormatError"  # the document cannot be read as its kind: final
ERROR_SOURCE_REFUSED = "SourceRefused"  # 4xx, SSRF guard, too large: final
ERROR_WOULD_EMPTY = "SourceWouldEmptyInventory"  # 0 items while items are live: final
ERROR_SOURCE_UNAVAILABLE = "SourceUnavailable"  # network, timeout, 5xx: retried
ERROR_INDEX_UNAVAILABLE = "KnowledgeBackendUnavailable"  # search backend down: retried
NON_RETRYABLE_ERRORS = (
    ERROR_SOURCE_NOT_FOUND,
    ERROR_SOURCE_FORMAT,
    ERROR_SOURCE_REFUSED,
    ERROR_WOULD_EMPTY,
)


def ingestion_workflow_id(tenant_id: str, source_id: str) -> str:
    """A run started by hand. Runs the schedule starts get this id plus the schedule's
    timestamp suffix, so both share the prefix `ingestion_workflow_prefix`."""
    return f"{WORKFLOW_PREFIX}:{tenant_id}:{source_id}"


def ingestion_workflow_prefix(tenant_id: str) -> str:
    return f"{WORKFLOW_PREFIX}:{tenant_id}:"


def source_schedule_id(tenant_id: str, source_id: str) -> str:
    return f"{SCHEDULE_PREFIX}:{tenant_id}:{source_id}"


def source_schedule_prefix(tenant_id: str) -> str:
    return f"{SCHEDULE_PREFIX}:{tenant_id}:"


class IngestSourceInput(Frozen):
    """What a run needs: the source is read from its row, so an edited source applies from the
    next run on, and the schedule's stored action never holds a stale copy of the spec."""

    tenant_id: str
    source_id: str


class IngestFailure(Frozen):
    tenant_id: str
    source_id: str
    error: str


class IngestResult(Frozen):
    """What one run did: the source as read, what changed, what was skipped and why."""

    source_id: str
    source_name: str
    format: str = Field(description="What was read: json-ld, selectors, json or csv.")
    diff: IngestDiff
    skipped: int = 0
    skipped_reasons: tuple[str, ...] = Field(
        default=(), description=f"The first {SKIPPED_REASONS_KEPT} ('row 7: price ...')."
    )
    bytes: int = 0
    seconds: float = 0.0
    final_url: str = ""

    def markdown(self) -> str:
        """The run's details in the Temporal UI."""
        d = self.diff
        lines = [
            f"**{self.source_name}** ({self.format}, {self.bytes:,} bytes, {self.seconds:.1f} s)",
            f"- {d.received} items read: **{d.added} added, {d.updated} updated, "
            f"{d.removed} removed**, {d.unchanged} unchanged",
        ]
        for label, keys, count in (
            ("added", d.added_keys, d.added),
            ("updated", d.updated_keys, d.updated),
            ("removed", d.removed_keys, d.removed),
        ):
            if keys:
                more = f" and {count - len(keys)} more" if count > len(keys) else ""
                lines.append(f"- {label}: {', '.join(keys)}{more}")
        if self.skipped:
            lines.append(f"- {self.skipped} entries skipped:")
            lines.extend(f"  - {reason}" for reason in self.skipped_reasons)
        return "\n".join(lines)
