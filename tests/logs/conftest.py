"""Fixtures of the log tests: what a test configured is undone after it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio import activity, workflow

from workers import logs


class Captured:
    """What the process logged through `logs.configure` while a test ran."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def configure(self, fmt: logs.LogFormat) -> None:
        logs.configure(fmt, stream=self.stream)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Yields a Captured; afterwards the root logger, httpx's level and the SDK's message
    flags are as before, whatever the test configured (also through the CLI)."""
    root = logging.getLogger()
    level = root.level
    httpx_level = logging.getLogger("httpx").level
    on_message = (
        activity.logger.activity_info_on_message,
        workflow.logger.workflow_info_on_message,
    )
    yield Captured()
    for handler in [h for h in root.handlers if getattr(h, "_leadflow", False)]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(httpx_level)
    activity.logger.activity_info_on_message, workflow.logger.workflow_info_on_message = on_message
