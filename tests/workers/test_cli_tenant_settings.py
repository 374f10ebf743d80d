"""`leadflow tenant show` / `tenant configure` with the one settings merge: what `show` prints
(masked) can be fed back to `configure` without replacing the real secrets, one `--set` field
keeps the rest of its channel, bad values name their field, and `show` warns about channels
missing fields and about unsigned webhooks."""

from __future__ import annotations

import json
from pathlib import Path

from tests.workers.test_cli import _stored_settings, db_url, run, text  # noqa: F401 (fixture)

MASK = "**********"
WAHA = (
    "waha:\n"
    "  base_url: http://waha:3000\n"
    "  api_key: waha-key-s3cret\n"
    "  webhook_secret: hmac-s3cret\n"
)


def _tenant_with_waha(tmp_path: Path) -> None:
    assert run("tenant", "create", "Acme Cars").exit_code == 0
    file = tmp_path / "waha.yaml"
    file.write_text(WAHA)
    configured = run("tenant", "configure", "acme-cars", "-f", str(file))
    assert configured.exit_code == 0, configured.output


def test_show_output_fed_back_to_configure_keeps_the_real_secrets(
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    _tenant_with_waha(tmp_path)
    shown = run("tenant", "show", "acme-cars")
    assert shown.exit_code == 0, shown.output
    current = json.loads(shown.stdout)
    assert current["waha"]["api_key"] == MASK and "s3cret" not in shown.output

    current["waha"]["session"] = "sales"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(current))
    assert run("tenant", "configure", "acme-cars", "-f", str(edited)).exit_code == 0

    _, stored = _stored_settings(db_url, "acme-cars")
    assert stored["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": "waha-key-s3cret",
        "session": "sales",
        "webhook_secret": "hmac-s3cret",
    }


def test_one_set_flag_changes_one_field(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    _tenant_with_waha(tmp_path)
    result = run(
        "tenant",
        "configure",
        "acme-cars",
        "--set",
        "waha.session=sales",
        "--set",
        "allow_unsigned_webhooks=true",
        "--set",
        "timezone=Europe/Amsterdam",
    )
    assert result.exit_code == 0, result.output
    assert "allow_unsigned_webhooks, timezone, waha" in text(result)
    _, stored = _stored_settings(db_url, "acme-cars")
    assert stored["waha"] == {
        "base_url": "http://waha:3000",
        "api_key": "waha-key-s3cret",
        "session": "sales",
        "webhook_secret": "hmac-s3cret",
    }
    assert stored["allow_unsigned_webhooks"] is True and stored["timezone"] == "Europe/Amsterdam"

    # null through a flag removes: here the webhook secret.
    assert (
        run("tenant", "configure", "acme-cars", "--set", "waha.webhook_secret=null").exit_code == 0
    )
    _, stored = _stored_settings(db_url, "acme-cars")
    assert "webhook_secret" not in stored["waha"]  # type: ignore[operator]


def test_show_warns_about_unsigned_webhooks_and_unconfigured_channels(
    db_url: str,  # noqa: F811
) -> None:
    assert run("tenant", "create", "Acme Cars").exit_code == 0
    quiet = run("tenant", "show", "acme-cars")
    assert "warning" not in quiet.output

    configured = run(
        "tenant",
        "configure",
        "acme-cars",
        "--set",
        "allow_unsigned_webhooks=true",
        "--set",
        "chatwoot.webhook_secret=cw-s3cret",
    )
    assert configured.exit_code == 0, configured.output
    shown = run("tenant", "show", "acme-cars")
    assert shown.exit_code == 0
    json.loads(shown.stdout)  # the warnings are on stderr: stdout stays JSON
    assert "warning: chatwoot is not configured: api_token missing" in text(shown)
    assert (
        "warning: accepts unsigned webhooks on waha, whatsapp, messenger (allow_unsigned_webhooks"
        in text(shown)
    )


def test_configure_refuses_bad_values_and_bad_flags(db_url: str, tmp_path: Path) -> None:  # noqa: F811
    _tenant_with_waha(tmp_path)
    before = run("tenant", "show", "acme-cars").stdout
    cases = [
        (["--set", "timezone=Mars/Olympus"], "timezone: 'Mars/Olympus' is not an IANA time zone"),
        (["--set", "waha.base_url=ftp://waha"], "waha.base_url: 'ftp://waha' must be an http://"),
        (["--set", "smtp.from_address=nobody"], "smtp.from_address: 'nobody' is not an e-mail"),
        (["--set", "specialists=[{name: S, role: r, whatsapp: '12'}]"], "specialists.0.whatsapp"),
        (["--set", "waha.session"], "expected FIELD.PATH=VALUE"),
        (["--set", "=x"], "expected FIELD.PATH=VALUE"),
        ([], "nothing to configure"),
    ]
    for args, expected in cases:
        result = run("tenant", "configure", "acme-cars", *args)
        assert result.exit_code != 0, args
        assert "Traceback" not in result.output
        assert expected in text(result), (args, result.output)
    assert run("tenant", "show", "acme-cars").stdout == before


def test_configure_is_in_the_audit_log_without_its_secrets(
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    _tenant_with_waha(tmp_path)
    result = run("tenant", "configure", "acme-cars", "--set", "waha.session=sales", "--by", "Anna")
    assert result.exit_code == 0, result.output
    logged = run("audit", "--tenant", "acme-cars", "--action", "settings.update", "--json")
    assert logged.exit_code == 0, logged.output
    entries = json.loads(logged.stdout)
    # Newest first: Anna's --set, then the first configure under the OS user's name.
    assert [(e["actor_kind"], e["action"]) for e in entries] == [
        ("cli", "settings.update"),
        ("cli", "settings.update"),
    ]
    assert entries[0]["actor"] == "Anna" and entries[0]["detail"]["fields"] == "waha"
    assert "s3cret" not in logged.output
