"""What a model call costs: prices per million tokens by "provider:model", and the arithmetic.

Lookup order for a call of `provider` and `model`:
1. the exact entry "provider:model", then, for a dated snapshot such as
   "claude-haiku-4-5-20251001" or "gpt-4.1-2025-04-14", the entry of its alias;
2. the longest wildcard entry "provider:<prefix>*" that `model` starts with
   ("gpt-4.1-mini*" wins over "gpt-4.1*");
3. the provider's catch-all "provider:*";
4. nothing: the price is unknown, the cost is recorded as 0 and `CallCost.price_known` is False
   so the caller can warn (once) instead of silently under-reporting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from models.messages import Frozen
from models.settings import Settings

PER_TOKENS = 1_000_000


class ModelPrice(Frozen):
    """USD per million tokens. A missing cached_input or cache_write is billed as input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float = Field(ge=0, description="Input tokens read from the prompt cache.")
    cache_write: float = Field(ge=0, description="Input tokens written to the prompt cache.")

    @model_validator(mode="before")
    @classmethod
    def _cache_prices_default_to_input(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "input" in data:
            data = dict(data)
            data.setdefault("cached_input", data["input"])
            data.setdefault("cache_write", data["input"])
        return data


class CallCost(Frozen):
    usd: float
    price_known: bool


def _price(input: float, output: float, cached_input: float, cache_write: float) -> ModelPrice:
    return ModelPrice(
        input=input, output=output, cached_input=cached_input, cache_write=cache_write
    )


FREE = _price(0, 0, 0, 0)

# List prices (USD per million tokens) as published by the vendors in late 2025: a default so the
# ledger says something useful out of the box. Negotiated rates, batch discounts, long-context
# surcharges and later price changes are not modelled: override them with LEADFLOW_LLM_PRICES.
# Anthropic: cache reads 0.1x input, 5-minute cache writes 1.25x input. OpenAI: cached input is
# discounted, cache writes are free (billed as nothing extra).
_LIST_PRICES: dict[str, ModelPrice] = {
    "anthropic:claude-haiku-4-5": _price(1.00, 5.00, 0.10, 1.25),
    "anthropic:claude-sonnet-4-5": _price(3.00, 15.00, 0.30, 3.75),
    "anthropic:claude-opus-4-1": _price(15.00, 75.00, 1.50, 18.75),
    "openai:gpt-4.1": _price(2.00, 8.00, 0.50, 0.0),
    "openai:gpt-4.1-mini": _price(0.40, 1.60, 0.10, 0.0),
    "openai:gpt-4o-mini": _price(0.15, 0.60, 0.075, 0.0),
    "openai:gpt-5-mini": _price(0.25, 2.00, 0.025, 0.0),
}

DEFAULT_PRICES: dict[str, ModelPrice] = {
    **_LIST_PRICES,
    "offline:*": FREE,  # the built-in rule-based model
    "openai_compatible:*": FREE,  # self-hosted: no per-token bill
}

# A dated snapshot ("claude-haiku-4-5-20251001", "gpt-4.1-2025-04-14") costs what its alias costs.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")


class PriceConfigError(ValueError):
    """LEADFLOW_LLM_PRICES is malformed; raised when the price table is built (at startup)."""


def _check_key(key: str) -> None:
    provider, sep, model = key.partition(":")
    if not sep or not provider or not model:
        raise PriceConfigError(f'price key {key!r} is not "provider:model" (or "provider:*")')
    if "*" in model[:-1]:
        raise PriceConfigError(f"price key {key!r}: '*' may only end the model name")


def reports_cached_in_input(provider: str) -> bool:
    """Whether the provider's `input_tokens` already count the cached ones.

    OpenAI (and OpenAI-compatible servers) report `prompt_tokens` including
    `prompt_tokens_details.cached_tokens`; Anthropic reports `input_tokens` excluding
    `cache_read_input_tokens` and `cache_creation_input_tokens`."""
    return provider != "anthropic"


def cost_usd(
    price: ModelPrice,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    cached_included_in_input: bool,
) -> float:
    """The call's cost in USD. Cached tokens are billed at `cached_input`, cache writes at
    `cache_write`, the rest of the input at `input`.

    `cached_included_in_input` says how the vendor counted: True (OpenAI) when `input_tokens`
    already contains the cached and cache-write tokens, so they are taken out before billing the
    rest at the full input price; False (Anthropic) when `input_tokens` is only the uncached
    remainder. Getting this wrong bills cached tokens twice or not at all."""
    if cached_included_in_input:
        uncached = max(0, input_tokens - cached_tokens - cache_write_tokens)
    else:
        uncached = input_tokens
    total = (
        uncached * price.input
        + cached_tokens * price.cached_input
        + cache_write_tokens * price.cache_write
        + output_tokens * price.output
    )
    # 8 decimals: what the ledger's column keeps.
    return round(total / PER_TOKENS, 8)


class PriceTable:
    """The built-in list prices merged with the operator's overrides (overrides win)."""

    def __init__(self, overrides: Mapping[str, Mapping[str, float]] | None = None) -> None:
        prices = dict(DEFAULT_PRICES)
        for key, value in (overrides or {}).items():
            _check_key(key)
            try:
                prices[key] = ModelPrice.model_validate(value)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                    for e in exc.errors()
                )
                raise PriceConfigError(f"LEADFLOW_LLM_PRICES[{key!r}]: {problems}") from exc
        self._exact = {k: v for k, v in prices.items() if not k.endswith("*")}
        # Longest prefix first, so "gpt-4.1-mini*" wins over "gpt-4.1*"; "provider:*" comes last.
        self._wildcards = sorted(
            ((k[:-1], v) for k, v in prices.items() if k.endswith("*")),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceTable:
        """From `LEADFLOW_LLM_PRICES`; a malformed entry raises PriceConfigError naming it, so
        build the table when the process starts."""
        return cls(settings.llm_prices)

    def lookup(self, provider: str, model: str) -> ModelPrice | None:
        key = f"{provider}:{model}"
        exact = self._exact.get(key)
        if exact is None:
            exact = self._exact.get(_SNAPSHOT_SUFFIX.sub("", key))
        if exact is not None:
            return exact
        for prefix, price in self._wildcards:
            if key.startswith(prefix):
                return price
        return None

    def cost(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        cached_included_in_input: bool | None = None,
    ) -> CallCost:
        """The call's cost; an unknown price costs 0 with `price_known=False`.

        `cached_included_in_input` defaults to the provider's convention
        (`reports_cached_in_input`)."""
        price = self.lookup(provider, model)
        if price is None:
            return CallCost(usd=0.0, price_known=False)
        included = (
            reports_cached_in_input(provider)
            if cached_included_in_input is None
            else cached_included_in_input
        )
        usd = cost_usd(
            price,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            cache_write_tokens=cache_write_tokens,
            cached_included_in_input=included,
        )
        return CallCost(usd=usd, price_known=True)
