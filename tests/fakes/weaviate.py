"""A fake Weaviate that speaks the server's real protocols, so the real `weaviate-client` runs end
to end against it (wire/weaviate.md):

- REST (Starlette on `LiveServer`): /v1/meta, /v1/.well-known/{ready,live,openid-configuration},
  /v1/nodes, /v1/schema (GET/POST), /v1/schema/{class} (GET/DELETE), and the tenants endpoints;
- gRPC (grpcio server on another loopback port) with the message types and service definition the
  client itself ships (`weaviate.proto.v1`, the set it picks for the installed protobuf):
  `grpc.health.v1.Health/Check`, `weaviate.v1.Weaviate/{Search,BatchObjects,BatchDelete,
  TenantsGet}`.

    with FakeWeaviate(api_key="secret", modules={"text2vec-openai": {}}) as fake:
        client = weaviate.use_async_with_custom(http_host="127.0.0.1", http_port=fake.http_port,
                                                ..., grpc_port=fake.grpc_port, ...)
        fake.fail_next("Search", 2, grpc.StatusCode.INTERNAL, "boom")
        fake.objects("LeadflowKnowledge", "t_acme")    # what is stored, vectors included

What comes from a real source (the wire doc, or the client's own code and stubs): the RPC paths
and message types (generated code shipped in the client), the REST paths and bodies, the startup
sequence the client runs, `authorization: Bearer` on REST and as gRPC metadata, HOT/COLD on tenant
writes, batch = replace by uuid, per-index batch errors, 404 for an unknown class or tenant,
`vector_bytes` as native float32, unknown tenant names ignored on delete. Error texts quoted from
real servers: `class X has multi-tenancy enabled, but request was without tenant` (wire doc [I1]),
`tenant not found: "x"` (the tail of a 1.25 server's message, weaviate/weaviate#4931) and
`could not find class X in schema` with status UNKNOWN on a gRPC search (weaviate/recipes#69).

What is the fake's own (plausible, NOT verified against a server): the texts of the other errors
(existing class, invalid tenant name, inactive tenant, unknown property, unmodelled features) and
the gRPC status codes of all but the one above; that a filter value of the wrong type (valueInt on
a `number` property) is refused at all (the wire doc lists this as not found); that creating an
existing tenant succeeds; where nulls sort; the word-tokenised `equal`/`like` semantics; scores.
Search is exact: BM25 is Okapi BM25 per property, summed with `prop^boost` weights (Weaviate uses
BM25F across properties, stop words and more tokenizations), hybrid fusion (relative score: min-max
per leg; ranked: 1/(60+rank)) is the documented idea, not the server's code, and vector search is
exact cosine (no HNSW). A vectorizer module is simulated with `hashed_embedding` (no call to a
provider, no `X-OpenAI-Api-Key` check). Not modelled at all (refused with UNIMPLEMENTED /
INVALID_ARGUMENT, never ignored): auto-schema (unknown properties are refused), references, nested
objects, number/int/bool arrays, multi-vectors and multi-target search,
near_text/near_object/near_media, group-by, generative, rerank, boost, autocut, aggregate,
`BatchStream`; consistency levels and replication are accepted and ignored; no RBAC, OIDC, GraphQL,
object REST endpoints, backups."""

from __future__ import annotations

import fnmatch
import math
import re
import struct
import threading
import time
import uuid as uuid_lib
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import grpc
from google.protobuf import struct_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from weaviate.proto.v1 import (  # the client's own generated code, for its protobuf major
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from tests.fakes.http_server import FailurePlan, LiveServer, RecordedRequest
from tests.fakes.llm import hashed_embedding

DEFAULT_VERSION = "1.32.0"
QUERY_MAXIMUM_RESULTS = 10_000  # the server's default cap per delete/search (wire doc section 2)
DEFAULT_BM25 = {"b": 0.75, "k1": 1.2}
_OPS = base_pb2.Filters
_ACTIVE_NAMES = {"HOT": "ACTIVE", "COLD": "INACTIVE", "FROZEN": "OFFLOADED"}


def _error(message: str, status: int) -> JSONResponse:
    # ErrorResponse as the OpenAPI spec gives it.
    return JSONResponse({"error": [{"message": message}]}, status_code=status)


class _RpcAbort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass
class StoredObject:
    uuid: str
    properties: dict[str, Any]
    vectors: dict[str, list[float]] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True)
class GrpcCall:
    """One gRPC call the fake received: the method name, its metadata (lower-case keys) and the
    decoded request message."""

    method: str
    metadata: Mapping[str, str]
    request: Any


def _tokens(text: str, tokenization: str) -> list[str]:
    if tokenization == "field":
        return [text.strip()]
    if tokenization == "whitespace":
        return text.split()
    if tokenization == "lowercase":
        return text.lower().split()
    # "word" (the default): alphanumeric runs, lower-cased.
    return re.findall(r"[0-9a-z]+", text.lower())


def _unpack_floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"{len(data) // 4}f", data))


def _cosine_distance(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        raise _RpcAbort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"vector search: vector lengths don't match: {len(a)} vs {len(b)}",
        )
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 1.0
    return 1.0 - dot / (na * nb)


class FakeWeaviate:
    """REST on `http_port`, gRPC on `grpc_port`, both on 127.0.0.1. State is per (collection,
    tenant); tenant "" is a collection without multi-tenancy."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        version: str = DEFAULT_VERSION,
        modules: Mapping[str, Any] | None = None,
        embed: Callable[[str], list[float]] = hashed_embedding,
    ) -> None:
        self.api_key = api_key
        self.version = version
        self.modules: dict[str, Any] = dict(modules or {})
        self.embed = embed
        self.ready = True
        self.requests: list[RecordedRequest] = []
        self.grpc_calls: list[GrpcCall] = []
        self.rest_failures = FailurePlan()
        self._rpc_failures: dict[str, list[tuple[grpc.StatusCode, str]]] = {}
        self._lock = threading.RLock()
        self._classes: dict[str, dict[str, Any]] = {}
        self._tenants: dict[str, dict[str, str]] = {}
        self._objects: dict[tuple[str, str], dict[str, StoredObject]] = {}
        self._http = LiveServer(self._rest_app())
        self._grpc: grpc.Server | None = None
        self.grpc_port = 0

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def http_port(self) -> int:
        return self._http.port

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> FakeWeaviate:
        self._http.start()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        weaviate_pb2_grpc.add_WeaviateServicer_to_server(  # type: ignore[no-untyped-call]  # generated code
            _Servicer(self), server
        )
        server.add_generic_rpc_handlers((self._health_handler(),))
        self.grpc_port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server
        return self

    def stop(self) -> None:
        """Both servers go away: connections are refused from now on (an unavailable Weaviate)."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        self._http.stop()

    def __enter__(self) -> FakeWeaviate:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        times: int = 1,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        details: str = "injected failure",
    ) -> None:
        """The next `times` calls of gRPC `method` ("Search", "BatchObjects", "BatchDelete",
        "TenantsGet", "Check") fail with `code`. Note the client retries UNAVAILABLE with 1, 2,
        4... s of backoff, so tests prefer other codes or a single UNAVAILABLE."""
        with self._lock:
            self._rpc_failures.setdefault(method, []).extend([(code, details)] * times)

    def objects(self, collection: str, tenant: str = "") -> list[StoredObject]:
        with self._lock:
            return list(self._objects.get((collection, tenant), {}).values())

    def tenants(self, collection: str) -> dict[str, str]:
        with self._lock:
            return dict(self._tenants.get(collection, {}))

    def collection(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._classes.get(name)

    def calls(self, method: str) -> list[GrpcCall]:
        return [c for c in self.grpc_calls if c.method == method]

    # -- REST ----------------------------------------------------------------------------------
    def _rest_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/.well-known/ready", self._ready, methods=["GET"]),
                Route("/v1/.well-known/live", self._live, methods=["GET"]),
                Route("/v1/.well-known/openid-configuration", self._oidc, methods=["GET"]),
                Route("/v1/meta", self._meta, methods=["GET"]),
                Route("/v1/nodes", self._nodes, methods=["GET"]),
                Route("/v1/schema", self._schema, methods=["GET", "POST"]),
                Route("/v1/schema/{cls}", self._schema_class, methods=["GET", "DELETE"]),
                Route(
                    "/v1/schema/{cls}/tenants",
                    self._tenants_rest,
                    methods=["GET", "POST", "PUT", "DELETE"],
                ),
                Route(
                    "/v1/schema/{cls}/tenants/{name}",
                    self._tenant_rest,
                    methods=["GET", "HEAD"],
                ),
            ]
        )

    async def _guard(self, request: Request, *, public: bool = False) -> Response | None:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        failure = self.rest_failures.take(recorded.path)
        if failure is not None:
            return failure.response()
        if public or self.api_key is None:
            return None
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            return Response(status_code=401)  # the OpenAPI spec: 401 without a body
        return None

    async def _ready(self, request: Request) -> Response:
        if (problem := await self._guard(request, public=True)) is not None:
            return problem
        return JSONResponse({}, status_code=200 if self.ready else 503)

    async def _live(self, request: Request) -> Response:
        if (problem := await self._guard(request, public=True)) is not None:
            return problem
        return JSONResponse({})

    async def _oidc(self, request: Request) -> Response:
        if (problem := await self._guard(request, public=True)) is not None:
            return problem
        return JSONResponse({}, status_code=404)  # no OIDC configured

    async def _meta(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        return JSONResponse(
            {
                "grpcMaxMessageSize": 104858000,
                "hostname": "http://[::]:8080",
                "modules": self.modules,
                "version": self.version,
            }
        )

    async def _nodes(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        return JSONResponse({"nodes": [{"gitHash": "fake", "name": "node1", "status": "HEALTHY"}]})

    async def _schema(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        if request.method == "GET":
            with self._lock:
                return JSONResponse({"classes": list(self._classes.values())})
        body = await request.json()
        if not isinstance(body, dict) or not body.get("class"):
            return _error("class name is required", 422)
        name = str(body["class"])
        name = name[0].upper() + name[1:]
        with self._lock:
            if name in self._classes:
                # Not quoted in the wire doc; the shape is ErrorResponse, the text is the fake's.
                return _error(f'class name "{name}" already exists', 422)
            refusal = self._check_vectorizers(body)
            if refusal is not None:
                return _error(refusal, 422)
            stored = self._complete_class(dict(body, **{"class": name}))
            self._classes[name] = stored
            self._tenants[name] = {}
        return JSONResponse(stored)

    def _check_vectorizers(self, body: Mapping[str, Any]) -> str | None:
        for config in (body.get("vectorConfig") or {}).values():
            for module in (config.get("vectorizer") or {}).keys():
                if module != "none" and module not in self.modules:
                    return f"vectorizer: no module with name {module!r} present"
        vectorizer = body.get("vectorizer")
        if vectorizer and vectorizer != "none" and vectorizer not in self.modules:
            return f"vectorizer: no module with name {vectorizer!r} present"
        return None

    @staticmethod
    def _complete_class(body: dict[str, Any]) -> dict[str, Any]:
        """Fill in what a server answers for a class it created, so the client's config parser
        (`collection.config.get()`, `collections.list_all()`) accepts the fake's GET answers.
        Values from the SDK's own fixture (wire doc, `mock_class`) where it has them; the other
        HNSW fields are placeholders of the right type, not the server's defaults."""
        body.setdefault("properties", [])
        for prop in body["properties"]:
            data_type = prop.get("dataType", ["text"])[0]
            if data_type in ("text", "text[]"):
                prop.setdefault("tokenization", "word")
                prop.setdefault("indexSearchable", True)
            else:
                prop.setdefault("indexSearchable", False)
            prop.setdefault("indexFilterable", True)
            prop.setdefault("indexRangeFilters", False)
        # The client sends only what was configured; the server merges in its defaults.
        inverted = body["invertedIndexConfig"] = dict(body.get("invertedIndexConfig") or {})
        inverted["bm25"] = {**DEFAULT_BM25, **(inverted.get("bm25") or {})}
        inverted.setdefault("cleanupIntervalSeconds", 60)
        inverted["stopwords"] = {
            "preset": "en",
            "additions": None,
            "removals": None,
            **(inverted.get("stopwords") or {}),
        }
        body.setdefault(
            "multiTenancyConfig",
            {"enabled": False, "autoTenantCreation": False, "autoTenantActivation": False},
        )
        body.setdefault("replicationConfig", {"factor": 1, "asyncEnabled": False})
        body.setdefault(
            "shardingConfig",
            {
                "virtualPerPhysical": 128,
                "desiredCount": 1,
                "actualCount": 1,
                "desiredVirtualCount": 128,
                "actualVirtualCount": 128,
                "key": "_id",
                "strategy": "hash",
                "function": "murmur3",
            },
        )
        body.setdefault("moduleConfig", {})
        if not body.get("vectorConfig") and not body.get("vectorizer"):
            body["vectorConfig"] = {
                "default": {"vectorIndexType": "hnsw", "vectorizer": {"none": {}}}
            }
        for named in (body.get("vectorConfig") or {}).values():
            named.setdefault("vectorIndexType", "hnsw")
            config = named.setdefault("vectorIndexConfig", {})
            for key, value in {
                "skip": False,
                "distance": "cosine",
                "ef": -1,
                "efConstruction": 128,
                "maxConnections": 64,
                "cleanupIntervalSeconds": 300,
                "dynamicEfMin": 100,
                "dynamicEfMax": 500,
                "dynamicEfFactor": 8,
                "flatSearchCutoff": 40000,
                "vectorCacheMaxObjects": 1000000000000,
            }.items():
                config.setdefault(key, value)
        return body

    async def _schema_class(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        name = request.path_params["cls"]
        with self._lock:
            if request.method == "DELETE":
                self._classes.pop(name, None)
                self._tenants.pop(name, None)
                for key in [k for k in self._objects if k[0] == name]:
                    del self._objects[key]
                return Response(status_code=200)
            stored = self._classes.get(name)
        if stored is None:
            return Response(status_code=404)
        return JSONResponse(stored)

    def _mt_class(self, name: str) -> tuple[dict[str, Any] | None, Response | None]:
        stored = self._classes.get(name)
        if stored is None:
            return None, _error(f"class {name!r} not found", 422)
        if not stored["multiTenancyConfig"].get("enabled"):
            return None, _error(f"multi-tenancy is not enabled for class {name!r}", 422)
        return stored, None

    async def _tenants_rest(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        name = request.path_params["cls"]
        body = await request.json() if request.method in ("POST", "PUT", "DELETE") else None
        with self._lock:
            _, problem = self._mt_class(name)
            if problem is not None:
                return problem
            tenants = self._tenants[name]
            if request.method == "GET":
                return JSONResponse(
                    [{"name": n, "activityStatus": s} for n, s in sorted(tenants.items())]
                )
            if request.method == "DELETE":
                for tenant_name in body or []:
                    # Unknown names are ignored (wire doc: "tenantX will be ignored").
                    tenants.pop(str(tenant_name), None)
                    self._objects.pop((name, str(tenant_name)), None)
                return Response(status_code=200)
            answer = []
            for entry in body or []:
                tenant_name = str(entry.get("name", ""))
                if not re.fullmatch(r"[A-Za-z0-9_-]{4,64}", tenant_name):
                    # The rule is from the docs; the exact message is the fake's.
                    return _error(f"tenant name {tenant_name!r} is invalid", 422)
                status = str(entry.get("activityStatus") or "HOT")
                status = _ACTIVE_NAMES.get(status, status)
                if request.method == "PUT" and tenant_name not in tenants:
                    return _error(f"tenant {tenant_name!r} not found", 422)
                # Creating an existing tenant is answered as a success here (unconfirmed for a
                # real server, which is why the backend checks `exists` first).
                tenants[tenant_name] = status
                answer.append({"name": tenant_name, "activityStatus": status})
            return JSONResponse(answer)

    async def _tenant_rest(self, request: Request) -> Response:
        if (problem := await self._guard(request)) is not None:
            return problem
        name, tenant_name = request.path_params["cls"], request.path_params["name"]
        with self._lock:
            _, problem = self._mt_class(name)
            if problem is not None:
                return problem
            status = self._tenants[name].get(tenant_name)
        if status is None:
            return Response(status_code=404)
        if request.method == "HEAD":
            return Response(status_code=200)
        return JSONResponse({"name": tenant_name, "activityStatus": status})

    # -- gRPC plumbing -------------------------------------------------------------------------
    def _health_handler(self) -> grpc.GenericRpcHandler:
        def check(
            request: health_weaviate_pb2.WeaviateHealthCheckRequest,
            context: grpc.ServicerContext,
        ) -> health_weaviate_pb2.WeaviateHealthCheckResponse:
            self._enter("Check", request, context, authenticate=False)
            status = (
                health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
                if self.ready
                else health_weaviate_pb2.WeaviateHealthCheckResponse.NOT_SERVING
            )
            return health_weaviate_pb2.WeaviateHealthCheckResponse(status=status)

        return grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health",
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    check,
                    request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
                    response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
                )
            },
        )

    def _enter(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        *,
        authenticate: bool = True,
    ) -> None:
        """Record the call, apply an injected failure, check the API key (aborts the RPC)."""
        metadata = {k.lower(): str(v) for k, v in context.invocation_metadata()}
        self.grpc_calls.append(GrpcCall(method, metadata, request))
        with self._lock:
            queue = self._rpc_failures.get(method)
            failure = queue.pop(0) if queue else None
        if failure is not None:
            context.abort(failure[0], failure[1])
        if authenticate and self.api_key is not None:
            if metadata.get("authorization") != f"Bearer {self.api_key}":
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "unauthorized: invalid api key")

    def _scope(
        self, collection: str, tenant: str, *, write: bool = False
    ) -> tuple[dict[str, Any], str]:
        """The class definition and the tenant key for a request, or the server's refusal.
        `autoTenantCreation` creates a missing tenant on a batch write (from 1.25, wire doc);
        an inactive tenant is refused (the message is the fake's own)."""
        stored = self._classes.get(collection)
        if stored is None:
            # Status and text as a real server answered a gRPC search (weaviate/recipes#69).
            raise _RpcAbort(grpc.StatusCode.UNKNOWN, f"could not find class {collection} in schema")
        multi = bool(stored["multiTenancyConfig"].get("enabled"))
        if multi and not tenant:
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"class {collection} has multi-tenancy enabled, but request was without tenant",
            )
        if not multi and tenant:
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"class {collection} has multi-tenancy disabled, but request was with tenant",
            )
        tenants = self._tenants[collection]
        if multi and tenant not in tenants:
            if write and stored["multiTenancyConfig"].get("autoTenantCreation"):
                tenants[tenant] = "ACTIVE"
            else:
                raise _RpcAbort(grpc.StatusCode.NOT_FOUND, f'tenant not found: "{tenant}"')
        if multi and tenants[tenant] != "ACTIVE":
            raise _RpcAbort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'tenant "{tenant}" is not active (status {tenants[tenant]})',
            )
        return stored, tenant

    # -- properties ----------------------------------------------------------------------------
    @staticmethod
    def _prop_types(stored: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in stored["properties"]}

    def _coerce(
        self, stored: Mapping[str, Any], props: batch_pb2.BatchObject.Properties
    ) -> dict[str, Any]:
        unsupported = [
            name
            for name in (
                "single_target_ref_props",
                "multi_target_ref_props",
                "number_array_properties",
                "int_array_properties",
                "boolean_array_properties",
                "object_properties",
                "object_array_properties",
            )
            if len(getattr(props, name))
        ]
        if unsupported:
            raise ValueError(f"the fake does not model {', '.join(unsupported)}")
        types = self._prop_types(stored)
        out: dict[str, Any] = {}
        raw: dict[str, Any] = {k: v for k, v in props.non_ref_properties.items()}
        for array in props.text_array_properties:
            raw[array.prop_name] = list(array.values)
        for name, value in raw.items():
            prop = types.get(name)
            if prop is None:
                raise ValueError(
                    f"no such prop with name '{name}' found in class "
                    f"'{stored['class']}' in the schema"
                )
            data_type = prop["dataType"][0]
            if value is None:
                out[name] = None
            elif data_type == "int":
                if not isinstance(value, float | int) or float(value) != int(value):
                    raise ValueError(f"invalid integer property '{name}': {value!r}")
                out[name] = int(value)
            elif data_type == "number":
                if not isinstance(value, float | int) or isinstance(value, bool):
                    raise ValueError(f"invalid number property '{name}': {value!r}")
                out[name] = float(value)
            elif data_type == "boolean":
                if not isinstance(value, bool):
                    raise ValueError(f"invalid boolean property '{name}': {value!r}")
                out[name] = value
            elif data_type in ("text", "uuid", "date"):
                if not isinstance(value, str):
                    raise ValueError(f"invalid text property '{name}': {value!r}")
                out[name] = value
            elif data_type == "text[]":
                if not isinstance(value, list):
                    raise ValueError(f"invalid text[] property '{name}': {value!r}")
                out[name] = [str(v) for v in value]
            else:
                raise ValueError(f"the fake does not model dataType {data_type}")
        return out

    @staticmethod
    def _value(value: Any) -> properties_pb2.Value:
        if value is None:
            return properties_pb2.Value(
                null_value=cast(struct_pb2.NullValue, struct_pb2.NULL_VALUE)
            )
        if isinstance(value, bool):
            return properties_pb2.Value(bool_value=value)
        if isinstance(value, int):
            return properties_pb2.Value(int_value=value)
        if isinstance(value, float):
            return properties_pb2.Value(number_value=value)
        if isinstance(value, list):
            return properties_pb2.Value(
                list_value=properties_pb2.ListValue(
                    text_values=properties_pb2.TextValues(values=[str(v) for v in value])
                )
            )
        return properties_pb2.Value(text_value=str(value))

    # -- vectors -------------------------------------------------------------------------------
    @staticmethod
    def _vector_names(stored: Mapping[str, Any]) -> list[str]:
        return list((stored.get("vectorConfig") or {"default": {}}).keys())

    def _module_of(self, stored: Mapping[str, Any], name: str) -> tuple[str, dict[str, Any]]:
        config = (stored.get("vectorConfig") or {}).get(name) or {}
        vectorizer: dict[str, Any] = config.get("vectorizer") or {"none": {}}
        module, settings = next(iter(vectorizer.items()))
        return module, settings or {}

    def _vectorize(self, stored: Mapping[str, Any], name: str, props: Mapping[str, Any]) -> Any:
        """What a text2vec module would store: the embedding of the source properties (all text
        properties when none are named), joined in schema order."""
        module, settings = self._module_of(stored, name)
        if module == "none":
            return None
        sources = settings.get("properties") or [
            p["name"] for p in stored["properties"] if p["dataType"][0] == "text"
        ]
        text = " ".join(str(props[s]) for s in sources if props.get(s))
        return self.embed(text)

    # -- filters -------------------------------------------------------------------------------
    def _matches(self, stored: Mapping[str, Any], obj: StoredObject, flt: base_pb2.Filters) -> bool:
        op = flt.operator
        if op == _OPS.OPERATOR_AND:
            return all(self._matches(stored, obj, f) for f in flt.filters)
        if op == _OPS.OPERATOR_OR:
            return any(self._matches(stored, obj, f) for f in flt.filters)
        if op == _OPS.OPERATOR_NOT:
            return not all(self._matches(stored, obj, f) for f in flt.filters)
        if flt.HasField("target"):
            if flt.target.WhichOneof("target") != "property":
                raise _RpcAbort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "the fake Weaviate filters only on properties (no references/counts)",
                )
            path = flt.target.property
        elif len(flt.on) == 1:
            path = flt.on[0]
        else:
            raise _RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, "filter without a target")
        if path == "_id":
            actual: Any = obj.uuid
            data_type, tokenization = "uuid", "field"
        else:
            prop = self._prop_types(stored).get(path)
            if prop is None:
                raise _RpcAbort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f'invalid search: no such prop with name "{path}" found in class '
                    f'"{stored["class"]}" in the schema',
                )
            actual = obj.properties.get(path)
            data_type = prop["dataType"][0]
            tokenization = prop.get("tokenization", "word")
        if op == _OPS.OPERATOR_IS_NULL:
            return (actual is None) == flt.value_boolean
        expected = self._filter_value(flt, data_type)
        if op == _OPS.OPERATOR_CONTAINS_ANY:
            values = actual if isinstance(actual, list) else [actual]
            return any(self._equal(v, e, tokenization) for v in values for e in expected)
        if actual is None:
            return op == _OPS.OPERATOR_NOT_EQUAL
        if op == _OPS.OPERATOR_EQUAL:
            return self._equal(actual, expected, tokenization)
        if op == _OPS.OPERATOR_NOT_EQUAL:
            return not self._equal(actual, expected, tokenization)
        if op == _OPS.OPERATOR_LIKE:
            if not isinstance(actual, str):
                raise _RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, "like needs a text property")
            # Weaviate matches the pattern against each token of a word-tokenised property.
            candidates = [actual] if tokenization == "field" else _tokens(actual, tokenization)
            pattern = str(expected) if tokenization == "field" else str(expected).lower()
            return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
        comparisons: dict[int, Callable[[Any, Any], bool]] = {
            _OPS.OPERATOR_LESS_THAN: lambda a, b: a < b,
            _OPS.OPERATOR_LESS_THAN_EQUAL: lambda a, b: a <= b,
            _OPS.OPERATOR_GREATER_THAN: lambda a, b: a > b,
            _OPS.OPERATOR_GREATER_THAN_EQUAL: lambda a, b: a >= b,
        }
        compare = comparisons.get(op)
        if compare is None:
            raise _RpcAbort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"the fake Weaviate does not model filter operator {_OPS.Operator.Name(op)}",
            )
        return compare(actual, expected)

    def _validate_filter(self, stored: Mapping[str, Any], flt: base_pb2.Filters) -> None:
        """Type errors are refused up front, as the server does, even when no object would be
        compared (evaluation short-circuits and skips empty shards)."""
        if flt.operator in (_OPS.OPERATOR_AND, _OPS.OPERATOR_OR, _OPS.OPERATOR_NOT):
            for inner in flt.filters:
                self._validate_filter(stored, inner)
            return
        probe = StoredObject(uuid="00000000-0000-0000-0000-000000000000", properties={})
        self._matches(stored, probe, flt)

    @staticmethod
    def _equal(actual: Any, expected: Any, tokenization: str) -> bool:
        if isinstance(actual, str) and isinstance(expected, str) and tokenization != "field":
            # A word-tokenised equal matches when every token of the value is among the
            # property's tokens.
            have = set(_tokens(actual, tokenization))
            return all(t in have for t in _tokens(expected, tokenization))
        return bool(actual == expected)

    @staticmethod
    def _filter_value(flt: base_pb2.Filters, data_type: str) -> Any:
        kind = flt.WhichOneof("test_value")
        # The server refuses a value of the wrong type for the property (the text is the one
        # Weaviate's GraphQL/gRPC filter parser gives, e.g. valueInt on a number property).
        allowed = {
            "int": ("value_int", "value_int_array"),
            "number": ("value_number", "value_number_array"),
            "boolean": ("value_boolean", "value_boolean_array"),
            "text": ("value_text", "value_text_array"),
            "text[]": ("value_text", "value_text_array"),
            "uuid": ("value_text", "value_text_array"),
            "date": ("value_text", "value_text_array"),
        }.get(data_type, ())
        if kind not in allowed:
            shown = {
                "value_int": "valueInt",
                "value_number": "valueNumber",
                "value_text": "valueText",
                "value_boolean": "valueBoolean",
            }.get(str(kind), str(kind))
            wanted = {
                "int": "valueInt",
                "number": "valueNumber",
                "boolean": "valueBoolean",
            }.get(data_type, "valueText")
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'invalid search: data type filter cannot use "{shown}" on type '
                f'"{data_type}", use "{wanted}" instead',
            )
        value = getattr(flt, str(kind))
        if str(kind).endswith("_array"):
            return list(value.values)
        return value

    # -- BM25 ----------------------------------------------------------------------------------
    def _bm25(
        self,
        stored: Mapping[str, Any],
        objects: list[StoredObject],
        query: str,
        properties: Iterable[str],
        everyone: list[StoredObject],
    ) -> dict[str, float]:
        """Okapi BM25 per property (statistics over the tenant's whole shard, `everyone`),
        summed with `prop^boost` weights. Only objects scoring above zero are returned."""
        bm25 = {**DEFAULT_BM25, **(stored["invertedIndexConfig"].get("bm25") or {})}
        k1, b = float(bm25["k1"]), float(bm25["b"])
        types = self._prop_types(stored)
        wanted: list[tuple[str, float]] = []
        names = list(properties) or [
            p["name"]
            for p in stored["properties"]
            if p["dataType"][0] in ("text", "text[]") and p.get("indexSearchable", True)
        ]
        for spec in names:
            name, _, weight = spec.partition("^")
            if name not in types:
                raise _RpcAbort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"invalid search: property {name!r} not found in class {stored['class']}",
                )
            wanted.append((name, float(weight) if weight else 1.0))
        scores: dict[str, float] = {}
        n = len(everyone)
        for prop_name, boost in wanted:
            tokenization = types[prop_name].get("tokenization", "word")
            query_terms = _tokens(query, tokenization)

            def doc_tokens(
                o: StoredObject, prop: str = prop_name, tok: str = tokenization
            ) -> list[str]:
                value = o.properties.get(prop)
                text = " ".join(value) if isinstance(value, list) else str(value or "")
                return _tokens(text, tok)

            docs = {o.uuid: doc_tokens(o) for o in everyone}
            avgdl = (sum(len(t) for t in docs.values()) / n) if n else 0.0
            for term in set(query_terms):
                df = sum(1 for t in docs.values() if term in t)
                if df == 0:
                    continue
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                for o in objects:
                    tokens = docs[o.uuid]
                    tf = tokens.count(term)
                    if tf == 0:
                        continue
                    norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(tokens) / (avgdl or 1)))
                    scores[o.uuid] = scores.get(o.uuid, 0.0) + boost * idf * norm
        return {k: v for k, v in scores.items() if v > 0}

    # -- search --------------------------------------------------------------------------------
    def search(self, request: search_get_pb2.SearchRequest) -> search_get_pb2.SearchReply:
        started = time.monotonic()
        for name in (
            "group_by",
            "generative",
            "rerank",
            "near_object",
            "near_text",
            "near_image",
            "near_audio",
            "near_video",
            "near_depth",
            "near_thermal",
            "near_imu",
        ):
            if request.HasField(name):
                raise _RpcAbort(
                    grpc.StatusCode.UNIMPLEMENTED, f"the fake Weaviate does not model {name}"
                )
        if request.HasField("boost") or request.autocut:
            raise _RpcAbort(
                grpc.StatusCode.UNIMPLEMENTED, "the fake Weaviate does not model boost/autocut"
            )
        with self._lock:
            stored, tenant = self._scope(request.collection, request.tenant)
            everyone = list(self._objects.get((request.collection, tenant), {}).values())
        if request.HasField("filters"):
            self._validate_filter(stored, request.filters)
        candidates = [
            o
            for o in everyone
            if not request.HasField("filters") or self._matches(stored, o, request.filters)
        ]
        limit = request.limit or QUERY_MAXIMUM_RESULTS
        scores: dict[str, float] = {}
        distances: dict[str, float] = {}
        if request.HasField("hybrid_search"):
            ranked = self._hybrid(stored, request.hybrid_search, candidates, everyone, scores)
        elif request.HasField("bm25_search"):
            bm = request.bm25_search
            scores = self._bm25(stored, candidates, bm.query, bm.properties, everyone)
            ranked = sorted(
                (o for o in candidates if o.uuid in scores), key=lambda o: (-scores[o.uuid], o.uuid)
            )
        elif request.HasField("near_vector"):
            name, vector = self._query_vector(stored, request.near_vector, None)
            for o in candidates:
                if name in o.vectors:
                    distances[o.uuid] = _cosine_distance(o.vectors[name], vector)
            ranked = sorted(
                (o for o in candidates if o.uuid in distances),
                key=lambda o: (distances[o.uuid], o.uuid),
            )
            nv = request.near_vector
            if nv.HasField("distance"):
                ranked = [o for o in ranked if distances[o.uuid] <= nv.distance]
        else:
            ranked = self._sorted(stored, candidates, request)
        ranked = ranked[request.offset : request.offset + limit]
        return search_get_pb2.SearchReply(
            took=time.monotonic() - started,
            results=[self._result(stored, request, o, scores, distances) for o in ranked],
        )

    def _sorted(
        self, stored: Mapping[str, Any], objects: list[StoredObject], request: Any
    ) -> list[StoredObject]:
        if request.after and request.sort_by:
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT, "cursor api: sort cannot be used with after"
            )
        if not request.sort_by:
            # Without a sort, a shard answers in uuid order; `after` is a cursor in that order.
            ordered = sorted(objects, key=lambda o: o.uuid)
            if request.after:
                ordered = [o for o in ordered if o.uuid > request.after]
            return ordered
        ordered = sorted(objects, key=lambda o: o.uuid)
        types = self._prop_types(stored)
        for sort in reversed(request.sort_by):
            prop = sort.path[0] if sort.path else ""
            if prop not in types and prop not in ("_id", "_creationTimeUnix"):
                raise _RpcAbort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"sort: no such property {prop!r}"
                )

            # Nulls sort before every value ascending (after, descending): an assumption of the
            # fake, not confirmed against a server.
            def key(o: StoredObject, prop: str = prop) -> tuple[int, Any]:
                value = o.uuid if prop == "_id" else o.properties.get(prop)
                return (0, 0) if value is None else (1, value)

            ordered.sort(key=key, reverse=not sort.ascending)
        return ordered

    def _query_vector(
        self, stored: Mapping[str, Any], nv: Any, fallback_text: str | None
    ) -> tuple[str, list[float]]:
        """The target vector's name and the query vector of a NearVector/Hybrid message, in any
        of the forms the client sends."""
        names = self._vector_names(stored)
        targets = list(nv.targets.target_vectors) if nv.HasField("targets") else []
        targets = targets or list(nv.target_vectors)
        if len(targets) > 1:
            raise _RpcAbort(
                grpc.StatusCode.UNIMPLEMENTED, "the fake Weaviate does not model multi-target"
            )
        name = targets[0] if targets else (names[0] if len(names) == 1 else "")
        if name not in names:
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"target vector {name!r} not found; the collection has {names}",
            )
        data = b""
        if nv.vector_bytes:
            data = nv.vector_bytes
        elif len(nv.vectors):
            data = nv.vectors[0].vector_bytes
        elif len(getattr(nv, "vector_for_targets", [])):
            target = nv.vector_for_targets[0]
            data = target.vector_bytes or (
                target.vectors[0].vector_bytes if target.vectors else b""
            )
        if data:
            return name, _unpack_floats(data)
        if len(nv.vector):
            return name, list(nv.vector)
        if fallback_text is not None:
            module, _ = self._module_of(stored, name)
            if module != "none":
                return name, self.embed(fallback_text)
            raise _RpcAbort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "hybrid: alpha > 0 needs a query vector or a vectorizer module, and the "
                f"collection's vector {name!r} has none",
            )
        raise _RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, "near vector: no vector given")

    def _hybrid(
        self,
        stored: Mapping[str, Any],
        hybrid: base_search_pb2.Hybrid,
        candidates: list[StoredObject],
        everyone: list[StoredObject],
        scores: dict[str, float],
    ) -> list[StoredObject]:
        if hybrid.HasField("near_text") or hybrid.HasField("selection"):
            raise _RpcAbort(
                grpc.StatusCode.UNIMPLEMENTED,
                "the fake Weaviate does not model hybrid near_text/selection",
            )
        if hybrid.use_alpha_param:
            alpha = hybrid.alpha_param if hybrid.HasField("alpha_param") else 0.75
        else:
            alpha = hybrid.alpha
        keyword: dict[str, float] = {}
        if alpha < 1:
            keyword = self._bm25(stored, candidates, hybrid.query, hybrid.properties, everyone)
        vector_scores: dict[str, float] = {}
        if alpha > 0:
            if hybrid.HasField("near_vector"):
                name, vector = self._query_vector(stored, hybrid.near_vector, hybrid.query)
            else:
                name, vector = self._query_vector(stored, hybrid, hybrid.query)
            for o in candidates:
                if name in o.vectors:
                    # Higher is better for fusion: 1 - cosine distance.
                    vector_scores[o.uuid] = 1.0 - _cosine_distance(o.vectors[name], vector)
        if hybrid.fusion_type == base_search_pb2.Hybrid.FUSION_TYPE_RANKED:
            fused = self._ranked(keyword, 1 - alpha)
            for k, v in self._ranked(vector_scores, alpha).items():
                fused[k] = fused.get(k, 0.0) + v
        else:  # relative score, the default since 1.24
            fused = self._relative(keyword, 1 - alpha)
            for k, v in self._relative(vector_scores, alpha).items():
                fused[k] = fused.get(k, 0.0) + v
        scores.update(fused)
        return sorted(
            (o for o in candidates if o.uuid in fused), key=lambda o: (-fused[o.uuid], o.uuid)
        )

    @staticmethod
    def _relative(scores: Mapping[str, float], weight: float) -> dict[str, float]:
        if not scores or weight == 0:
            return {}
        low, high = min(scores.values()), max(scores.values())
        span = high - low
        return {k: weight * ((v - low) / span if span else 1.0) for k, v in scores.items()}

    @staticmethod
    def _ranked(scores: Mapping[str, float], weight: float) -> dict[str, float]:
        if weight == 0:
            return {}
        order = sorted(scores, key=lambda k: (-scores[k], k))
        return {k: weight / (60 + rank) for rank, k in enumerate(order)}

    def _result(
        self,
        stored: Mapping[str, Any],
        request: search_get_pb2.SearchRequest,
        obj: StoredObject,
        scores: Mapping[str, float],
        distances: Mapping[str, float],
    ) -> search_get_pb2.SearchResult:
        if request.HasField("properties"):
            wanted = request.properties
            if len(wanted.ref_properties) or len(wanted.object_properties):
                raise _RpcAbort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "the fake Weaviate does not model reference/object properties",
                )
            names = (
                list(obj.properties)
                if wanted.return_all_nonref_properties
                else list(wanted.non_ref_properties)
            )
        else:
            names = list(obj.properties)
        fields = {n: self._value(obj.properties[n]) for n in names if n in obj.properties}
        meta = search_get_pb2.MetadataResult(id=obj.uuid, id_as_bytes=uuid_lib.UUID(obj.uuid).bytes)
        asked = request.metadata
        if asked.score and obj.uuid in scores:
            meta.score, meta.score_present = scores[obj.uuid], True
        if asked.distance and obj.uuid in distances:
            meta.distance, meta.distance_present = distances[obj.uuid], True
        if asked.creation_time_unix:
            meta.creation_time_unix = obj.created_ms
            meta.creation_time_unix_present = True
        if asked.last_update_time_unix:
            meta.last_update_time_unix = obj.updated_ms
            meta.last_update_time_unix_present = True
        if asked.vector or len(asked.vectors):
            names_wanted = list(asked.vectors) or list(obj.vectors)
            meta.vectors.extend(
                base_pb2.Vectors(
                    name=n,
                    vector_bytes=struct.pack(f"{len(obj.vectors[n])}f", *obj.vectors[n]),
                    type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32,
                )
                for n in names_wanted
                if n in obj.vectors
            )
        return search_get_pb2.SearchResult(
            properties=search_get_pb2.PropertiesResult(
                non_ref_props=properties_pb2.Properties(fields=fields),
                target_collection=stored["class"],
            ),
            metadata=meta,
        )

    # -- writes --------------------------------------------------------------------------------
    def batch_objects(self, request: batch_pb2.BatchObjectsRequest) -> batch_pb2.BatchObjectsReply:
        started = time.monotonic()
        errors: list[batch_pb2.BatchObjectsReply.BatchError] = []
        now = int(time.time() * 1000)
        with self._lock:
            for index, obj in enumerate(request.objects):
                try:
                    stored, tenant = self._scope(obj.collection, obj.tenant, write=True)
                    properties = self._coerce(stored, obj.properties)
                    vectors = self._object_vectors(stored, obj, properties)
                    uuid = str(uuid_lib.UUID(obj.uuid))
                except (_RpcAbort, ValueError) as exc:
                    errors.append(
                        batch_pb2.BatchObjectsReply.BatchError(index=index, error=str(exc))
                    )
                    continue
                shard = self._objects.setdefault((obj.collection, tenant), {})
                previous = shard.get(uuid)
                # A batch write replaces an object with the same uuid (wire doc, [I2]/[I3]).
                shard[uuid] = StoredObject(
                    uuid=uuid,
                    properties=properties,
                    vectors=vectors,
                    created_ms=previous.created_ms if previous else now,
                    updated_ms=now,
                )
        return batch_pb2.BatchObjectsReply(took=time.monotonic() - started, errors=errors)

    def _object_vectors(
        self,
        stored: Mapping[str, Any],
        obj: batch_pb2.BatchObject,
        properties: Mapping[str, Any],
    ) -> dict[str, list[float]]:
        names = self._vector_names(stored)
        vectors: dict[str, list[float]] = {}
        if obj.vector_bytes:
            if len(names) != 1:
                raise ValueError("an unnamed vector needs a collection with one vector")
            vectors[names[0]] = _unpack_floats(obj.vector_bytes)
        elif len(obj.vector):
            vectors[names[0]] = list(obj.vector)
        for named in obj.vectors:
            name = named.name or (names[0] if len(names) == 1 else "")
            if name not in names:
                raise ValueError(f"target vector {name!r} not found in the collection")
            if named.type == base_pb2.Vectors.VECTOR_TYPE_MULTI_FP32:
                raise ValueError("the fake Weaviate does not model multi-vectors")
            vectors[name] = _unpack_floats(named.vector_bytes)
        for name in names:
            if name not in vectors:
                computed = self._vectorize(stored, name, properties)
                if computed is not None:
                    vectors[name] = computed
        return vectors

    def batch_delete(
        self, request: batch_delete_pb2.BatchDeleteRequest
    ) -> batch_delete_pb2.BatchDeleteReply:
        started = time.monotonic()
        with self._lock:
            stored, tenant = self._scope(request.collection, request.tenant)
            if not request.HasField("filters"):
                raise _RpcAbort(
                    grpc.StatusCode.INVALID_ARGUMENT, "batch delete: filters are required"
                )
            self._validate_filter(stored, request.filters)
            shard = self._objects.get((request.collection, tenant), {})
            matched = sorted(
                (o for o in shard.values() if self._matches(stored, o, request.filters)),
                key=lambda o: o.uuid,
            )[:QUERY_MAXIMUM_RESULTS]
            if not request.dry_run:
                for o in matched:
                    del shard[o.uuid]
        return batch_delete_pb2.BatchDeleteReply(
            took=time.monotonic() - started,
            matches=len(matched),
            successful=0 if request.dry_run else len(matched),
            failed=0,
            objects=(
                [
                    batch_delete_pb2.BatchDeleteObject(
                        uuid=uuid_lib.UUID(o.uuid).bytes, successful=True
                    )
                    for o in matched
                ]
                if request.verbose
                else []
            ),
        )

    def tenants_get(self, request: tenants_pb2.TenantsGetRequest) -> tenants_pb2.TenantsGetReply:
        started = time.monotonic()
        with self._lock:
            stored = self._classes.get(request.collection)
            if stored is None:
                raise _RpcAbort(grpc.StatusCode.NOT_FOUND, f"class {request.collection} not found")
            if not stored["multiTenancyConfig"].get("enabled"):
                raise _RpcAbort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"multi-tenancy is not enabled for class {request.collection!r}",
                )
            tenants = self._tenants[request.collection]
            names = list(request.names.values) if request.HasField("names") else sorted(tenants)
        return tenants_pb2.TenantsGetReply(
            took=time.monotonic() - started,
            tenants=[
                tenants_pb2.Tenant(
                    name=n,
                    activity_status=cast(
                        tenants_pb2.TenantActivityStatus,
                        tenants_pb2.TenantActivityStatus.Value(
                            f"TENANT_ACTIVITY_STATUS_{tenants[n]}"
                        ),
                    ),
                )
                for n in names
                if n in tenants
            ],
        )


class _Servicer(weaviate_pb2_grpc.WeaviateServicer):
    def __init__(self, fake: FakeWeaviate) -> None:
        self.fake = fake

    def _run(self, method: str, request: Any, context: grpc.ServicerContext, work: Any) -> Any:
        self.fake._enter(method, request, context)
        try:
            return work(request)
        except _RpcAbort as exc:
            context.abort(exc.code, exc.details)

    def Search(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("Search", request, context, self.fake.search)

    def BatchObjects(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("BatchObjects", request, context, self.fake.batch_objects)

    def BatchDelete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("BatchDelete", request, context, self.fake.batch_delete)

    def TenantsGet(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._run("TenantsGet", request, context, self.fake.tenants_get)

    def BatchReferences(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake._enter("BatchReferences", request, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake Weaviate does not model references")

    def Aggregate(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fake._enter("Aggregate", request, context)
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake Weaviate does not model aggregate")

    def BatchStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake Weaviate does not model BatchStream")
