"""Custom search attributes: operators find runs by these in the Temporal UI and CLI, e.g.
`temporal workflow list --query 'LeadflowTenant="acme" AND LeadflowLeadQuality="HOT"'`."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("LeadflowTenant")
CHANNEL = SearchAttributeKey.for_keyword("LeadflowChannel")
STAGE = SearchAttributeKey.for_keyword("LeadflowStage")
LEAD_SCORE = SearchAttributeKey.for_int("LeadflowLeadScore")
LEAD_QUALITY = SearchAttributeKey.for_keyword("LeadflowLeadQuality")
JOB_STATUS = SearchAttributeKey.for_keyword("LeadflowJobStatus")

ALL = (TENANT, CHANNEL, STAGE, LEAD_SCORE, LEAD_QUALITY, JOB_STATUS)


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "INT": "Int"}
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}"]
    return flags
