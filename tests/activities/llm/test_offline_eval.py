"""The offline backend on the labelled development set (evals/dev.jsonl), in process.

Each case runs like the conversation workflow runs a turn: perceive the lead's message, keep the
declared fields (`keep_declared`), merge them with what was known, let the playbook's policy
decide the escalation, then write the reply (or the escalation notice) and carry the transcript
and the known fields into the next turn. The reply guard the agent runs checks every reply.
The targets are counts, not times: run with `pytest -s` to see the report.
"""

from __future__ import annotations

from datetime import UTC, datetime

from activities.llm import prompts
from activities.llm.base import PerceptionContext, WritingContext
from activities.llm.guard import check_reply
from activities.llm.offline import OfflineBackend
from models.agent import FieldValue
from models.common import ReplyPurpose, Role, Stage
from models.messages import TranscriptEntry
from models.playbook import Playbook
from models.policy import policy_of
from models.repo.playbooks import builtin_playbook
from workers.eval_metrics import (
    DEFAULT_DEV_SET,
    EvalCase,
    TurnLabel,
    TurnObservation,
    compute_report,
    format_report,
    load_cases,
)
from workflows.escalation import decide_escalation, keep_declared

AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def guard_blocks(
    reply: str, lead_texts: list[str], playbook: Playbook, language: str | None
) -> bool:
    """Whether the reply guard the agent runs would block this reply."""
    verdict = check_reply(
        reply,
        lead_language=language,
        allowed_languages=playbook.languages,
        lead_texts=lead_texts,
        knowledge_texts=[],
        protected_texts=prompts.protected_texts(playbook),
        public_texts=prompts.public_texts(playbook),
        forbidden_promises=playbook.forbidden_promises,
    )
    return not verdict.ok


async def run_case(
    backend: OfflineBackend, case: EvalCase
) -> list[tuple[TurnLabel, TurnObservation]]:
    playbook = builtin_playbook(case.playbook)
    policy = policy_of(playbook)
    transcript: list[TranscriptEntry] = []
    known: dict[str, FieldValue] = {}
    pairs: list[tuple[TurnLabel, TurnObservation]] = []
    for number, label in enumerate(case.turns):
        perceived = await backend.perceive(
            PerceptionContext(
                playbook=playbook,
                new_messages=(label.text,),
                transcript=tuple(transcript),
                known_fields=dict(known),
            )
        )
        perception = perceived.perception
        kept = keep_declared(policy, perception.fields)
        known = {**known, **kept}
        decision = decide_escalation(policy, perception, text=label.text, fields=known)
        transcript.append(TranscriptEntry(role=Role.LEAD, text=label.text, at=AT))
        written = await backend.write(
            WritingContext(
                playbook=playbook,
                purpose=ReplyPurpose.ESCALATION_NOTICE if decision else ReplyPurpose.REPLY,
                stage=Stage.QUALIFYING,
                transcript=tuple(transcript),
                perception=perception,
                known_fields=dict(known),
                language=perception.language,
                escalation_rule=decision.rule if decision else None,
            )
        )
        lead_texts = [e.text for e in transcript if e.role == Role.LEAD]
        transcript.append(TranscriptEntry(role=Role.AI, text=written.text, at=AT))
        calls = (*perceived.calls, *written.calls)
        pairs.append(
            (
                label,
                TurnObservation(
                    case_id=case.id,
                    turn=number + 1,
                    intent=perception.intent,
                    secondary=perception.secondary_intents,
                    escalated=decision is not None,
                    rule=decision.rule if decision else None,
                    fields=kept,
                    guard_blocked=guard_blocks(
                        written.text, lead_texts, playbook, perception.language
                    ),
                    model_calls=len(calls),
                    input_tokens=sum(c.input_tokens for c in calls),
                    output_tokens=sum(c.output_tokens for c in calls),
                    cached_tokens=sum(c.cached_tokens for c in calls),
                    latency_ms=float(sum(c.latency_ms for c in calls)),
                ),
            )
        )
    return pairs


async def test_offline_backend_meets_the_targets_on_the_dev_set() -> None:
    cases = load_cases(DEFAULT_DEV_SET)
    backend = OfflineBackend()
    pairs: list[tuple[TurnLabel, TurnObservation]] = []
    for case in cases:
        pairs.extend(await run_case(backend, case))
    report = compute_report(pairs)
    print(f"\n{len(cases)} cases, {report.turns} turns\n" + format_report(report, max_misses=40))

    assert report.turns >= 150
    assert sum(1 for c in cases if len(c.turns) > 1) >= 10
    assert {c.playbook for c in cases} == {"car_dealership", "b2b_outreach"}
    assert report.intent_accuracy >= 0.90
    assert report.escalation_recall == 1.0, [
        m for m in report.escalation_misses if m.kind == "missed"
    ]
    assert report.escalation_precision >= 0.8
    assert report.field_f1 >= 0.90
    assert report.guard_blocks == 0
    assert report.model_calls == 2 * report.turns  # one perception, one reply per turn
    assert report.cost_usd == 0.0
