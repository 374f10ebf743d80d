"""The benchmark's outside world, served from one separate process so it does not compete with
the measuring process's event loop:

- a fixture web: many small company sites on loopback, each on its own 127.x.y.z address (the
  whole 127.0.0.0/8 block reaches the loopback interface on Linux), with a fixed latency per
  response and a configurable share of broken sites (404);
- a fake DuckDuckGo HTML endpoint (`POST /html/`) whose results point at those sites;
- a fake LLM speaking the OpenAI Chat Completions wire format (`POST /v1/chat/completions`),
  answering after a fixed latency (../shared/wire/llm_apis_anthropic_openai.md).

A deliberately small HTTP/1.1 server on asyncio streams (keep-alive, Content-Length bodies):
a full ASGI stack would spend the benchmark machine's two cores on the fakes instead of leadflow.

    python -m bench.fakes --web-port 18080 --llm-port 18081 --site-latency-ms 300 ...
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import ipaddress
import json
import re
import signal
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

SITE_RE = re.compile(r"Company (\d+)")


def site_host(index: int) -> str:
    """The loopback address of site `index` (0-based); 250 hosts per /24, never .0 or .255."""
    return f"127.{1 + index // 62_500}.{(index // 250) % 250}.{index % 250 + 1}"


def site_index(host: str) -> int | None:
    try:
        a, b, c, d = (int(p) for p in host.split("."))
    except ValueError:
        return None
    if a != 127 or b == 0:
        return None
    return (b - 1) * 62_500 + c * 250 + (d - 1)


def company_name(index: int) -> str:
    return f"Company {index}"


def is_broken(index: int, failure_rate: float) -> bool:
    """Deterministic per site, so the benchmark is reproducible run after run."""
    digest = hashlib.sha256(f"site-{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < failure_rate


@dataclass
class Config:
    site_latency: float
    search_latency: float
    llm_latency: float
    failure_rate: float
    web_port: int


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, str, bytes]  # status, content type, body
STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def site_page(index: int, path: str, cfg: Config) -> Reply:
    if is_broken(index, cfg.failure_rate):
        return 404, "text/html; charset=utf-8", b"<h1>Not Found</h1>"
    name = company_name(index)
    host = site_host(index)
    if path == "/robots.txt":
        return 200, "text/plain", b"User-agent: *\nDisallow: /private/\n"
    if path not in ("/", "/contact", "/about"):
        return 404, "text/html; charset=utf-8", b"<h1>Not Found</h1>"
    slug = f"company{index}"
    body = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{name} — industrial widgets</title>
<meta name="description"
 content="{name} builds industrial widgets and services for logistics teams.">
</head><body><header><nav><a href="/">Home</a> <a href="/about">About</a>
<a href="/contact">Contact</a></nav></header>
<main><h1>{name}</h1>
<p>{name} designs and builds industrial widgets for logistics and warehousing teams
across Europe. Founded in {1990 + index % 30}, we employ {20 + index % 400} people
and ship to {3 + index % 40} countries.</p>
<p>Our customers use our conveyors, scanners and planning software to move parcels faster
with fewer errors. We offer installation, maintenance contracts and training.</p>
<h2>Contact</h2>
<p>Write to <a href="mailto:sales@{slug}.example">sales@{slug}.example</a>
or info at {slug}.example.
Call us on +31 20 {index % 900 + 100:03d} {index % 9000 + 1000:04d}.</p>
</main><footer>
<a href="https://www.linkedin.com/company/{slug}">LinkedIn</a>
<a href="https://twitter.com/{slug}">Twitter</a>
<a href="https://www.facebook.com/{slug}">Facebook</a>
<p>&copy; {name}, {host}</p></footer></body></html>"""
    return 200, "text/html; charset=utf-8", body.encode()


def search_page(query: str, cfg: Config) -> Reply:
    match = SITE_RE.search(query)
    if match is None:
        body = '<html><body><div class="no-results">No results.</div></body></html>'
        return 200, "text/html; charset=utf-8", body.encode()
    index = int(match.group(1))
    target = f"http://{site_host(index)}:{cfg.web_port}/"
    href = f"//duckduckgo.com/l/?uddg={quote(target, safe='')}&rut=bench"
    title = html.escape(f"{company_name(index)} — industrial widgets")
    card = f"""<div class="result results_links results_links_deep web-result">
  <div class="links_main links_deep result__body">
    <h2 class="result__title"><a rel="nofollow" class="result__a" href="{href}">{title}</a></h2>
    <div class="result__extras"><div class="result__extras__url">
      <a class="result__url" href="{href}">{html.escape(target)}</a></div></div>
    <a class="result__snippet" href="{href}">{title}: conveyors, scanners and software.</a>
    <div class="clear"></div>
  </div>
</div>"""
    return 200, "text/html; charset=utf-8", f"<html><body>{card}</body></html>".encode()


async def web_handler(req: Request, cfg: Config) -> Reply:
    host = req.headers.get("host", "").rsplit(":", 1)[0]
    path = urlsplit(req.target).path or "/"
    if path.startswith("/html"):
        await asyncio.sleep(cfg.search_latency)
        form = parse_qs(req.body.decode("utf-8", "replace"))
        if req.method == "GET":
            form = parse_qs(urlsplit(req.target).query)
        return search_page((form.get("q") or [""])[0], cfg)
    index = site_index(host)
    await asyncio.sleep(cfg.site_latency)
    if index is None:
        return 404, "text/plain", b"unknown site"
    return site_page(index, path, cfg)


def _fill(schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    """A value valid against a (simple) JSON schema: what a structured-output call needs."""
    if "$ref" in schema:
        return _fill(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _fill(options[0], defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema.get("type") != "object":
        return schema["default"]
    kind = schema.get("type", "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _fill(v, defs, k) for k, v in props.items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if "subject" in name:
        return "Faster parcels for your warehouse"
    return (
        "Hello, I read that your team builds industrial widgets for logistics. "
        "We help companies like yours cut handling time; would a short call next week suit you?"
    )


def chat_completion(payload: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "refusal": None, "annotations": []}
    finish = "stop"
    tools = payload.get("tools") or []
    fmt = payload.get("response_format") or {}
    if tools:
        fn = tools[0].get("function", {})
        params = fn.get("parameters", {})
        args = _fill(params, params.get("$defs", {}))
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": "call_bench",
                "type": "function",
                "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)},
            }
        ]
        finish = "tool_calls"
    elif fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema", {}).get("schema", {})
        message["content"] = json.dumps(_fill(schema, schema.get("$defs", {})))
    elif fmt.get("type") == "json_object":
        message["content"] = json.dumps(
            {"subject": _fill({}, {}, "subject"), "body": _fill({}, {}, "body")}
        )
    else:
        message["content"] = _fill({}, {}, "body")
    prompt_chars = sum(len(str(m.get("content", ""))) for m in payload.get("messages", []))
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model", "bench-model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": 60,
            "total_tokens": max(1, prompt_chars // 4) + 60,
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }


async def llm_handler(req: Request, cfg: Config) -> Reply:
    path = urlsplit(req.target).path
    if req.method != "POST" or not path.endswith("/chat/completions"):
        body = {"error": {"message": f"no route {path}", "type": "invalid_request_error"}}
        return 404, "application/json", json.dumps(body).encode()
    await asyncio.sleep(cfg.llm_latency)
    try:
        payload = json.loads(req.body or b"{}")
    except ValueError:
        body = {"error": {"message": "invalid JSON", "type": "invalid_request_error"}}
        return 400, "application/json", json.dumps(body).encode()
    return 200, "application/json", json.dumps(chat_completion(payload)).encode()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body)


def serve(handler: Any, cfg: Config) -> Any:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        # Bound to all addresses (to answer on every 127.x.y.z) but only loopback may talk.
        if not peer or not ipaddress.ip_address(peer[0]).is_loopback:
            writer.close()
            return
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                status, ctype, body = await handler(req, cfg)
                keep = req.headers.get("connection", "").lower() != "close"
                head = (
                    f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Error')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                )
                writer.write(head.encode("latin-1") + body)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return on_connection


async def main_async(args: argparse.Namespace) -> None:
    cfg = Config(
        site_latency=args.site_latency_ms / 1000,
        search_latency=(
            args.search_latency_ms if args.search_latency_ms >= 0 else args.site_latency_ms
        )
        / 1000,
        llm_latency=args.llm_latency_ms / 1000,
        failure_rate=args.failure_rate,
        web_port=args.web_port,
    )
    web = await asyncio.start_server(
        serve(web_handler, cfg), "0.0.0.0", args.web_port, backlog=4096
    )
    llm = await asyncio.start_server(
        serve(llm_handler, cfg), "127.0.0.1", args.llm_port, backlog=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fakes ready: web :{args.web_port} llm :{args.llm_port}", flush=True)
    async with web, llm:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--llm-port", type=int, required=True)
    parser.add_argument("--site-latency-ms", type=float, default=300)
    parser.add_argument("--search-latency-ms", type=float, default=-1, help="default: site latency")
    parser.add_argument("--llm-latency-ms", type=float, default=500)
    parser.add_argument("--failure-rate", type=float, default=0.05)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
