"""The offline provider's language pack: keywords, word lists, templates, questions and labels.

A pack is a YAML file in activities/llm/packs/. `generic.yaml` is the base every other pack
extends; a domain pack (car_dealership.yaml, b2b_outreach.yaml) adds its vocabulary and texts.
Which pack a playbook gets: `playbook.offline_pack`, else the pack named like the playbook,
else `generic`; the playbook's own `offline:` overrides (and the legacy inline keywords,
templates, questions and labels the playbook loader moves there) are merged on top.

Merging is a deep merge of mappings; a leaf (a text or a word list) replaces the one below it,
so a playbook that lists its own keywords for an intent in one language replaces exactly that
list and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.playbook import Playbook

PACK_DIR = Path(__file__).parent / "packs"
BASE_PACK = "generic"

Words = dict[str, tuple[str, ...]]  # language -> words or phrases
Texts = dict[str, str]  # language -> text


class OfflinePackError(ValueError):
    """A pack file or a playbook's `offline:` overrides do not make a valid pack."""


class Topic(BaseModel):
    """Something a lead asks about that the business may have written down (mileage, opening
    hours, warranty): the words that ask about it, and the words that find the answer in a
    knowledge hit or in the playbook's persona."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    keywords: Words = Field(default_factory=dict, description="Words that ask about the topic.")
    evidence: tuple[str, ...] = Field(
        default=(), description="Words of a sentence that answers it (any language)."
    )
    per_item: bool = Field(
        default=False,
        description="A property of one product (a car's mileage): without knowing which one, "
        "the reply asks which one instead of guessing.",
    )
    label: Texts = Field(default_factory=dict, description="How the reply names the topic.")


class OfflinePack(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = BASE_PACK
    extends: str | None = Field(default=None, description="The pack this one adds to.")
    keywords: dict[str, Words] = Field(
        default_factory=dict, description="Intent -> language -> words (whole words; * = any end)."
    )
    words: dict[str, Words] = Field(
        default_factory=dict,
        description="Named word lists (language, positive, negative, opt_out, injection, ...).",
    )
    topics: dict[str, Topic] = Field(default_factory=dict)
    templates: dict[str, Texts] = Field(default_factory=dict)
    questions: dict[str, Texts] = Field(
        default_factory=dict, description="Field -> language -> the question that asks for it."
    )
    labels: dict[str, Texts] = Field(
        default_factory=dict, description="Field -> language -> how a noted value is named."
    )
    makes: dict[str, str] = Field(
        default_factory=dict, description="Lower-case alias -> make (car packs)."
    )
    models: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="Lower-case model named alone -> (make, model)."
    )

    def word_list(self, name: str) -> tuple[str, ...]:
        """Every word of a named list, all languages together (leads mix them)."""
        found: list[str] = []
        for words in self.words.get(name, {}).values():
            found.extend(w for w in words if w not in found)
        return tuple(found)

    def text(self, key: str, language: str, fallback_language: str = "en") -> str | None:
        texts = self.templates.get(key)
        if not texts:
            return None
        for candidate in (language, fallback_language, "en"):
            if candidate in texts:
                return texts[candidate]
        return next(iter(texts.values()), None)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = deep_merge(below, value)
        else:
            merged[key] = value
    return merged


def available_packs() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PACK_DIR.glob("*.yaml")))


@lru_cache(maxsize=32)
def _raw_pack(name: str) -> dict[str, Any]:
    """The pack's own file merged over the pack it extends (generic by default)."""
    path = PACK_DIR / f"{name}.yaml"
    if not path.is_file():
        raise OfflinePackError(
            f"unknown offline pack {name!r}; available: {', '.join(available_packs())}"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise OfflinePackError(f"offline pack {name!r} is not a mapping")
    parent = data.get("extends", None if name == BASE_PACK else BASE_PACK)
    if parent:
        if parent == name:
            raise OfflinePackError(f"offline pack {name!r} extends itself")
        data = deep_merge(_raw_pack(str(parent)), data)
    data["name"] = name
    return data


def _validate(data: Mapping[str, Any], where: str) -> OfflinePack:
    try:
        return OfflinePack.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise OfflinePackError(f"{where}: {problems}") from exc


@lru_cache(maxsize=32)
def load_pack(name: str) -> OfflinePack:
    return _validate(_raw_pack(name), f"offline pack {name!r}")


def pack_name_for(playbook: Playbook) -> str:
    if playbook.offline_pack:
        return playbook.offline_pack
    if (PACK_DIR / f"{playbook.name}.yaml").is_file():
        return playbook.name
    return BASE_PACK


_BY_PLAYBOOK: dict[str, OfflinePack] = {}
_BY_PLAYBOOK_MAX = 256


def pack_for(playbook: Playbook) -> OfflinePack:
    """The pack this playbook's conversations use, with the playbook's overrides on top."""
    key = playbook.content_hash
    cached = _BY_PLAYBOOK.get(key)
    if cached is not None:
        return cached
    name = pack_name_for(playbook)
    if playbook.offline:
        raw = deep_merge(_raw_pack(name), playbook.offline)
        raw["name"] = name
        pack = _validate(raw, f"playbook {playbook.name!r}: offline overrides of pack {name!r}")
    else:
        pack = load_pack(name)
    if len(_BY_PLAYBOOK) >= _BY_PLAYBOOK_MAX:
        _BY_PLAYBOOK.clear()  # tenants' playbooks change rarely; a full reset is cheap
    _BY_PLAYBOOK[key] = pack
    return pack
