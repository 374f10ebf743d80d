"""What makes a CRM connection acceptable, for the API and the CLI alike: its field mapping,
its credentials and its base URL (the tenant-URL rule of the settings, so a private address is
refused when the connection is added, not first when the saga runs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from models.crm import CrmKind, FieldProblem, missing_credentials, validate_field_mapping
from models.netguard import UrlGuard
from models.tenant_settings_merge import url_problem


def integration_problems(
    kind: CrmKind,
    *,
    mapping: dict[str, str],
    credentials: Mapping[str, Any],
    base_url: str | None,
    allowlist: Iterable[str],
) -> list[FieldProblem]:
    """Every problem at once, so the answer (a 422, or the CLI's list) names them all."""
    problems = list(validate_field_mapping(kind, mapping))
    problems += [
        FieldProblem(field=f"credentials.{name}", problem="required")
        for name in missing_credentials(kind, dict(credentials))
    ]
    refused = url_problem(base_url, UrlGuard(allowlist))
    if refused is not None:
        problems.append(FieldProblem(field="base_url", problem=refused))
    return problems
