"""Logs for people: one handler for every leadflow process (`up`, `worker`, `api`), writing JSON
lines (`LEADFLOW_LOG_FORMAT=json`, for log shippers) or readable lines (`text`, for a console and
the worker log files of `up`). `configure()` installs it; the CLI calls it once per process.

Every record gets, when known, the tenant, workflow id, run id, workflow type, activity type and
attempt: from the `temporal_activity` / `temporal_workflow` extras the SDK's loggers attach, else
from the activity or workflow the record was logged in (so `logging.getLogger(...)` inside an
activity is placed too). The tenant comes from a context variable when the code that knows it
binds it (`bind_tenant`), else from the workflow id: every leadflow workflow id is
`{kind}:{tenant}:…` (models/workflow_ids.py, models/enrichment.py, models/erasure.py).

An activity attempt that fails is logged by the SDK as "Completing activity as failed" with its
traceback (~100 lines for a refused connection: four chained exceptions). A failure that is
*expected* — a remote system refused or timed out, or leadflow's own code raised a typed
`ApplicationError` — and that Temporal will retry becomes one line with its cause (its message
and the innermost exception it came from). A failure that ends the activity (its last attempt,
or not retryable) keeps the traceback of where it was raised; an unexpected exception type keeps
its whole chain: those are the ones somebody has to read. Measured on `leadflow up` with a CSV
of three unreachable websites (3 attempts each): the worker log went from 963 lines and 36
tracebacks to 48 lines and 3 tracebacks.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from asyncio import _get_running_loop
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The context fields, in the order the text format prints them (name in the record, label).
CONTEXT_FIELDS = (
    ("tenant", "tenant"),
    ("workflow_id", "workflow"),
    ("run_id", "run"),
    ("activity_type", "activity"),
    ("attempt", "attempt"),
)

# The first field of every workflow id leadflow makes is its kind, the second its tenant.
WORKFLOW_ID_KINDS = frozenset({"conv", "crm", "crm-test", "enrich", "erase"})

# The SDK marks its "Completing activity as failed" record with this attribute.
_SDK_ERROR_ID = "__temporal_error_identifier"
_ACTIVITY_FAILURE = "ActivityFailure"

# Extras that are inputs of this module, not fields of the output.
_NOT_FIELDS = frozenset({"temporal_activity", "temporal_workflow", _SDK_ERROR_ID, "color_message"})

_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "leadflow_tenant", default=None
)


@contextmanager
def bind_tenant(tenant_id: str | None) -> Iterator[None]:
    """Records logged inside the block (and in tasks it starts) carry `tenant_id`."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)


def tenant_of_workflow_id(workflow_id: str | None) -> str | None:
    """The tenant a leadflow workflow id names; None for ids of another shape."""
    if not workflow_id:
        return None
    kind, _, rest = workflow_id.partition(":")
    if kind not in WORKFLOW_ID_KINDS:
        return None
    tenant, sep, _ = rest.partition(":")
    return tenant if sep and tenant else None


# ---- context ---------------------------------------------------------------------------------


def _add_context(record: logging.LogRecord) -> None:
    """Set the context fields the record does not carry yet (an explicit `extra` wins)."""
    fields = record.__dict__
    found: dict[str, Any] = {}
    details = fields.get("temporal_activity")
    if isinstance(details, dict):
        found = {
            "workflow_id": details.get("workflow_id"),
            "run_id": details.get("workflow_run_id"),
            "workflow_type": details.get("workflow_type"),
            "activity_type": details.get("activity_type"),
            "attempt": details.get("attempt"),
        }
    elif isinstance(details := fields.get("temporal_workflow"), dict):
        found = {
            "workflow_id": details.get("workflow_id"),
            "run_id": details.get("run_id"),
            "workflow_type": details.get("workflow_type"),
        }
    elif activity.in_activity():  # one context-variable read for records outside activities
        info = activity.info()
        found = {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity_type": info.activity_type,
            "attempt": info.attempt,
        }
    elif _get_running_loop() is not None and workflow.in_workflow():
        # A plain logger in workflow code: reading info() is safe. (in_workflow() alone raises
        # and catches an exception per record outside any event loop: threads.)
        winfo = workflow.info()
        found = {
            "workflow_id": winfo.workflow_id,
            "run_id": winfo.run_id,
            "workflow_type": winfo.workflow_type,
        }
    elif record.name == "uvicorn.access":
        found = _access_fields(record)
    tenant = _tenant.get() or tenant_of_workflow_id(found.get("workflow_id"))
    if tenant is not None:
        found["tenant"] = tenant
    for key, value in found.items():
        if value is not None and key not in fields:
            fields[key] = value


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as fields; a webhook's path names its tenant
    (`/webhooks/{provider}/{tenant}`)."""
    args = record.args
    if not (isinstance(args, tuple) and len(args) == 5):
        return {}
    client, method, path, _version, status = args
    found: dict[str, Any] = {"client": client, "method": method, "path": path, "status": status}
    parts = str(path).split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[1] == "webhooks" and parts[3]:
        found["tenant"] = parts[3]
    return found


# ---- activity failures -----------------------------------------------------------------------

_expected: tuple[type[BaseException], ...] | None = None


def expected_failures() -> tuple[type[BaseException], ...]:
    """Exception types an activity attempt is expected to fail with now and then: what leadflow
    raises on purpose (a typed ApplicationError; its own errors are turned into one before they
    leave an activity) and what a remote system does to it (HTTP errors, refused connections,
    timeouts). Anything else is a bug until shown otherwise."""
    global _expected
    if _expected is None:
        import httpx  # resolved at the first failure: no import cost for processes that never fail

        _expected = (ApplicationError, httpx.HTTPError, TimeoutError, ConnectionError)
    return _expected


def _type_name(kind: type[BaseException]) -> str:
    """`KeyError`, `ApplicationError`, `httpx.ConnectError`, `activities.web.fetch.FetchError`."""
    if kind.__module__ in ("builtins", "temporalio.exceptions"):
        return kind.__name__
    return f"{kind.__module__}.{kind.__name__}"


def describe(exc: BaseException, *, limit: int = 600) -> str:
    """The failure on one line: its type (and ApplicationError type) and message, then the
    innermost exception it came from, e.g. `ApplicationError[FetchError]: fetching http://x:
    connection failed (from ConnectionRefusedError: [Errno 111] Connect call failed)`."""
    name = _type_name(type(exc))
    if isinstance(exc, ApplicationError) and exc.type:
        name = f"{name}[{exc.type}]"
    text = f"{name}: {exc.message if isinstance(exc, ApplicationError) else exc}"
    root = exc
    seen = {id(exc)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    if root is not exc:
        message = str(root)
        text += f" (from {_type_name(type(root))}" + (
            f": {message})" if message not in text else ")"
        )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ends_activity(exc: BaseException, attempt: int, policy: RetryPolicy | None) -> str | None:
    """Why this failure is the activity's last one, or None when Temporal will retry it (as far
    as the worker can tell: a schedule-to-close timeout may still end it)."""
    if isinstance(exc, ApplicationError) and exc.non_retryable:
        return "not retryable"
    if policy is not None:
        kind = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
        if kind in (policy.non_retryable_error_types or ()):
            return "not retryable"
        if policy.maximum_attempts and attempt >= policy.maximum_attempts:
            return "last attempt"
    return None


def _shape_activity_failure(record: logging.LogRecord) -> None:
    exc_info = record.exc_info
    exc = exc_info[1] if isinstance(exc_info, tuple) else None
    if exc is None:
        return
    fields = record.__dict__
    policy: RetryPolicy | None = None
    attempt = fields.get("attempt") or 1
    if activity.in_activity():  # the SDK logs this from the attempt's own task
        info = activity.info()
        policy, attempt = info.retry_policy, info.attempt
    ending = _ends_activity(exc, attempt, policy)
    of = f" of {policy.maximum_attempts}" if policy and policy.maximum_attempts else ""
    cause = describe(exc)
    fields.setdefault("error", cause)
    if ending is None and isinstance(exc, expected_failures()):
        record.msg = "activity failed on attempt %s%s, will retry: %s"
        record.args = (attempt, of, cause)
        record.exc_info, record.exc_text = None, None
        fields.setdefault("retrying", True)
        return
    record.msg = "activity failed on attempt %s%s (%s): %s"
    record.args = (attempt, of, ending or "unexpected error", cause)
    if ending is not None and isinstance(exc, expected_failures()):
        # The one traceback worth reading is where leadflow's code raised or let pass the
        # error; the chain below it (httpx, httpcore, asyncio internals) is summed up in
        # `cause` already. An unexpected type keeps the whole chain.
        record.exc_text = "".join(traceback.format_exception(exc, chain=False)).rstrip("\n")
        record.exc_info = None
    fields.setdefault("retrying", False)


def _trace_fields(record: logging.LogRecord) -> None:
    """The OpenTelemetry trace and span the record was logged in: a log line leads to its trace
    (README, "Tracing"). Only installed when tracing is on."""
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        record.__dict__.setdefault("trace_id", format(span.trace_id, "032x"))
        record.__dict__.setdefault("span_id", format(span.span_id, "016x"))


class ContextFilter(logging.Filter):
    """Adds the context fields and shapes activity failures; on the handler, so it sees every
    record the handler writes (a logger's filter only sees records logged on that logger)."""

    def __init__(self, *, traces: bool = False) -> None:
        super().__init__()
        self._traces = traces

    def filter(self, record: logging.LogRecord) -> bool:
        if "_leadflow_seen" not in record.__dict__:  # shaped once, however many handlers
            record.__dict__["_leadflow_seen"] = True
            _add_context(record)
            if self._traces:
                _trace_fields(record)
            if record.exc_info and record.__dict__.get(_SDK_ERROR_ID) == _ACTIVITY_FAILURE:
                _shape_activity_failure(record)
        return True


# ---- formats ---------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """`2026-11-28 23:37:56,163 WARNING leadflow.x: message  [tenant=demo workflow=… run=01a22485
    activity=… attempt=2]`: the context at the end of the first line, before any traceback;
    run ids shortened to 8 characters (the workflow id finds the run)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record.__dict__
        parts = []
        for key, label in CONTEXT_FIELDS:
            value = fields.get(key)
            if value is None:
                continue
            if key == "run_id":
                value = str(value)[:8]
            parts.append(f"{label}={value}")
        return f"{line}  [{' '.join(parts)}]" if parts else line


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then the context
    and any other extra; a traceback is the `exc_info` string, so it is one line too."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *_NOT_FIELDS, "_leadflow_seen"],
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonLineFormatter() if fmt == "json" else TextFormatter()


class _Stderr(logging.StreamHandler[IO[str]]):
    """Writes to whatever `sys.stderr` is when a record is emitted (as logging's last-resort
    handler does), not the stream it was when configured: a process that swaps stderr (a test
    runner invoking commands in-process) never writes to a stream closed since."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        """StreamHandler's __init__ assigns it; the property above always wins."""


def configure(
    fmt: LogFormat,
    *,
    verbose: bool = False,
    traces: bool = False,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Route every record of this process through one handler in `fmt` (on stderr unless
    `stream`), replacing the handler an earlier call installed; returns the handler. `traces`
    (LEADFLOW_OTEL_ENABLED) adds the current `trace_id` and `span_id` to each record."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_leadflow", False)]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler._leadflow = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter(traces=traces))
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The SDK would also append its context dict to every message; the fields carry it now.
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
    return handler
