"""The one way an update reaches a tenant's stored settings: PATCH and PUT /api/v1/settings and
`leadflow tenant configure` all call `merge_settings` (two copies of this rule drifted apart once
and PATCH then dropped a channel's webhook secret and API key).

Rules of an update:
- PATCH / `tenant configure` (`replace=False`): a deep merge. Mappings merge key by key, so
  `{"waha": {"session": "sales"}}` changes the session and keeps the URL, API key and webhook
  secret. Lists (specialists) are replaced as a whole.
- PUT (`replace=True`): the body is the whole new settings; what it leaves out is gone.
- Both: a secret given as the mask that GET and `tenant show` print (`MASK`) keeps the stored
  secret; a secret that is absent from a PATCH is kept too. The mask is never stored.
- Explicit `null` removes: a channel block (`{"waha": null}` disconnects WAHA), a secret
  (`{"waha": {"webhook_secret": null}}`), or resets a field with a default to that default
  (`{"timezone": null}` is UTC again).
- The result is validated (types, unknown keys, time zones, e-mail addresses, http(s) URLs,
  phone numbers); every problem names its field as a `loc` path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError

from models.identity import phone_e164
from models.netguard import UrlGuard, UrlRefused
from models.tenant import SmtpSettings, TenantSettings, dump_settings

MASK = "**********"

Problem = dict[str, Any]  # {"loc": [field, ...], "msg": "..."}


class SettingsRejected(ValueError):
    """The update would make invalid settings; nothing was stored."""

    def __init__(self, message: str, problems: list[Problem]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems

    def describe(self) -> str:
        """One line per problem, `a.b.0: message`, for the CLI."""
        return "\n".join(
            f"{'.'.join(str(part) for part in p['loc']) or '(settings)'}: {p['msg']}"
            for p in self.problems
        )


def merge_settings(
    current: TenantSettings,
    update: Mapping[str, Any],
    *,
    replace: bool = False,
    allowlist: Iterable[str] = (),
) -> TenantSettings:
    """`update` applied to `current` (see the module doc), validated; SettingsRejected if not.
    `allowlist` is the deployment's `LEADFLOW_SSRF_ALLOWLIST`: a URL the connection guard would
    refuse anyway (a private literal address, a local name) is refused here with its reason."""
    stored = dump_settings(current)
    raw = _keep_masked(dict(update), stored) if replace else _deep_merge(stored, update)
    try:
        new = TenantSettings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsRejected(
            "invalid settings",
            [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    problems = value_problems(new, UrlGuard(allowlist))
    if problems:
        raise SettingsRejected("invalid settings", problems)
    return new


def _deep_merge(stored: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(stored)
    for key, value in update.items():
        old = stored.get(key)
        if value is None:
            merged.pop(key, None)
        elif value == MASK:
            if old is None:  # nothing to keep: the mask itself is never a secret
                merged.pop(key, None)
            else:
                merged[key] = old
        elif isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = _keep_masked(value, old)
    return merged


def _keep_masked(new: Any, current: Any) -> Any:
    """`new` with every masked value replaced by the stored one (dropped if none is stored)."""
    if isinstance(new, Mapping):
        old = current if isinstance(current, Mapping) else {}
        kept = {key: _keep_masked(value, old.get(key)) for key, value in new.items()}
        return {key: value for key, value in kept.items() if value is not _DROP}
    if isinstance(new, list):
        old_list = current if isinstance(current, list) else []
        return [
            _keep_masked(value, old_list[i] if i < len(old_list) else None)
            for i, value in enumerate(new)
        ]
    if new == MASK:
        return _DROP if current is None else current
    return new


_DROP: Any = object()


def value_problems(settings: TenantSettings, guard: UrlGuard | None = None) -> list[Problem]:
    """What pydantic's types do not say: real time zones, e-mail addresses, http(s) URLs (and,
    with a guard, ones it does not refuse) and phone numbers. Applied to updates only: stored
    settings always load."""
    problems: list[Problem] = []

    def add(loc: list[str | int], msg: str) -> None:
        problems.append({"loc": loc, "msg": msg})

    if not _is_zone(settings.timezone):
        add(["timezone"], f"{settings.timezone!r} is not an IANA time zone (e.g. Europe/Amsterdam)")
    urls: list[tuple[list[str | int], str | None]] = []
    if settings.waha is not None:
        urls.append((["waha", "base_url"], settings.waha.base_url))
    if settings.whatsapp is not None:
        urls.append((["whatsapp", "graph_url"], settings.whatsapp.graph_url))
    if settings.messenger is not None:
        urls.append((["messenger", "graph_url"], settings.messenger.graph_url))
    if settings.chatwoot is not None:
        urls.append((["chatwoot", "base_url"], settings.chatwoot.base_url))
    if settings.llm is not None:
        urls.append(
            (["llm", "openai_compatible_base_url"], settings.llm.openai_compatible_base_url)
        )
    for loc, url in urls:
        problem = url_problem(url, guard)
        if problem:
            add(loc, problem)
    if settings.smtp is not None:
        address = settings.smtp.from_address
        # The default (leadflow@localhost) is a reserved domain, yet a working local relay.
        if address != SmtpSettings().from_address:
            problem = email_problem(address)
            if problem:
                add(["smtp", "from_address"], problem)
    for i, person in enumerate(settings.specialists):
        if person.email is not None:
            problem = email_problem(person.email)
            if problem:
                add(["specialists", i, "email"], problem)
        if person.whatsapp is not None and "@" not in person.whatsapp:  # "@": a chat id
            if phone_e164(person.whatsapp) is None:
                add(
                    ["specialists", i, "whatsapp"],
                    f"{person.whatsapp!r} is not a phone number with its country code "
                    "(e.g. +31612345678) or a WhatsApp chat id",
                )
    return problems


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def url_problem(url: str | None, guard: UrlGuard | None = None) -> str | None:
    """Why `url` cannot be a tenant's endpoint, or None. With a guard, what it can judge
    without DNS too (names are resolved and checked when connecting)."""
    if url is None:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must be an http:// or https:// URL"
    if not host:
        return f"{url!r} has no host"
    if guard is not None:
        try:
            guard.check_url(url)
        except UrlRefused as exc:
            return f"{url!r}: {exc.reason}; the operator can allow it (LEADFLOW_SSRF_ALLOWLIST)"
    return None


def email_problem(address: str) -> str | None:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"{address!r} is not an e-mail address: {exc}"
    return None
