"""Embeddings for the Weaviate backend's "provider" vectors: leadflow computes them with the
tenant's own model provider (an OpenAI-compatible `/v1/embeddings`), so a deployment needs no
vectorizer module in Weaviate.

The endpoint is tenant-supplied (a tenant may point its provider at its own server), so requests
go through the SSRF-guarded client (`models.netguard.guarded_client`) unless the caller hands in a
client of its own (the worker's shared guarded client)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import httpx

from models.knowledge.index import KnowledgeBackendError, KnowledgeBackendUnavailable
from models.netguard import UrlRefused, guarded_client

DEFAULT_MODEL = "text-embedding-3-small"
DEFAULT_BATCH_SIZE = 64  # texts per request: well under OpenAI's 2048-input limit, small bodies


class EmbeddingError(KnowledgeBackendError):
    """The provider answered but not with embeddings we can use (refusal, bad shape)."""


class Embedder(Protocol):
    """Turns texts into vectors, one per text, in order. All vectors of one embedder have the
    same length (a collection's vector index has one dimension)."""

    @property
    def model(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class OpenAIEmbedder:
    """POST {base_url}/embeddings in OpenAI's wire format (OpenAI, Azure-compatible proxies,
    Ollama, vLLM). `base_url` ends with the API version, as the OpenAI SDK's does
    (`https://api.openai.com/v1`)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        dimensions: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        http: httpx.AsyncClient | None = None,
        allowlist: Iterable[str] = (),
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._own_http = http is None
        self._http = http if http is not None else guarded_client(allowlist, timeout=30.0)

    @property
    def model(self) -> str:
        return self._model

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._batch(list(texts[start : start + self.batch_size])))
        return vectors

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        url = f"{self.base_url}/embeddings"
        body: dict[str, Any] = {"model": self._model, "input": texts}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = await self._http.post(url, json=body, headers=headers)
        except UrlRefused as exc:
            raise EmbeddingError(f"embeddings endpoint {url} {exc.reason}") from exc
        except httpx.HTTPError as exc:
            raise KnowledgeBackendUnavailable(
                f"embeddings endpoint {url} cannot be reached: {exc!r}"
            ) from exc
        if response.status_code >= 400:
            detail = response.text[:300]
            error = KnowledgeBackendUnavailable if response.status_code >= 500 else EmbeddingError
            raise error(f"embeddings endpoint {url} answered {response.status_code}: {detail}")
        return self._parse(url, response, len(texts))

    @staticmethod
    def _parse(url: str, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            data = response.json()["data"]
            # The API may answer out of order; `index` says which input each vector belongs to.
            ordered = sorted(data, key=lambda entry: int(entry["index"]))
            vectors = [[float(x) for x in entry["embedding"]] for entry in ordered]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embeddings endpoint {url} answered an unexpected body") from exc
        if len(vectors) != expected:
            raise EmbeddingError(
                f"embeddings endpoint {url} answered {len(vectors)} vectors for {expected} texts"
            )
        return vectors

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()
