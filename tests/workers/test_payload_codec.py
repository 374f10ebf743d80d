"""Temporal payloads are encrypted (models/payload_codec.py) by every client of the one factory:
round trip, rotation, unknown and tampered keys, plain payloads passing through (old histories
keep replaying), failure messages and summaries encrypted in a real dev server's history; and
the keys' configuration: `up` generates them, `api`/`worker` refuse to run without, rotation."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Replayer, Worker
from typer.testing import CliRunner

from models.payload_codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadKeyError,
    codec_for,
    key_id,
    new_payload_key,
    parse_payload_keys,
)
from models.settings import Settings
from tests.live_stack import free_port
from tests.workflows.test_replay import HISTORIES, WORKFLOW_BY_PREFIX, _prefix
from workers.cli import app
from workers.client import data_converter
from workers.secret_key import (
    payload_keys_problem,
    rotated_payload_keys,
    with_up_payload_secrets,
)

OLD = os.urandom(32)
NEW = os.urandom(32)
SECRET_TEXT = "Mijn IBAN is NL91ABNA0417164300, bel me op 0612345678"


def _plain(text: str = SECRET_TEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


# ---- the codec ------------------------------------------------------------------------------


async def test_a_payload_is_sealed_whole_and_opens_to_the_same_payload() -> None:
    codec = EncryptionCodec([OLD])
    original = _plain()
    (sealed,) = await codec.encode([original])
    assert dict(sealed.metadata) == {"encoding": ENCODING, KEY_ID: key_id(OLD).encode()}
    assert SECRET_TEXT.encode() not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()  # the metadata is inside too
    (opened,) = await codec.decode([sealed])
    assert opened == original
    (again,) = await codec.encode([original])
    assert again.data[:12] != sealed.data[:12] and again.data != sealed.data  # random nonce


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    before = EncryptionCodec([OLD])
    (written_before,) = await before.encode([_plain("before")])
    rotated = EncryptionCodec([NEW, OLD])
    assert rotated.encrypting_key_id == key_id(NEW)
    assert rotated.key_ids == [key_id(NEW), key_id(OLD)]
    (written_after,) = await rotated.encode([_plain("after")])
    assert written_after.metadata[KEY_ID] == key_id(NEW).encode()
    assert await rotated.decode([written_before, written_after]) == [
        _plain("before"),
        _plain("after"),
    ]
    # A process that was not given the new key says which key it lacks.
    with pytest.raises(PayloadKeyError, match=key_id(NEW)) as info:
        await before.decode([written_after])
    assert "LEADFLOW_PAYLOAD_KEYS" in str(info.value) and key_id(OLD) in str(info.value)


async def test_an_unknown_key_id_is_a_clear_error_naming_it() -> None:
    (sealed,) = await EncryptionCodec([OLD]).encode([_plain()])
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"0123456789abcdef"})
    relabelled.data = sealed.data
    with pytest.raises(PayloadKeyError, match=r"'0123456789abcdef'.*not among"):
        await EncryptionCodec([NEW]).decode([relabelled])
    # Without any key (development mode) an encrypted payload is an error, not garbage.
    with pytest.raises(PayloadKeyError, match="none configured"):
        await EncryptionCodec([]).decode([sealed])


async def test_an_altered_payload_or_another_key_id_fails_authentication() -> None:
    codec = EncryptionCodec([OLD, NEW])
    (sealed,) = await codec.encode([_plain()])
    flipped = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + b"\x00")
    with pytest.raises(PayloadKeyError, match="failed authentication"):
        await codec.decode([flipped])
    # The key id is authenticated: the same bytes under the other known key id do not open.
    other = Payload(metadata={"encoding": ENCODING, KEY_ID: key_id(NEW).encode()})
    other.data = sealed.data
    with pytest.raises(PayloadKeyError, match="failed authentication"):
        await codec.decode([other])
    with pytest.raises(PayloadKeyError, match="failed authentication"):
        await codec.decode([Payload(metadata=dict(sealed.metadata), data=b"")])


async def test_plain_payloads_pass_through_decoding_unchanged() -> None:
    codec = EncryptionCodec([OLD])
    plain = [_plain(), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    decoded = await codec.decode(plain)
    assert decoded == plain and all(a is b for a, b in zip(decoded, plain, strict=True))
    # No key at all (development mode): nothing is encrypted either.
    assert await EncryptionCodec([]).encode(plain) == plain


def test_keys_are_read_as_base64_or_hex_and_a_bad_one_is_named_by_position() -> None:
    b64 = base64.b64encode(OLD).decode()
    urlsafe = base64.urlsafe_b64encode(NEW).decode().rstrip("=")
    assert parse_payload_keys(f" {b64} , {NEW.hex()}\n") == [OLD, NEW]
    assert parse_payload_keys(f"{urlsafe}\n{b64}\n") == [NEW, OLD]  # the keys file: a line each
    assert parse_payload_keys("") == [] and parse_payload_keys(" , ") == []
    assert len(parse_payload_keys(new_payload_key())[0]) == 32
    for bad in ("tooshort", base64.b64encode(os.urandom(16)).decode(), "z" * 64):
        with pytest.raises(PayloadKeyError, match="#2 is not 32 bytes") as info:
            parse_payload_keys(f"{b64},{bad}")
        assert bad not in str(info.value)  # a key is never echoed
    assert codec_for(b64) is codec_for(b64)  # built once per value: nothing derived per call


def test_the_key_id_is_a_fingerprint_not_the_key() -> None:
    ident = key_id(OLD)
    assert len(ident) == 16 and ident == key_id(OLD) and ident != key_id(NEW)
    assert ident not in (OLD.hex(), base64.b64encode(OLD).decode())


async def test_the_factory_converter_encrypts_and_replays_what_it_wrote() -> None:
    converter = data_converter(base64.b64encode(OLD).decode())
    assert converter is data_converter(base64.b64encode(OLD).decode())  # cached
    (payload,) = await converter.encode([{"text": SECRET_TEXT}])
    assert payload.metadata["encoding"] == ENCODING
    assert await converter.decode([payload]) == [{"text": SECRET_TEXT}]
    assert await converter.decode([_plain("old history")]) == ["old history"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_histories_recorded_in_plain_text_replay_with_the_encrypting_converter(
    path: Path,
) -> None:
    """Runs started before encryption continue under it: their plain payloads decode as they
    are (tests/workflows/test_replay.py replays the same files with the plain converter)."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(
        workflows=[WORKFLOW_BY_PREFIX[_prefix(path)]],
        data_converter=data_converter(base64.b64encode(OLD).decode()),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


# ---- on a real dev server -----------------------------------------------------------------


@activity.defn(name="codec_test_refuse")
async def refuse(text: str) -> str:
    raise ApplicationError(f"refused: {text}", type="Refused", non_retryable=True)


@activity.defn(name="codec_test_echo")
async def echo(text: str) -> str:
    return text.upper()


@workflow.defn(name="CodecTestWorkflow", sandboxed=False)
class CodecTestWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        echoed: str = await workflow.execute_activity(
            echo,
            text,
            start_to_close_timeout=timedelta(seconds=10),
            summary=f"echo {text}",
        )
        if "fail" in text:
            await workflow.execute_activity(
                refuse,
                text,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        return echoed


async def test_a_real_history_holds_ciphertext_and_the_client_reads_it_back(
    temporal_client: Client, task_queue: str
) -> None:
    text = f"hallo, ik ben Ans de Vries, {SECRET_TEXT}"
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[CodecTestWorkflow],
        activities=[echo, refuse],
    ):
        handle = await temporal_client.start_workflow(
            CodecTestWorkflow.run, text, id=f"codec-{uuid.uuid4().hex}", task_queue=task_queue
        )
        assert await handle.result() == text.upper()
        failing = await temporal_client.start_workflow(
            CodecTestWorkflow.run,
            f"fail {text}",
            id=f"codec-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        with pytest.raises(WorkflowFailureError) as info:
            await failing.result()
    # The client decodes the failure: its message and type are the activity's.
    cause = info.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.message == f"refused: fail {text}" and cause.cause.type == "Refused"

    for h in (handle, failing):
        history = await h.fetch_history()  # raw events, as the server stores them
        raw = b"".join(event.SerializeToString() for event in history.events)
        for secret in ("Ans de Vries", "NL91ABNA0417164300", "0612345678", "refused:", "echo "):
            assert secret.encode() not in raw, secret
            assert secret.upper().encode() not in raw, secret
        assert b"json/plain" not in raw  # every payload (inputs, results, summaries) is sealed
        assert ENCODING in raw
    failed = [
        e.activity_task_failed_event_attributes.failure
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
    ]
    # The failure's message and stack trace are in its encoded attributes (encrypted).
    assert failed and failed[0].message == "Encoded failure" and not failed[0].stack_trace
    assert failed[0].encoded_attributes.metadata["encoding"] == ENCODING


# ---- the keys' configuration ----------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_up_generates_the_keys_and_the_codec_token_owner_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEADFLOW_PAYLOAD_KEYS", raising=False)
    monkeypatch.delenv("LEADFLOW_CODEC_TOKEN", raising=False)
    settings = with_up_payload_secrets(Settings(data_dir=tmp_path))
    assert settings.payload_keys is not None and settings.codec_token is not None
    keys_file, token_file = tmp_path / "payload.keys", tmp_path / "codec.token"
    assert _mode(keys_file) == 0o600 and _mode(token_file) == 0o600
    assert len(parse_payload_keys(keys_file.read_text())) == 1
    assert settings.payload_keys.get_secret_value() == keys_file.read_text().strip()
    assert len(settings.codec_token.get_secret_value()) >= 40
    # Every other command (api, worker, the CLI) reads them for the same data dir...
    again = Settings(data_dir=tmp_path)
    assert again.payload_keys == settings.payload_keys
    assert again.codec_token == settings.codec_token
    # ...and the next `up` keeps them.
    assert with_up_payload_secrets(again).payload_keys == settings.payload_keys
    assert keys_file.read_text().strip() == settings.payload_keys.get_secret_value()


def test_keys_given_in_the_environment_win_and_nothing_is_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = base64.b64encode(NEW).decode()
    monkeypatch.setenv("LEADFLOW_PAYLOAD_KEYS", given)
    monkeypatch.setenv("LEADFLOW_CODEC_TOKEN", "a-token-from-the-environment")
    (tmp_path / "payload.keys").write_text(base64.b64encode(OLD).decode() + "\n")
    settings = with_up_payload_secrets(Settings(data_dir=tmp_path))
    assert settings.payload_keys is not None and settings.payload_keys.get_secret_value() == given
    assert not (tmp_path / "codec.token").exists()


def test_without_a_payload_key_only_dev_mode_may_run(tmp_path: Path) -> None:
    none = Settings(data_dir=tmp_path, payload_keys=None)
    problem = payload_keys_problem(none)
    assert problem is not None and "LEADFLOW_PAYLOAD_KEYS" in problem and "DEV_MODE" in problem
    assert (
        payload_keys_problem(Settings(data_dir=tmp_path, payload_keys=None, dev_mode=True)) is None
    )
    assert payload_keys_problem(Settings(data_dir=tmp_path, payload_keys=new_payload_key())) is None
    malformed = Settings(data_dir=tmp_path, payload_keys="nope", dev_mode=True)
    assert "#1 is not 32 bytes" in (payload_keys_problem(malformed) or "")


def test_rotation_puts_a_new_key_first_and_keeps_the_old(tmp_path: Path) -> None:
    (tmp_path / "payload.keys").write_text(base64.b64encode(OLD).decode() + "\n")
    new_id, count = rotated_payload_keys(tmp_path)
    keys = parse_payload_keys((tmp_path / "payload.keys").read_text())
    assert count == 2 and keys[1] == OLD and key_id(keys[0]) == new_id != key_id(OLD)
    assert _mode(tmp_path / "payload.keys") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["payload.keys"]  # no temporary left


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An operator's environment with a secret key and a database, and no payload key."""
    for name in list(os.environ):
        if name.startswith("LEADFLOW_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "a-long-random-secret-key-for-this-test")
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LEADFLOW_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("COLUMNS", "240")
    return data_dir


@pytest.mark.parametrize("command", [["api"], ["worker"]])
def test_api_and_worker_refuse_to_run_without_a_payload_key(
    bare_env: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "no payload key" in said and "LEADFLOW_PAYLOAD_KEYS" in said
    assert "LEADFLOW_DEV_MODE=1" in said


def test_api_and_worker_refuse_a_malformed_payload_key_even_in_dev_mode(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_DEV_MODE", "1")
    monkeypatch.setenv("LEADFLOW_PAYLOAD_KEYS", f"{new_payload_key()},not-a-key")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2, result.output
    assert "#2 is not 32 bytes" in " ".join(result.output.split())


def test_the_worker_gets_past_the_check_with_the_data_dirs_keys(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare_env.mkdir()
    with_up_payload_secrets(Settings(data_dir=bare_env))  # as `up` leaves the data dir
    result = CliRunner().invoke(app, ["worker", "--queue", "nope"])
    assert result.exit_code == 1, result.output  # the next problem: the queue
    assert "payload" not in result.output and "nope" in result.output


def test_secrets_payload_rotate_adds_a_key_first(
    bare_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare_env.mkdir()
    first = with_up_payload_secrets(Settings(data_dir=bare_env)).payload_keys
    assert first is not None
    (old,) = parse_payload_keys(first.get_secret_value())
    result = CliRunner().invoke(app, ["secrets", "payload-rotate"])
    assert result.exit_code == 0, result.output
    keys = parse_payload_keys((bare_env / "payload.keys").read_text())
    assert len(keys) == 2 and keys[1] == old
    said = " ".join(result.output.split())
    assert f"new payload key {key_id(keys[0])} is first of 2" in said and "restart" in said
    # With the keys in the environment the file is not theirs: refused, nothing changed.
    monkeypatch.setenv("LEADFLOW_PAYLOAD_KEYS", new_payload_key())
    refused = CliRunner().invoke(app, ["secrets", "payload-rotate"])
    assert refused.exit_code == 1 and "LEADFLOW_PAYLOAD_KEYS is set" in refused.output
    assert parse_payload_keys((bare_env / "payload.keys").read_text()) == keys
