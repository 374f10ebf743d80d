"""`leadflow up --workers`: the option's validation and what each worker process is given (the
end-to-end run is tests/workers/test_up.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.settings import Settings
from workers.cli import _default_workers, _worker_specs, app
from workers.devserver import dev_server_environment


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--workers", "0"], {}), ([], {"LEADFLOW_UP_WORKERS": "0"}), (["--workers", "-2"], {})],
)
def test_fewer_than_one_worker_is_refused_before_anything_starts(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        app, ["up", "--data-dir", str(tmp_path / "d"), *args], env={"COLUMNS": "300", **env}
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--workers'" in result.output
    assert "Input should be greater than or equal to 1" in result.output
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    "env",
    [
        {"LEADFLOW_WORKER_BUILD_ID": "b1"},
        {"LEADFLOW_WORKER_DEPLOYMENT_NAME": "leadflow", "LEADFLOW_WORKER_BUILD_ID": "b1"},
    ],
)
def test_worker_versioning_is_refused_before_anything_starts(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Nothing under `up` would make the version current: its workers would get no task."""
    result = CliRunner().invoke(
        app, ["up", "--data-dir", str(tmp_path / "d")], env={"COLUMNS": "300", **env}
    )
    assert result.exit_code == 1, result.output
    assert "leadflow up runs unversioned workers" in result.output
    assert not (tmp_path / "d").exists()


def test_not_a_number_is_refused() -> None:
    result = CliRunner().invoke(app, ["up"], env={"COLUMNS": "300", "LEADFLOW_UP_WORKERS": "many"})
    assert result.exit_code == 2
    assert "Invalid value for '--workers' (env var: 'LEADFLOW_UP_WORKERS')" in result.output
    assert "Input should be a valid integer" in result.output


def test_the_default_is_one_worker_per_core() -> None:
    assert _default_workers() >= 1
    help_text = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "300"}).output
    assert f"the number of cores ({_default_workers()} here)" in help_text
    assert "LEADFLOW_UP_WORKERS" in help_text


def test_each_worker_runs_leadflow_worker_on_the_settings_of_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_UP_WORKERS", "3")
    monkeypatch.setenv("LEADFLOW_LLM_PROVIDER", "offline")
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    settings = Settings(data_dir=tmp_path / "data", temporal_address="127.0.0.1:17233")
    specs = _worker_specs(settings, 3, verbose=True)
    assert [s.name for s in specs] == ["worker 1", "worker 2", "worker 3"]
    assert [s.log_path for s in specs] == [
        (tmp_path / "data" / "logs" / f"worker-{i}.log").resolve() for i in (1, 2, 3)
    ]
    for spec in specs:
        assert list(spec.argv) == [sys.executable, "-m", "workers.cli", "worker", "--verbose"]
        env = spec.env
        assert env is not None
        assert env["LEADFLOW_DATA_DIR"] == str((tmp_path / "data").resolve())
        assert env["LEADFLOW_DATABASE_URL"] == settings.resolved_database_url
        assert env["LEADFLOW_DATABASE_URL"].endswith(str(tmp_path / "data" / "leadflow.db"))
        assert env["LEADFLOW_TEMPORAL_ADDRESS"] == "127.0.0.1:17233"
        assert env["LEADFLOW_TEMPORAL_NAMESPACE"] == settings.temporal_namespace
        assert env["LEADFLOW_LLM_PROVIDER"] == "offline"  # the rest of the environment too
        assert "LEADFLOW_UP_WORKERS" not in env
    assert "--verbose" not in _worker_specs(settings, 1, verbose=False)[0].argv


def test_workers_get_the_background_niceness_of_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADFLOW_BACKGROUND_NICENESS", raising=False)
    assert Settings(data_dir=tmp_path).background_niceness == 10
    assert {s.niceness for s in _worker_specs(Settings(data_dir=tmp_path), 2, verbose=False)} == {
        10
    }
    monkeypatch.setenv("LEADFLOW_BACKGROUND_NICENESS", "0")
    assert _worker_specs(Settings(data_dir=tmp_path), 1, verbose=False)[0].niceness == 0
    help_text = CliRunner().invoke(app, ["up", "--help"], env={"COLUMNS": "300"}).output
    assert "--background-niceness" in help_text and "LEADFLOW_BACKGROUND_NICENESS" in help_text
    refused = CliRunner().invoke(app, ["up", "--background-niceness", "20"])
    assert refused.exit_code == 2


def test_the_dev_server_gets_half_the_cores_unless_gomaxprocs_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOMAXPROCS", raising=False)
    assert dev_server_environment(cpus=2)["GOMAXPROCS"] == "1"
    assert dev_server_environment(cpus=8)["GOMAXPROCS"] == "4"
    assert dev_server_environment(cpus=1)["GOMAXPROCS"] == "1"
    monkeypatch.setenv("GOMAXPROCS", "3")
    assert dev_server_environment(cpus=8)["GOMAXPROCS"] == "3"
