"""Scoring an agent backend against the labelled development set (evals/dev.jsonl).

Pure and typed: `load_cases` reads and validates the set, a runner (the offline eval test, the
`leadflow eval` command) turns each labelled turn into a `TurnObservation`, and
`compute_report` scores the pairs. The format of the set is described in evals/README.md.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.agent import FieldValue
from models.common import Intent

DEFAULT_DEV_SET = Path(__file__).resolve().parent.parent / "evals" / "dev.jsonl"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TurnLabel(_Strict):
    """What a human expert reads in one lead message."""

    text: str = Field(min_length=1)
    intent: Intent
    secondary: tuple[Intent, ...] = ()
    escalate: bool = False
    rule: str | None = Field(
        default=None, description="The playbook rule expected to escalate; None: any rule."
    )
    fields: dict[str, FieldValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rule_needs_escalation(self) -> TurnLabel:
        if self.rule is not None and not self.escalate:
            raise ValueError("`rule` is set but `escalate` is false")
        return self


class EvalCase(_Strict):
    id: str = Field(min_length=1)
    playbook: str = Field(min_length=1)
    language: str = Field(min_length=2)
    tags: tuple[str, ...] = ()
    turns: tuple[TurnLabel, ...] = Field(min_length=1)


class EvalSetError(ValueError):
    """The dev set has a line that is not a valid case; the message names the line."""


def load_cases(path: Path | str = DEFAULT_DEV_SET) -> list[EvalCase]:
    """Every case of a JSON-lines file; blank lines and lines starting with // are skipped."""
    source = Path(path)
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("//"):
            continue
        where = f"{source.name}:{number}"
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise EvalSetError(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from exc
        try:
            case = EvalCase.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(line)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise EvalSetError(f"{where}: {problems}") from exc
        if case.id in seen:
            raise EvalSetError(f"{where}: duplicate id {case.id!r} (first on line {seen[case.id]})")
        seen[case.id] = number
        cases.append(case)
    return cases


@dataclass(frozen=True)
class TurnObservation:
    """What a backend and the workflow's policy did with one labelled turn."""

    case_id: str
    turn: int
    intent: Intent | None  # None: not perceived (the conversation was with a human, the AI failed)
    secondary: tuple[Intent, ...] = ()
    escalated: bool = False
    rule: str | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    guard_blocked: bool = False
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float | None = None


@dataclass(frozen=True)
class FieldMiss:
    case_id: str
    turn: int
    field: str
    expected: FieldValue | None
    observed: FieldValue | None


@dataclass(frozen=True)
class EscalationMiss:
    case_id: str
    turn: int
    text: str
    expected_rule: str | None
    observed_rule: str | None
    kind: str  # missed | unexpected | wrong_rule


@dataclass(frozen=True)
class EvalReport:
    turns: int
    not_perceived: int  # turns no model read: sent while a human had the conversation
    intent_correct: int
    confusions: tuple[tuple[str, str, int], ...]  # expected, observed, count (most first)
    escalation_expected: int
    escalation_observed: int
    escalation_true_positive: int
    escalation_wrong_rule: int
    escalation_misses: tuple[EscalationMiss, ...]
    field_expected: int
    field_observed: int
    field_correct: int
    field_misses: tuple[FieldMiss, ...]
    guard_blocks: int
    model_calls: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost_usd: float
    latency_p50_ms: float | None
    latency_p90_ms: float | None

    @property
    def intent_accuracy(self) -> float:
        """Over the turns a model perceived (intent and fields of a turn sent to a human are
        not the AI's to read)."""
        return _ratio(self.intent_correct, self.turns - self.not_perceived)

    @property
    def escalation_precision(self) -> float:
        return _ratio(self.escalation_true_positive, self.escalation_observed, empty=1.0)

    @property
    def escalation_recall(self) -> float:
        return _ratio(self.escalation_true_positive, self.escalation_expected, empty=1.0)

    @property
    def field_precision(self) -> float:
        return _ratio(self.field_correct, self.field_observed, empty=1.0)

    @property
    def field_recall(self) -> float:
        return _ratio(self.field_correct, self.field_expected, empty=1.0)

    @property
    def field_f1(self) -> float:
        p, r = self.field_precision, self.field_recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def per_turn(self, total: float) -> float:
        return _ratio(total, self.turns)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            intent_accuracy=self.intent_accuracy,
            escalation_precision=self.escalation_precision,
            escalation_recall=self.escalation_recall,
            field_precision=self.field_precision,
            field_recall=self.field_recall,
            field_f1=self.field_f1,
            model_calls_per_turn=self.per_turn(self.model_calls),
            tokens_per_turn=self.per_turn(self.input_tokens + self.output_tokens),
            cost_usd_per_turn=self.per_turn(self.cost_usd),
        )
        return data


def _ratio(part: float, whole: float, *, empty: float = 0.0) -> float:
    return part / whole if whole else empty


def normalise(value: FieldValue) -> FieldValue:
    """Strings compare case- and whitespace-insensitively (trailing punctuation ignored);
    numbers and booleans exactly."""
    if isinstance(value, str):
        return " ".join(value.casefold().split()).strip(" .,!?")
    return value


def _same(expected: FieldValue, observed: FieldValue) -> bool:
    if isinstance(expected, bool) or isinstance(observed, bool):
        return isinstance(expected, bool) and isinstance(observed, bool) and expected == observed
    return normalise(expected) == normalise(observed)


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)  # nearest-rank
    return ordered[rank]


def compute_report(
    pairs: Sequence[tuple[TurnLabel, TurnObservation]], *, top_confusions: int = 8
) -> EvalReport:
    confusions: Counter[tuple[str, str]] = Counter()
    intent_correct = 0
    esc_expected = esc_observed = esc_tp = esc_wrong_rule = 0
    esc_misses: list[EscalationMiss] = []
    f_expected = f_observed = f_correct = 0
    f_misses: list[FieldMiss] = []
    latencies: list[float] = []
    guard = calls = tokens_in = tokens_out = tokens_cached = 0
    cost = 0.0
    not_perceived = 0
    for label, seen in pairs:
        perceived = seen.intent is not None
        if seen.intent is None:
            not_perceived += 1
        elif label.intent == seen.intent:
            intent_correct += 1
        else:
            confusions[(label.intent.value, seen.intent.value)] += 1

        esc_expected += label.escalate
        esc_observed += seen.escalated
        if label.escalate and seen.escalated:
            esc_tp += 1
            if label.rule is not None and seen.rule != label.rule:
                esc_wrong_rule += 1
                esc_misses.append(
                    EscalationMiss(
                        seen.case_id, seen.turn, label.text, label.rule, seen.rule, "wrong_rule"
                    )
                )
        elif label.escalate != seen.escalated:
            esc_misses.append(
                EscalationMiss(
                    seen.case_id,
                    seen.turn,
                    label.text,
                    label.rule,
                    seen.rule,
                    "missed" if label.escalate else "unexpected",
                )
            )

        if perceived:
            f_expected += len(label.fields)
            f_observed += len(seen.fields)
        for name in sorted(set(label.fields) | set(seen.fields)) if perceived else ():
            want, got = label.fields.get(name), seen.fields.get(name)
            if want is not None and got is not None and _same(want, got):
                f_correct += 1
            else:
                f_misses.append(FieldMiss(seen.case_id, seen.turn, name, want, got))

        guard += seen.guard_blocked
        calls += seen.model_calls
        tokens_in += seen.input_tokens
        tokens_out += seen.output_tokens
        tokens_cached += seen.cached_tokens
        cost += seen.cost_usd
        if seen.latency_ms is not None:
            latencies.append(seen.latency_ms)
    return EvalReport(
        turns=len(pairs),
        not_perceived=not_perceived,
        intent_correct=intent_correct,
        confusions=tuple((e, o, n) for (e, o), n in confusions.most_common(top_confusions)),
        escalation_expected=esc_expected,
        escalation_observed=esc_observed,
        escalation_true_positive=esc_tp,
        escalation_wrong_rule=esc_wrong_rule,
        escalation_misses=tuple(esc_misses),
        field_expected=f_expected,
        field_observed=f_observed,
        field_correct=f_correct,
        field_misses=tuple(f_misses),
        guard_blocks=guard,
        model_calls=calls,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=tokens_cached,
        cost_usd=cost,
        latency_p50_ms=_percentile(latencies, 0.5),
        latency_p90_ms=_percentile(latencies, 0.9),
    )


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _clip(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_report(report: EvalReport, *, max_misses: int = 15) -> str:
    """A plain-text report: the headline table, then what went wrong, most telling first."""
    r = report
    lat = (
        f"p50 {r.latency_p50_ms:.1f} ms, p90 {r.latency_p90_ms:.1f} ms"
        if r.latency_p50_ms is not None and r.latency_p90_ms is not None
        else "not measured"
    )
    rows = [
        ("metric", "value", "counts"),
        ("turns", str(r.turns), ""),
        (
            "intent accuracy",
            f"{r.intent_accuracy:.3f}",
            f"{r.intent_correct}/{r.turns - r.not_perceived}"
            + (f" ({r.not_perceived} sent to a human, not read)" if r.not_perceived else ""),
        ),
        (
            "escalation precision",
            f"{r.escalation_precision:.3f}",
            f"{r.escalation_true_positive}/{r.escalation_observed}",
        ),
        (
            "escalation recall",
            f"{r.escalation_recall:.3f}",
            f"{r.escalation_true_positive}/{r.escalation_expected}"
            + (f" ({r.escalation_wrong_rule} by another rule)" if r.escalation_wrong_rule else ""),
        ),
        ("field precision", f"{r.field_precision:.3f}", f"{r.field_correct}/{r.field_observed}"),
        ("field recall", f"{r.field_recall:.3f}", f"{r.field_correct}/{r.field_expected}"),
        ("field F1", f"{r.field_f1:.3f}", ""),
        ("guard blocks", str(r.guard_blocks), ""),
        ("model calls / turn", f"{r.per_turn(r.model_calls):.2f}", str(r.model_calls)),
        (
            "tokens / turn (in+out)",
            f"{r.per_turn(r.input_tokens + r.output_tokens):.1f}",
            f"in {r.input_tokens}, out {r.output_tokens}, cached {r.cached_tokens}",
        ),
        ("cost / turn (USD)", f"{r.per_turn(r.cost_usd):.6f}", f"total {r.cost_usd:.4f}"),
        ("latency", lat, ""),
    ]
    lines = _table(rows)
    if r.confusions:
        lines += ["", "intent confusions (expected -> observed):"]
        lines += [f"  {e} -> {o}: {n}" for e, o, n in r.confusions]
    if r.escalation_misses:
        lines += ["", "escalation misses:"]
        for miss in r.escalation_misses[:max_misses]:
            lines.append(
                f"  {miss.case_id}#{miss.turn} {miss.kind}: expected {miss.expected_rule or '-'},"
                f" got {miss.observed_rule or '-'}: {_clip(miss.text)}"
            )
    if r.field_misses:
        lines += ["", f"field misses ({len(r.field_misses)}):"]
        for fm in r.field_misses[:max_misses]:
            lines.append(
                f"  {fm.case_id}#{fm.turn} {fm.field}: "
                f"expected {fm.expected!r}, got {fm.observed!r}"
            )
        if len(r.field_misses) > max_misses:
            lines.append(f"  … and {len(r.field_misses) - max_misses} more")
    return "\n".join(lines)
