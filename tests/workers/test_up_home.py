"""Where the configuration and the default data dir are (models/settings.py): in LEADFLOW_HOME,
which `./leadflow` sets to its checkout while it runs the command in the caller's directory;
without it, in the current directory. Each case is a fresh interpreter, as each command is
(the home is read once, when the settings module loads). `./leadflow` itself, run from another
directory, is tests/workers/test_up_supervised.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import json; from models.settings import Settings; s = Settings(); "
    "print(json.dumps({'data_dir': str(s.data_dir), 'resolved': str(s.data_dir.resolve()), "
    "'namespace': s.temporal_namespace}))"
)


def _settings_in(cwd: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    # The project's modules from the checkout (as the installed console script finds them).
    clean["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    shown: dict[str, str] = json.loads(done.stdout)
    return shown


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "checkout"
    elsewhere = tmp_path / "elsewhere"
    for place, namespace in ((home, "from-checkout"), (elsewhere, "from-elsewhere")):
        place.mkdir()
        (place / ".env").write_text(f"LEADFLOW_TEMPORAL_NAMESPACE={namespace}\n")
    return home, elsewhere


def test_leadflow_home_holds_the_env_file_and_the_default_data_dir(
    places: tuple[Path, Path],
) -> None:
    home, elsewhere = places
    shown = _settings_in(elsewhere, LEADFLOW_HOME=str(home))
    assert shown == {
        "data_dir": str(home / ".leadflow"),
        "resolved": str(home / ".leadflow"),
        "namespace": "from-checkout",
    }


def test_without_it_the_current_directory_does(places: tuple[Path, Path]) -> None:
    _, elsewhere = places
    shown = _settings_in(elsewhere)
    assert shown == {
        "data_dir": ".leadflow",
        "resolved": str(elsewhere / ".leadflow"),
        "namespace": "from-elsewhere",
    }


def test_a_relative_data_dir_given_is_relative_to_the_current_directory(
    places: tuple[Path, Path],
) -> None:
    """What the user types (`--data-dir state`, LEADFLOW_DATA_DIR=state) means where they are,
    also under `./leadflow`."""
    home, elsewhere = places
    shown = _settings_in(elsewhere, LEADFLOW_HOME=str(home), LEADFLOW_DATA_DIR="state")
    assert shown["resolved"] == str(elsewhere / "state")
    assert shown["namespace"] == "from-checkout"
