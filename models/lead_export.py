"""The columns of the leads' CSV export (`GET /api/v1/leads/export`): what the list shows, one
row per lead. The cells are neutralised by the writer (models/csv_intake.py `SafeCsvWriter`)."""

from __future__ import annotations

from models.tables import Lead

LEAD_CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "company",
    "company_domain",
    "email",
    "phone",
    "channel",
    "address",
    "score",
    "quality",
    "do_not_contact",
    "tags",
    "source_job_id",
    "created_at",
    "updated_at",
)


def lead_csv_row(lead: Lead) -> dict[str, str]:
    company = lead.fields.get("company")
    return {
        "id": lead.id,
        "name": lead.name or "",
        "company": str(company) if company else "",
        "company_domain": lead.company_domain or "",
        "email": lead.email or "",
        "phone": lead.phone or "",
        "channel": lead.channel,
        "address": lead.address,
        "score": str(lead.score),
        "quality": lead.quality,
        "do_not_contact": "true" if lead.do_not_contact else "false",
        "tags": ";".join(lead.tags or ()),
        "source_job_id": lead.source_job_id or "",
        "created_at": lead.created_at.isoformat(),
        "updated_at": lead.updated_at.isoformat(),
    }
