"""Task queue names: one per workload so each scales and rate-limits on its own."""

CONVERSATIONS = "leadflow-conversations"
ENRICHMENT = "leadflow-enrichment"
CRM = "leadflow-crm"

ALL = (CONVERSATIONS, ENRICHMENT, CRM)
