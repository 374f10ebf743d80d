"""The connection guard for httpx2 (the OpenAI SDK's HTTP library), through the real SDK against
the fake OpenAI-compatible server on loopback: DNS rebinding, refused literals, the allowlist,
and which endpoints `hosted_backend` guards (a tenant's, not the operator's)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import pytest

from activities.llm.base import BackendSpec
from activities.llm.clients import OpenAIChatClient, build_client
from activities.llm.model_backend import hosted_backend, is_tenant_endpoint
from activities.llm.model_client import ModelCallError, ModelMessage, ModelRequest
from models.netguard import NoCookieJar, UrlGuard, UrlRefused
from models.netguard_httpx2 import guard_of_httpx2, guarded_client_httpx2
from models.settings import Settings
from tests.activities.test_netguard import PUBLIC, RebindingResolver
from tests.conftest import TEST_SECRET
from tests.fakes.llm import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    # No key: it plays a tenant's own Ollama/vLLM behind an OpenAI-compatible URL.
    with FakeOpenAI(api_key=None) as server:
        yield server


class RecordingBackend2(httpcore2.AsyncNetworkBackend):
    """Connects for real to loopback only (where the fake listens) and records every address it
    was asked to connect to; any other address is unreachable in tests."""

    def __init__(self) -> None:
        self.inner = httpcore2.AnyIOBackend()
        self.connected_to: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        self.connected_to.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore2.ConnectError(f"{host} is unreachable in tests")
        return await self.inner.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def request() -> ModelRequest:
    return ModelRequest(
        model="llama3",
        system="You are the sales assistant of Garage Jansen.",
        messages=(ModelMessage(role="user", content="How much is the Golf?"),),
        timeout_seconds=5.0,
    )


def compatible(base_url: str, http_client: httpx2.AsyncClient) -> OpenAIChatClient:
    client = build_client(
        "openai_compatible", api_key=None, base_url=base_url, http_client=http_client
    )
    assert isinstance(client, OpenAIChatClient)
    return client


def renamed(fake: FakeOpenAI, host: str) -> str:
    return fake.base_url.replace("127.0.0.1", host)


async def test_dns_rebinding_never_reaches_loopback(fake: FakeOpenAI) -> None:
    resolver = RebindingResolver()
    backend = RecordingBackend2()
    url = renamed(fake, "rebind.attacker.example")
    guarded = guarded_client_httpx2([], resolver=resolver, network_backend=backend)
    client = compatible(url, guarded)
    try:
        # The check made when the tenant saved the URL uses up the public answer...
        assert [str(ip) for ip in await UrlGuard([], resolver=resolver).check(url)] == [PUBLIC]
        # ...so the connection's own resolution gets loopback: refused, nothing connected,
        # and the model call fails for good with the reason.
        with pytest.raises(ModelCallError) as refused:
            await client.complete(request())
    finally:
        await client.aclose()
    error = refused.value
    assert not error.retryable and error.kind == "url_refused"
    assert "rebind.attacker.example resolves to a loopback address (127.0.0.1)" in error.message
    assert backend.connected_to == [] and resolver.calls == 2
    assert fake.requests == []


async def test_the_connection_goes_to_the_address_it_checked() -> None:
    resolver = RebindingResolver()
    backend = RecordingBackend2()
    async with guarded_client_httpx2([], resolver=resolver, network_backend=backend) as http:
        # One resolution per connection, and the connection goes to its answer (the public
        # address, unreachable here): a transport error, which callers may retry.
        with pytest.raises(httpx2.ConnectError, match="unreachable in tests"):
            await http.get("http://rebind.attacker.example/v1/models")
        assert backend.connected_to == [PUBLIC] and resolver.calls == 1
        # The next connection asks again and is told loopback: refused before connecting.
        with pytest.raises(UrlRefused, match="loopback"):
            await http.get("http://rebind.attacker.example/v1/models")
        assert backend.connected_to == [PUBLIC]


@pytest.mark.parametrize(
    ("host", "label"),
    [
        ("10.1.2.3", "is a private address"),
        ("[fd00:ec2::254]", "is a cloud metadata address"),
        ("169.254.169.254", "is a cloud metadata address"),
        ("ollama.internal", "is a local name"),
    ],
)
async def test_private_literals_and_local_names_are_refused(host: str, label: str) -> None:
    backend = RecordingBackend2()
    guarded = guarded_client_httpx2([], network_backend=backend)
    client = compatible(f"http://{host}/v1", guarded)
    try:
        with pytest.raises(ModelCallError) as refused:
            await client.complete(request())
    finally:
        await client.aclose()
    assert not refused.value.retryable and refused.value.kind == "url_refused"
    assert label in refused.value.message and "LEADFLOW_SSRF_ALLOWLIST" in refused.value.message
    assert backend.connected_to == []


async def test_a_name_that_does_not_resolve_is_a_retryable_connection_error() -> None:
    async def no_answer(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    guarded = guarded_client_httpx2([], resolver=no_answer)
    client = compatible("http://llm.gone.example/v1", guarded)
    try:
        with pytest.raises(ModelCallError) as failed:
            await client.complete(request())
    finally:
        await client.aclose()
    # DNS may answer later: not a refusal, an ordinary (retryable) connection failure.
    assert failed.value.retryable and failed.value.kind == "connection"
    assert "cannot resolve llm.gone.example" in failed.value.message


async def test_an_allowlisted_endpoint_answers_through_the_guarded_client(fake: FakeOpenAI) -> None:
    async def intranet_dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "llm.corp.example" else []

    backend = RecordingBackend2()
    guarded = guarded_client_httpx2(["127.0.0.0/8"], resolver=intranet_dns, network_backend=backend)
    assert isinstance(guarded.cookies.jar, NoCookieJar) and not guarded.follow_redirects
    assert guard_of_httpx2(guarded) is not None
    client = compatible(renamed(fake, "llm.corp.example"), guarded)
    fake.ok_text("The Golf is 18.900 euros.", input_tokens=30, output_tokens=8)
    try:
        response = await client.complete(request())
    finally:
        await client.aclose()
    assert response.text == "The Golf is 18.900 euros."
    assert (response.input_tokens, response.output_tokens) == (30, 8)
    assert backend.connected_to == ["127.0.0.1"]
    # The name, not the address, went out as the Host (TLS would verify it the same way).
    assert fake.requests[0].headers["host"].startswith("llm.corp.example:")
    assert guarded.is_closed  # the SDK owns the client it was given


def test_anthropic_takes_no_http_client() -> None:
    with pytest.raises(ValueError, match="takes no http_client"):
        build_client("anthropic", api_key="k", base_url=None, http_client=guarded_client_httpx2([]))


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, database_url="sqlite://", secret_key=TEST_SECRET, **values)


async def test_hosted_backend_guards_a_tenant_url_and_not_the_operators(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    # (tests/conftest.py allowlists loopback for the whole suite: not here.)
    operator = settings(tmp_path, openai_compatible_base_url=fake.base_url + "/", ssrf_allowlist=[])
    tenant_url = renamed(fake, "localhost")  # the same server, by a name the operator did not set

    # The operator's own local server (spelt with a trailing slash in its settings): unguarded.
    fake.ok_text("from the operator's model")
    own = hosted_backend(BackendSpec("openai_compatible", "llama3", None, fake.base_url), operator)
    assert (await own.client.complete(request())).text == "from the operator's model"

    # A tenant's URL to loopback: guarded, refused for good, nothing sent.
    theirs = hosted_backend(BackendSpec("openai_compatible", "llama3", None, tenant_url), operator)
    with pytest.raises(ModelCallError) as refused:
        await theirs.client.complete(request())
    assert not refused.value.retryable and "localhost is a local name" in str(refused.value)
    assert len(fake.requests) == 1

    # The operator allowlisted loopback: the tenant's endpoint answers, still through the guard.
    allowing = settings(
        tmp_path, openai_compatible_base_url=fake.base_url, ssrf_allowlist=["localhost"]
    )
    fake.ok_text("from the tenant's model")
    allowed = hosted_backend(BackendSpec("openai_compatible", "llama3", None, tenant_url), allowing)
    assert (await allowed.client.complete(request())).text == "from the tenant's model"
    for backend in (own, theirs, allowed):
        assert isinstance(backend.client, OpenAIChatClient)
        await backend.client.aclose()


def test_only_an_openai_compatible_url_the_operator_did_not_set_is_the_tenants(
    tmp_path: Path,
) -> None:
    unset = settings(tmp_path)
    operator = settings(tmp_path, openai_compatible_base_url=" http://localhost:11434/v1/ ")
    spec = BackendSpec("openai_compatible", "m", None, "http://localhost:11434/v1")
    assert not is_tenant_endpoint(spec, operator)
    assert is_tenant_endpoint(spec, unset)
    assert is_tenant_endpoint(
        BackendSpec("openai_compatible", "m", None, "https://llm.tenant.example/v1"), operator
    )
    assert not is_tenant_endpoint(BackendSpec("openai", "m", "k", "https://x.example/v1"), unset)
    assert not is_tenant_endpoint(BackendSpec("anthropic", "m", "k", None), unset)
