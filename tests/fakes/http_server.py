"""Serve an ASGI app (the fakes are Starlette apps) with uvicorn on 127.0.0.1 in a thread.

The server gets its own thread and event loop, so it answers while the test's loop awaits an
HTTP call to it, and it works from sync and async tests alike:

    with LiveServer(app) as server:
        httpx.get(f"{server.url}/health")

Also here: what every fake shares — recorded requests and injectable failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

START_TIMEOUT_SECONDS = 10.0


class LiveServer:
    """A uvicorn server on a free loopback port; `.url` is its base URL (no trailing slash)."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> LiveServer:
        # Bind the socket ourselves: port 0 gives a free port with no race between picking and
        # binding, and we know the port before uvicorn starts.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"fake-http-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake HTTP server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake received. Header names are lower-case; `json` is the parsed body."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    json: Any

    @classmethod
    async def of(cls, request: Request) -> RecordedRequest:
        body = await request.body()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return cls(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(request.query_params),
            body=body,
            json=parsed,
        )


@dataclass
class Failure:
    status: int
    body: Any
    retry_after: str | None
    path_contains: str | None

    def response(self) -> Response:
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return JSONResponse(self.body, status_code=self.status, headers=headers)


@dataclass
class FailurePlan:
    """Failures to answer before behaving normally again (thread-safe: the server runs in its own
    thread)."""

    _queue: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        times: int,
        *,
        status: int,
        body: Any,
        retry_after: str | int | None = None,
        path_contains: str | None = None,
    ) -> None:
        with self._lock:
            for _ in range(times):
                self._queue.append(
                    Failure(
                        status=status,
                        body=body,
                        retry_after=None if retry_after is None else str(retry_after),
                        path_contains=path_contains,
                    )
                )

    def take(self, path: str) -> Failure | None:
        with self._lock:
            for index, failure in enumerate(self._queue):
                if failure.path_contains is None or failure.path_contains in path:
                    return self._queue.pop(index)
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
