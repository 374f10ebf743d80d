"""`up`'s workers run on up's settings through their environment (workers/cli.py
`_worker_specs`): among them where up's API listens, which the unsubscribe links of campaign mail
point at when no LEADFLOW_PUBLIC_URL is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.settings import Settings
from models.unsubscribe import UnsubscribeLinks
from workers.cli import _worker_specs


def test_up_workers_link_to_ups_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_PUBLIC_URL", raising=False)
    settings = Settings(data_dir=tmp_path, api_host="127.0.0.1", api_port=8765)
    first, second = _worker_specs(settings, 2, verbose=False)
    for spec in (first, second):
        assert spec.env is not None
        assert spec.env["LEADFLOW_API_HOST"] == "127.0.0.1"
        assert spec.env["LEADFLOW_API_PORT"] == "8765"

    # What a worker process builds from that environment links to up's API, not the default.
    assert first.env is not None
    for name, value in first.env.items():
        if name.startswith("LEADFLOW_"):
            monkeypatch.setenv(name, value)
    links = UnsubscribeLinks.from_settings(Settings())
    assert links.base_url == "http://127.0.0.1:8765"
