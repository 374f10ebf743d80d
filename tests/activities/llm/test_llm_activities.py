"""LlmActivities picks the configured provider and refuses an unknown one for good."""

from __future__ import annotations

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activities import LlmActivities
from activities.llm.offline import offline_provider
from models.agent import AnalyseInput
from models.common import Intent
from models.repo.playbooks import builtin_playbook
from models.settings import Settings


async def test_analyse_uses_the_configured_provider() -> None:
    async with httpx.AsyncClient() as http:
        acts = LlmActivities({"offline": offline_provider}, Settings(llm_provider="offline"), http)
        request = AnalyseInput(
            tenant_id="t",
            playbook=builtin_playbook("car_dealership"),
            transcript=(),
            new_messages=("Kan ik een proefrit maken?",),
        )
        result = await ActivityEnvironment().run(acts.analyse_messages, request)
    assert result.analysis.intent == Intent.MEETING
    assert result.usage.provider == "offline"


async def test_unknown_provider_is_a_non_retryable_error_naming_the_available_ones() -> None:
    async with httpx.AsyncClient() as http:
        acts = LlmActivities({"offline": offline_provider}, Settings(llm_provider="gpt9"), http)
        request = AnalyseInput(
            tenant_id="t",
            playbook=builtin_playbook("car_dealership"),
            transcript=(),
            new_messages=("hoi",),
        )
        with pytest.raises(ApplicationError) as err:
            await ActivityEnvironment().run(acts.analyse_messages, request)
    assert err.value.type == "UnknownLlmProvider"
    assert err.value.non_retryable
    assert "gpt9" in str(err.value) and "offline" in str(err.value)
