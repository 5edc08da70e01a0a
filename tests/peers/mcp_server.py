#!/usr/bin/env python3
"""FastMCP 4.1 test upstream for mcp-trace, over Streamable HTTP.

Tools:     get_weather(city), add(a, b), fail_tool(reason) [isError result],
           slow_progress(steps, delay) [progress notifications -> SSE], big_result(size)
Prompt:    greeting(name)
Resource:  demo://readme

Extra HTTP endpoints (not MCP):
  GET    /_seen   JSON list of every HTTP request the server received (except /_seen and /_health):
                  {seq, time, method, path, raw_path, query, http_version, client, headers: [[k, v], ...]
                   (raw order/case as received), body_b64, body_len,
                   response: {status, headers: [[k, v], ...], body_b64, body_len, complete}}
  DELETE /_seen   clear the list
  GET    /_health "ok"

OpenTelemetry: an SDK TracerProvider (service.name from $OTEL_SERVICE_NAME, default "mcp-server")
exporting OTLP http/protobuf to $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
$OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces" (default http://127.0.0.1:4318/v1/traces),
with a SimpleSpanProcessor (each span exported synchronously when it ends). --no-otel disables it.

CLI:
  python mcp_server.py [--host 127.0.0.1] [--port 8000] [--path /mcp] [--json-response] [--stateless]
                       [--static-tool-schemas] [--no-otel] [--service-name mcp-server] [--log-level warning]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import sys
import threading
import time
from typing import Any

from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVICE_NAME_DEFAULT = "mcp-server"
_RECORD_EXCLUDE = ("/_seen", "/_health")


# --------------------------------------------------------------------------- OpenTelemetry


def otlp_traces_endpoint() -> str:
    ep = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if ep:
        return ep
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    return base.rstrip("/") + "/v1/traces"


def setup_otel(service_name: str | None = None):
    """Install a global SDK TracerProvider exporting OTLP/HTTP protobuf. Returns the provider."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or SERVICE_NAME_DEFAULT
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_traces_endpoint(), timeout=5)))
    trace.set_tracer_provider(provider)
    return provider


# --------------------------------------------------------------------------- request recorder


class SeenStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self._seq = itertools.count(1)

    def add(self, item: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            item["seq"] = next(self._seq)
            self._items.append(item)
        return item

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


SEEN = SeenStore()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _hdrs(raw: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in raw]


class RecordRequestsMiddleware:
    """Pure ASGI middleware recording every HTTP request (and its response) into SEEN.

    The request body is read fully up front, recorded, then replayed to the app as a single
    ``http.request`` message; every later ``receive()`` call is delegated to the real channel,
    so ``http.disconnect`` detection (SSE streams) keeps working. The response is observed by
    wrapping ``send`` (status, headers, body bytes incl. SSE frames) without altering it.
    The entry is appended when the request body is complete, so it is visible in /_seen even
    while a streamed response is still in flight (response.complete == False until done).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _RECORD_EXCLUDE:
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        early: list[Message] = []  # e.g. an http.disconnect that arrived before the body finished
        while True:
            msg = await receive()
            if msg["type"] == "http.request":
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body", False):
                    break
            else:
                early.append(msg)
                break
        body = b"".join(chunks)

        client = scope.get("client")
        response: dict[str, Any] = {"status": None, "headers": [], "body_b64": "", "body_len": 0, "complete": False}
        resp_chunks: list[bytes] = []
        SEEN.add(
            {
                "time": time.time(),
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "http_version": scope.get("http_version"),
                "client": f"{client[0]}:{client[1]}" if client else None,
                "headers": _hdrs(scope["headers"]),
                "body_b64": _b64(body),
                "body_len": len(body),
                "response": response,
            }
        )

        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if early:
                return early.pop(0)
            return await receive()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = _hdrs(list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                b = message.get("body", b"")
                if b:
                    resp_chunks.append(b)
                    response["body_len"] += len(b)
                if not message.get("more_body", False):
                    response["body_b64"] = _b64(b"".join(resp_chunks))
                    response["complete"] = True
            await send(message)

        try:
            await self.app(scope, replay_receive, recording_send)
        finally:
            if not response["complete"]:
                response["body_b64"] = _b64(b"".join(resp_chunks))


# --------------------------------------------------------------------------- MCP server


def build_server():
    mcp = FastMCP("mcp-trace-test-server", instructions="Test upstream for mcp-trace.", version="0.1.0")

    @mcp.tool
    def get_weather(city: str) -> str:
        """Return a canned weather report for a city."""
        return f"Weather in {city}: sunny, 21C"

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @mcp.tool
    def fail_tool(reason: str) -> str:
        """Always fails; the result has isError=true."""
        raise ToolError(f"fail_tool failed: {reason}")

    @mcp.tool
    async def slow_progress(steps: int, delay: float, ctx: Context) -> str:
        """Emit one progress notification per step, sleeping `delay` seconds in between.

        Notifications are only sent when the request carries params._meta.progressToken
        (the mcp client adds one when a progress_callback is given).
        """
        for i in range(1, steps + 1):
            await ctx.report_progress(progress=i, total=steps, message=f"step {i}/{steps}")
            if i < steps:
                await asyncio.sleep(delay)
        return f"done {steps} steps"

    @mcp.tool
    def big_result(size: int) -> str:
        """Return a text of exactly `size` bytes (ASCII)."""
        pattern = "0123456789abcdefghijklmnopqrstuvwxyz"
        return (pattern * (size // len(pattern) + 1))[:size]

    @mcp.prompt
    def greeting(name: str) -> str:
        """A greeting prompt."""
        return f"Please greet {name} warmly."

    @mcp.resource("demo://readme", mime_type="text/plain", name="readme")
    def readme() -> str:
        """Demo readme resource."""
        return "This is the mcp-trace demo readme."

    @mcp.custom_route("/_seen", methods=["GET", "DELETE"])
    async def seen(request: Request) -> Response:
        if request.method == "DELETE":
            SEEN.clear()
            return Response(status_code=204)
        return JSONResponse(SEEN.list())

    @mcp.custom_route("/_health", methods=["GET"])
    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return mcp


def install_static_tool_schemas(mcp: FastMCP) -> None:
    """Give the SDK a static tool-schema lookup for 2026-07-28 Mcp-Param header validation.

    Stock behaviour: for every 2026-07-28 `tools/call` that has arguments, the SDK's modern HTTP entry
    resolves the tool's inputSchema by running the server's own `tools/list` handler internally, and
    FastMCP emits an extra *root* SERVER span "tools/list" (new trace id, no parent) for it. With this
    lookup installed the internal listing (and its orphan span) does not happen.
    """
    tools = asyncio.run(mcp.list_tools())
    schemas = {t.name: t.parameters for t in tools}
    mcp._mcp_server.get_tool_input_schema = schemas.get


def build_app(
    path: str = "/mcp", json_response: bool = False, stateless: bool = False, static_tool_schemas: bool = False
):
    """Build the Starlette app (with the recorder as the outermost middleware).

    Serves Streamable HTTP on `path` and, beside it, the legacy HTTP+SSE transport
    (2024-11-05: GET /sse, whose first event is `endpoint`, then POST /messages/?session_id=…).
    """
    import contextlib

    from starlette.applications import Starlette

    mcp = build_server()
    if static_tool_schemas:
        install_static_tool_schemas(mcp)
    http = mcp.http_app(
        path=path,
        transport="http",
        json_response=json_response,
        stateless_http=stateless,
        host_origin_protection=False,
    )
    legacy = mcp.http_app(path="/sse", transport="sse")
    legacy_routes = [r for r in legacy.routes if getattr(r, "path", "") in ("/sse", "/messages")]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with http.router.lifespan_context(app):
            async with legacy.router.lifespan_context(app):
                yield

    return Starlette(routes=[*http.routes, *legacy_routes], lifespan=lifespan,
                     middleware=[Middleware(RecordRequestsMiddleware)])


# --------------------------------------------------------------------------- subprocess helper (for pytest)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    """A mcp_server.py child process. .url (MCP endpoint), .base, .seen(), .clear_seen(), .stop()."""

    def __init__(self, proc, host: str, port: int, path: str) -> None:
        self.proc = proc
        self.host, self.port, self.path = host, port, path
        self.base = f"http://{host}:{port}"
        self.url = f"{self.base}{path}"
        self.log_path = ""  # combined stdout/stderr of the child

    def seen(self) -> list[dict[str, Any]]:
        import httpx

        return httpx.get(f"{self.base}/_seen", timeout=5).json()

    def clear_seen(self) -> None:
        import httpx

        httpx.delete(f"{self.base}/_seen", timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server_subprocess(
    *flags: str,
    port: int | None = None,
    host: str = "127.0.0.1",
    path: str = "/mcp",
    otlp_endpoint: str | None = None,
    service_name: str | None = None,
    timeout: float = 20.0,
    python: str | None = None,
) -> ServerProcess:
    """Spawn `python mcp_server.py --port N <flags>` and wait until GET /_health answers.

    otlp_endpoint: base URL (e.g. sink.url) -> OTEL_EXPORTER_OTLP_ENDPOINT for the child.
    flags: e.g. "--json-response", "--stateless", "--static-tool-schemas", "--no-otel".
    """
    import subprocess

    import httpx

    port = port or free_port(host)
    env = dict(os.environ)
    if otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    if service_name:
        env["OTEL_SERVICE_NAME"] = service_name
    cmd = [python or sys.executable, os.path.abspath(__file__), "--host", host, "--port", str(port),
           "--path", path, *flags]
    import tempfile

    log = tempfile.NamedTemporaryFile(prefix=f"mcp_server_{port}_", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    handle = ServerProcess(proc, host, port, path)
    handle.log_path = log.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log.name, errors="replace") as f:
                err = f.read()
            raise RuntimeError(f"mcp_server exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"{handle.base}/_health", timeout=1).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    handle.stop()
    raise TimeoutError(f"mcp_server on port {port} not ready within {timeout}s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--path", default="/mcp")
    ap.add_argument(
        "--json-response",
        action="store_true",
        help="answer requests with application/json instead of an SSE stream (legacy sessions: always; "
        "2026-07-28 requests: always, even when progress notifications are emitted - they are dropped)",
    )
    ap.add_argument(
        "--stateless",
        action="store_true",
        help="legacy (2025-11-25) path without sessions: no Mcp-Session-Id, fresh transport per request",
    )
    ap.add_argument(
        "--static-tool-schemas",
        action="store_true",
        help="suppress the extra orphan 'tools/list' SERVER span FastMCP emits for every 2026-07-28 "
        "tools/call with arguments (see install_static_tool_schemas)",
    )
    ap.add_argument("--no-otel", action="store_true", help="do not install an OTel SDK (no spans exported)")
    ap.add_argument("--service-name", default=None, help="default $OTEL_SERVICE_NAME or mcp-server")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)

    provider = None
    if not args.no_otel:
        provider = setup_otel(args.service_name)

    import uvicorn

    app = build_app(args.path, args.json_response, args.stateless, args.static_tool_schemas)
    print(
        f"mcp_server on http://{args.host}:{args.port}{args.path} json_response={args.json_response} "
        f"stateless={args.stateless} otel={'off' if provider is None else otlp_traces_endpoint()}",
        flush=True,
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=2)
    finally:
        if provider is not None:
            provider.shutdown()


if __name__ == "__main__":
    sys.exit(main())
