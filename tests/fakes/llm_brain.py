"""A stand-in for a hosted model behind the fake OpenAI/Anthropic servers: it reads the prompt
leadflow sent (the tagged transcript, the task, the schema) the way a model would, and answers
with the offline rules' reading of it. So the conversation end-to-end tests can run the hosted
providers' whole path (prompts, SDK, structured output, validation, ledger) with answers that
make sense for their assertions. It is a fake of a remote system, not of leadflow's code."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any

from activities.llm.amounts import find_amounts
from activities.llm.base import PerceptionContext, WritingContext
from activities.llm.citations import RELAXED_WORDS
from activities.llm.offline import OfflinePerceiver
from activities.llm.offline_write import OfflineWriter
from models.agent import Perception
from models.common import Intent, ReplyPurpose, Role, Stage
from models.inventory import InventoryAnswer, InventoryItem, ItemHit, query_from_fields
from models.messages import TranscriptEntry
from models.playbook import Playbook, neutral_playbook
from models.repo.playbooks import builtin_playbook

_TAGS = {"lead_message": Role.LEAD, "assistant_message": Role.AI, "staff_message": Role.HUMAN}


def _playbook(system: str) -> Playbook:
    for name in ("car_dealership", "b2b_outreach"):
        playbook = builtin_playbook(name)
        if f"# The business: {playbook.business_name}" in system:
            return playbook
    found = re.search(r"# The business: (.+)", system)
    return neutral_playbook(found.group(1).strip() if found else "our team")


def _transcript(text: str) -> tuple[TranscriptEntry, ...]:
    now = datetime.now(UTC)
    return tuple(
        TranscriptEntry(role=_TAGS[tag], text=html.unescape(body), at=now)
        for tag, body in re.findall(
            r"<(lead_message|assistant_message|staff_message)>(.*?)</\1>", text, re.S
        )
    )


def _known(text: str) -> dict[str, Any]:
    found = re.search(r"Known about the lead: (\{.*?\})\n", text)
    return json.loads(found.group(1)) if found else {}


_INVENTORY_RE = re.compile(r"<inventory ([^>]*)>(.*?)</inventory>", re.S)
_CAR_RE = re.compile(r"<car ([^>]*)>(.*?)</car>")
_ATTRIBUTE_RE = re.compile(r'(\w+)="([^"]*)"')


def _attributes(text: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _ATTRIBUTE_RE.findall(text)}


def _inventory(user: str) -> InventoryAnswer | None:
    """The <inventory> block read back the way a model reads it: the cars with their prices,
    links and the wish they answer (the lead's known fields)."""
    found = _INVENTORY_RE.search(user)
    wish = query_from_fields(_known(user))
    if found is None or wish is None:
        return None
    status = _attributes(found.group(1))
    hits = []
    for attributes, title in _CAR_RE.findall(found.group(2)):
        facts = _attributes(attributes)
        price = find_amounts(facts.get("price", ""))
        km = re.sub(r"\D", "", facts.get("km", ""))
        item = InventoryItem(
            key=facts["key"],
            make=html.unescape(title),  # the whole title: the writer names it as given
            fuel=facts.get("fuel"),
            mileage=int(km) if km else None,
            price=price[0].exact if price else None,
            url=facts.get("url", ""),
        )
        hits.append(ItemHit(item=item))
    if status.get("match") == "yes":
        return InventoryAnswer(query=wish, matches=tuple(hits))
    names = {text: name for name, text in RELAXED_WORDS["en"].items()}
    gave_up = re.split(r", | and ", status.get("gave_up", ""))
    relaxed = tuple(names[text] for text in gave_up if text in names)
    return InventoryAnswer(query=wish, alternatives=tuple(hits), relaxed=relaxed)


def _perception(user: str, language: str | None) -> Perception | None:
    said = re.search(
        r"What the lead's last messages say: intent (\w+)(?: \(also ([\w, ]+)\))?", user
    )
    if said is None:
        return None
    secondary = tuple(Intent(i) for i in (said.group(2) or "").split(", ") if i)
    return Perception(
        intent=Intent(said.group(1)), secondary_intents=secondary, language=language or "en"
    )


def _split(body: dict[str, Any]) -> tuple[str, str]:
    """(system text, last user message) of an OpenAI or an Anthropic request."""
    system = body.get("system", "")
    if isinstance(system, list):
        system = "\n".join(block.get("text", "") for block in system)
    user = ""
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(c.get("text", "") for c in content if isinstance(c, dict))
        if message.get("role") == "system":
            system = f"{system}\n{content}"
        elif message.get("role") == "user":
            user = str(content)
    return str(system), user


def _schema_name(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return str(fmt.get("json_schema", {}).get("name"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return str(choice.get("name"))
    return None


def rules_brain(body: dict[str, Any]) -> dict[str, Any] | str:
    system, user = _split(body)
    playbook = _playbook(system)
    schema = _schema_name(body)
    if schema == "report_perception":
        earlier, _, new = user.partition("NEW messages from the lead:")
        context = PerceptionContext(
            playbook=playbook,
            new_messages=tuple(m.text for m in _transcript(new)),
            transcript=_transcript(earlier.split("Known about the lead:")[0]),
            known_fields=_known(user),
        )
        perception = OfflinePerceiver(playbook).perceive(context).model_dump(mode="json")
        declared = [spec.name for spec in playbook.fields] + ["opt_out"]
        perception["fields"] = {name: perception["fields"].get(name) for name in declared}
        return dict(perception)
    if schema == "write_email":
        return {"subject": f"A question from {playbook.business_name}", "body": "Hello!"}
    purpose = re.search(r"# Task: (\w+)", system)
    language = re.search(r"Write in language '(\w+)'", system)
    rule = re.search(r"\(Reason for the handover: (\w+)\.\)", system)
    inventory = _inventory(user)
    context_w = WritingContext(
        playbook=playbook,
        purpose=ReplyPurpose(purpose.group(1)) if purpose else ReplyPurpose.REPLY,
        stage=Stage.QUALIFYING,
        transcript=_transcript(user.split("Known about the lead:")[0]),
        known_fields=_known(user),
        language=language.group(1) if language else None,
        escalation_rule=rule.group(1) if rule else None,
        # Only with an inventory block does the fake read the intent back: the replies of the
        # other end-to-end tests stay what they were.
        perception=_perception(user, language.group(1) if language else None)
        if inventory is not None
        else None,
        inventory=inventory,
    )
    text, _ = OfflineWriter(playbook).write(context_w)
    return text
