"""gRPC compression between leadflow and Temporal (Settings.temporal_grpc_compression): none on
loopback, where gzip only costs CPU on both ends (bench/README.md), gzip across a network; both
modes talk to a real dev server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from temporalio.service import GrpcCompression

from models.settings import Settings
from workers.client import connect, grpc_compression, is_loopback_address


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("localhost:7233", True),
        ("LocalHost:7233", True),
        ("127.0.0.1:7233", True),
        ("127.4.5.6:7233", True),
        ("[::1]:7233", True),
        ("temporal:7233", False),
        ("10.0.0.7:7233", False),
        ("[2001:db8::1]:7233", False),
        ("my-ns.a1b2c.tmprl.cloud:7233", False),
        ("localhost.example.com:7233", False),
        ("[::1:7233", False),  # malformed: not ours to call loopback
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


@pytest.mark.parametrize(
    ("mode", "address", "expected"),
    [
        ("auto", "127.0.0.1:7233", GrpcCompression.NONE),
        ("auto", "temporal.internal:7233", GrpcCompression.GZIP),
        ("gzip", "127.0.0.1:7233", GrpcCompression.GZIP),
        ("none", "temporal.internal:7233", GrpcCompression.NONE),
    ],
)
def test_mode_and_address_decide(mode: str, address: str, expected: GrpcCompression) -> None:
    assert grpc_compression(mode, address) == expected


def test_setting_refuses_unknown_modes() -> None:
    with pytest.raises(ValueError, match="temporal_grpc_compression"):
        Settings(temporal_grpc_compression="brotli")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "expected"), [("auto", GrpcCompression.NONE), ("gzip", GrpcCompression.GZIP)]
)
async def test_both_modes_talk_to_a_real_server(
    settings_factory: Callable[..., Settings],
    sqlite_url: str,
    temporal_address: str,
    mode: str,
    expected: GrpcCompression,
) -> None:
    settings = settings_factory(
        sqlite_url, temporal_address=temporal_address, temporal_grpc_compression=mode
    )
    client = await connect(settings)
    assert client.service_client.config.grpc_compression == expected
    # A round trip each way: the server answers in the mode the client asked for.
    assert await client.service_client.check_health()
    workflows = [w async for w in client.list_workflows(limit=1)]
    assert len(workflows) <= 1
