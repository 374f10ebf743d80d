"""Which playbook a tenant uses: its own YAML, else a built-in one by name.

Errors are `PlaybookError` (a ValueError) whose message a tenant can act on: the YAML line of a
syntax error, or each invalid field with its path, e.g. `intents.0.intent: Input should be ...`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

import yaml
from pydantic import ValidationError

from models.playbook import PLAYBOOK_DIR, Playbook, builtin_playbooks, neutral_playbook
from models.tenant import TenantSettings


class PlaybookError(ValueError):
    """A playbook that cannot be used; `errors` lists each problem as one readable line."""

    def __init__(self, message: str, errors: tuple[str, ...] = ()) -> None:
        super().__init__(message if not errors else f"{message}: " + "; ".join(errors))
        self.errors = errors or (message,)


@cache
def _builtins() -> dict[str, Playbook]:
    # The shipped files never change while the process runs; parse them once.
    return builtin_playbooks()


def builtin_names() -> tuple[str, ...]:
    return tuple(sorted(_builtins()))


def builtin_playbook(name: str) -> Playbook:
    playbooks = _builtins()
    if name not in playbooks:
        raise PlaybookError(
            f"unknown playbook {name!r}; built-in playbooks are: {', '.join(sorted(playbooks))}"
        )
    return playbooks[name]


def _format_validation_error(exc: ValidationError) -> tuple[str, ...]:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return tuple(lines)


# A playbook is a few hundred values. YAML aliases can make a small text stand for billions
# of them (each `*a` repeats a whole subtree), which validation would walk for minutes.
MAX_PLAYBOOK_NODES = 100_000


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has once its aliases are expanded (a shared node counts
    each time it is used), computed over the node graph without expanding it."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack: list[yaml.Node] = [root]
    seen: set[int] = set()
    while stack:  # children before parents, iteratively: no recursion limit on deep documents
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        stack.extend(_children(node))
    for node in reversed(order):
        sizes[id(node)] = min(
            1 + sum(sizes.get(id(child), 1) for child in _children(node)), 10 * MAX_PLAYBOOK_NODES
        )
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _load_yaml(text: str) -> object:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_PLAYBOOK_NODES:
            raise PlaybookError(
                f"the playbook is too large once its YAML aliases are expanded "
                f"(more than {MAX_PLAYBOOK_NODES} values)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_playbook(text: str) -> Playbook:
    """Parse and validate playbook YAML, raising `PlaybookError` with readable messages."""
    try:
        raw = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlaybookError(f"the playbook is not valid YAML{where}: {problem}") from exc
    except RecursionError as exc:  # `[[[[…`: the parser recurses per level
        raise PlaybookError("the playbook is nested too deeply to be a playbook") from exc
    if not isinstance(raw, dict):
        raise PlaybookError(
            "the playbook must be a YAML mapping (name:, business_name:, ...), "
            f"not {type(raw).__name__}"
        )
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        raise PlaybookError("the playbook is invalid", _format_validation_error(exc)) from exc


def validate_playbook_yaml(text: str) -> list[str]:
    """Readable problems of an uploaded playbook; an empty list means it is valid."""
    try:
        parse_playbook(text)
    except PlaybookError as exc:
        return list(exc.errors)
    return []


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> Playbook:
    # Every conversation turn resolves the playbook; custom YAML is parsed once per text.
    return parse_playbook(text)


@lru_cache(maxsize=256)
def _neutral(tenant_name: str) -> Playbook:
    return neutral_playbook(tenant_name)


def playbook_for(tenant_settings: TenantSettings, *, tenant_name: str = "our team") -> Playbook:
    """The tenant's custom playbook if it has one, else the built-in one it names, else a
    neutral persona under the tenant's own name (never a demo business's identity)."""
    if tenant_settings.playbook_yaml:
        return _parse_cached(tenant_settings.playbook_yaml)
    if tenant_settings.playbook:
        return builtin_playbook(tenant_settings.playbook)
    return _neutral(tenant_name)


@dataclass(frozen=True)
class PlaybookText:
    """The tenant's playbook as YAML to read and edit, with where it comes from."""

    yaml: str
    playbook: Playbook
    source: Literal["custom", "builtin", "neutral"]
    builtin: str | None = None  # the built-in playbook's name


def playbook_text(
    tenant_settings: TenantSettings, *, tenant_name: str = "our team"
) -> PlaybookText:
    """What `playbook_for` uses, as text: the tenant's own YAML as stored; a built-in one as
    its shipped file (comments included); the neutral persona dumped as YAML (it has no file).
    Each parses back to the same playbook, so saving it unchanged changes nothing."""
    playbook = playbook_for(tenant_settings, tenant_name=tenant_name)
    if tenant_settings.playbook_yaml:
        return PlaybookText(tenant_settings.playbook_yaml, playbook, "custom")
    if tenant_settings.playbook:
        text = (PLAYBOOK_DIR / f"{tenant_settings.playbook}.yaml").read_text(encoding="utf-8")
        return PlaybookText(text, playbook, "builtin", tenant_settings.playbook)
    dumped = yaml.safe_dump(
        playbook.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100
    )
    return PlaybookText(dumped, playbook, "neutral")
