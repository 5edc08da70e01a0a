#!/usr/bin/env python3
"""MCP test client for mcp-trace, built on the official `mcp` 2.3 SDK (Streamable HTTP).

Two modes:
  session      protocol 2025-11-25: `Client(mode="legacy")` -> initialize handshake,
               server-assigned Mcp-Session-Id, notifications/initialized (202), GET SSE stream,
               DELETE on close.
  sessionless  protocol 2026-07-28: `Client(mode="auto")` -> server/discover probe, then per-request
               envelope (params._meta io.modelcontextprotocol/*, Mcp-Method / Mcp-Name headers),
               no initialize, no session id. We verify the probe did not fall back to legacy
               (raise otherwise). With no_discover=True, `Client(mode="2026-07-28")` pins the
               version and skips the probe entirely.

Every HTTP exchange the SDK makes is captured through httpx2 event hooks on the AsyncClient we hand
to the transport: method, url, request headers + body, response status + headers.

OTel (otel=True): installs an SDK TracerProvider (service.name "mcp-client") exporting OTLP
http/protobuf; the SDK's JSONRPCDispatcher then creates a CLIENT span "MCP send <method> [<name>]" per
request and injects `traceparent` (and `tracestate` if any) into params._meta. The SDK does NOT
instrument httpx2, so no `traceparent` HTTP header is sent unless you pass one in `headers`.

CLI examples:
  python mcp_client.py --url http://127.0.0.1:8000/mcp --mode session --otel
  python mcp_client.py --url http://127.0.0.1:10000/mcp --mode sessionless \
      -H 'Authorization: Bearer xyz' -H 'traceparent: 00-<32hex>-<16hex>-01' --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT
from mcp.shared.exceptions import MCPError

SESSION_VERSION = "2025-11-25"
SESSIONLESS_VERSION = "2026-07-28"

DEFAULT_STEPS = ["list_tools", "get_weather", "fail_tool", "read_resource", "get_prompt", "ping"]
ALL_STEPS = DEFAULT_STEPS + ["add", "slow_progress", "big_result"]

# --------------------------------------------------------------------------- OTel

_PROVIDER = None


def otlp_traces_endpoint() -> str:
    ep = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if ep:
        return ep
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    return base.rstrip("/") + "/v1/traces"


def setup_otel(service_name: str = "mcp-client", endpoint: str | None = None):
    """Install (once per process) a global SDK TracerProvider exporting OTLP http/protobuf.

    Uses SimpleSpanProcessor, so every span is exported synchronously when it ends.
    """
    global _PROVIDER
    if _PROVIDER is not None:
        return _PROVIDER
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint or otlp_traces_endpoint(), timeout=5))
    )
    trace.set_tracer_provider(provider)
    _PROVIDER = provider
    return provider


@contextlib.contextmanager
def client_otel_disabled():
    """Make the mcp client behave as if no OTel SDK were installed, for the duration of the block.

    The SDK's JSONRPCDispatcher creates its CLIENT span and injects `_meta.traceparent` through
    the module attributes `otel_span` / `inject_trace_context`; once a global SDK TracerProvider is
    installed in the process (by an earlier otel=True run) that cannot be undone, so for otel=False
    runs we swap those two attributes for no-ops. Process-global: do not run an otel=True scenario
    concurrently in the same process.
    """
    import mcp.shared.jsonrpc_dispatcher as disp
    from opentelemetry.trace import INVALID_SPAN

    @contextlib.contextmanager
    def _no_span(*_a: Any, **_k: Any):
        yield INVALID_SPAN

    saved = (disp.otel_span, disp.inject_trace_context)
    disp.otel_span = _no_span
    disp.inject_trace_context = lambda meta: None
    try:
        yield
    finally:
        disp.otel_span, disp.inject_trace_context = saved


# --------------------------------------------------------------------------- HTTP capture


@dataclass
class HttpRecorder:
    """Collects every request/response pair made through the httpx2 client."""

    exchanges: list[dict[str, Any]] = field(default_factory=list)

    async def on_request(self, request: httpx2.Request) -> None:
        try:
            body = request.content.decode("utf-8", "replace")
        except Exception:  # streaming body
            body = None
        request.extensions["_rec"] = rec = {
            "method": request.method,
            "url": str(request.url),
            "request_headers": [[k, v] for k, v in request.headers.multi_items()],
            "request_body": body,
            "request_json": _try_json(body),
            "status": None,
            "response_headers": None,
        }
        self.exchanges.append(rec)

    async def on_response(self, response: httpx2.Response) -> None:
        rec = response.request.extensions.get("_rec")
        if rec is None:  # pragma: no cover
            return
        rec["status"] = response.status_code
        rec["response_headers"] = [[k, v] for k, v in response.headers.multi_items()]

    def make_client(
        self, headers: dict[str, str] | None = None, timeout: float | None = None, traceparent_from_meta: bool = False
    ) -> httpx2.AsyncClient:
        request_hooks = [copy_meta_traceparent_to_header] if traceparent_from_meta else []
        return httpx2.AsyncClient(
            headers=headers or {},
            timeout=httpx2.Timeout(timeout or MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT),
            event_hooks={"request": [*request_hooks, self.on_request], "response": [self.on_response]},
        )


async def copy_meta_traceparent_to_header(request: httpx2.Request) -> None:
    """Send the message's `_meta.traceparent` as the HTTP `traceparent` too, as a client with
    HTTP instrumentation would: Envoy's span then joins the MCP trace. Requests without one
    (notifications, GET, DELETE) keep whatever header the client was given."""
    try:
        msg = json.loads(request.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(msg, list):
        msg = msg[0] if msg else None
    params = msg.get("params") if isinstance(msg, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    tp = meta.get("traceparent") if isinstance(meta, dict) else None
    if isinstance(tp, str):
        request.headers["traceparent"] = tp


def _try_json(s: str | None) -> Any:
    if not s:
        return None
    try:
        return json.loads(s)
    except ValueError:
        return None


def _hget(pairs: list[list[str]] | None, name: str) -> str | None:
    for k, v in pairs or []:
        if k.lower() == name.lower():
            return v
    return None


def _dump(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return obj


# --------------------------------------------------------------------------- scenario


async def run_scenario(
    url: str = "http://127.0.0.1:8000/mcp",
    mode: str = "session",
    *,
    headers: dict[str, str] | None = None,
    otel: bool = False,
    otel_endpoint: str | None = None,
    root_span: bool = True,
    meta_traceparent: str | None = None,
    steps: list[str] | None = None,
    no_discover: bool = False,
    progress_steps: int = 3,
    progress_delay: float = 0.2,
    big_size: int = 100_000,
    timeout: float = 30.0,
    http_traceparent_from_meta: bool = False,
) -> dict[str, Any]:
    """Run one client session against `url` and report what happened.

    mode: "session" (2025-11-25, initialize + Mcp-Session-Id) or "sessionless" (2026-07-28).
    headers: extra HTTP headers sent on every request (e.g. traceparent, Authorization, X-Session-ID).
    otel: enable the client OTel SDK -> CLIENT spans + traceparent injected into params._meta.
        otel=False: no client spans and no _meta injection, even if an SDK provider is already
        installed in this process (see client_otel_disabled).
    root_span: with otel, wrap the whole run in one INTERNAL span "mcp-client <mode>" so every request
        shares one trace id (the CLIENT spans are its children). False: each request is its own trace.
    meta_traceparent: put this exact traceparent into params._meta of every call that accepts meta
        (tools/call, resources/read, prompts/get, tools/list, ping). If otel is also on, the SDK's
        injection overwrites it.
    steps: subset/ordering of ALL_STEPS; default DEFAULT_STEPS.
    http_traceparent_from_meta: also send each message's _meta.traceparent as the HTTP
        traceparent header (an HTTP-instrumented client), so Envoy's span joins the MCP trace.

    Returns a JSON-able dict: mode, protocol_version, session_id, server_info, results{step: ...},
    errors{step: ...}, progress[...], http[...] (every exchange), trace_id (root span, if any).
    """
    if mode not in ("session", "sessionless"):
        raise ValueError("mode must be 'session' or 'sessionless'")
    steps = list(steps or DEFAULT_STEPS)
    unknown = set(steps) - set(ALL_STEPS)
    if unknown:
        raise ValueError(f"unknown steps {sorted(unknown)}; valid: {ALL_STEPS}")

    tracer = None
    if otel:
        setup_otel(endpoint=otel_endpoint)
        from opentelemetry import trace

        tracer = trace.get_tracer("mcp-trace-test-client")

    rec = HttpRecorder()
    report: dict[str, Any] = {
        "mode": mode,
        "url": url,
        "protocol_version": None,
        "session_id": None,
        "server_info": None,
        "results": {},
        "errors": {},
        "progress": [],
        "timing": {},
        "http": rec.exchanges,
        "trace_id": None,
        "root_span_id": None,
    }
    meta = {"traceparent": meta_traceparent} if meta_traceparent else None

    async def progress_cb(progress: float, total: float | None, message: str | None) -> None:
        report["progress"].append({"progress": progress, "total": total, "message": message, "at": time.monotonic()})

    sdk_mode = "legacy" if mode == "session" else (SESSIONLESS_VERSION if no_discover else "auto")

    async def body() -> None:
        http_client = rec.make_client(headers, timeout, traceparent_from_meta=http_traceparent_from_meta)
        async with http_client:
            transport = streamable_http_client(url, http_client=http_client)
            async with Client(transport, mode=sdk_mode, read_timeout_seconds=timeout) as client:
                report["protocol_version"] = client.protocol_version
                report["server_info"] = _dump(client.server_info)
                if mode == "sessionless" and client.protocol_version != SESSIONLESS_VERSION:
                    raise RuntimeError(
                        f"sessionless mode fell back to {client.protocol_version} (server/discover probe failed)"
                    )
                for step in steps:
                    try:
                        started = time.monotonic()
                        report["results"][step] = await _run_step(
                            client, step, mode, meta, progress_cb, progress_steps, progress_delay, big_size
                        )
                        report["timing"][step] = {"started": started, "finished": time.monotonic()}
                    except MCPError as e:
                        report["errors"][step] = {"code": e.error.code, "message": e.error.message}
                    except Exception as e:  # keep going, record
                        report["errors"][step] = {"exception": f"{type(e).__name__}: {e}"}

    if tracer is not None and root_span:
        with tracer.start_as_current_span(f"mcp-client {mode}") as span:
            ctx = span.get_span_context()
            report["trace_id"] = format(ctx.trace_id, "032x")
            report["root_span_id"] = format(ctx.span_id, "016x")
            await body()
    elif tracer is not None:
        await body()
    else:
        with client_otel_disabled():
            await body()

    # Session id as seen by the client: response header on the initialize POST.
    for ex in rec.exchanges:
        sid = _hget(ex["response_headers"], "mcp-session-id")
        if sid:
            report["session_id"] = sid
            break
    return report


async def _run_step(client, step, mode, meta, progress_cb, progress_steps, progress_delay, big_size):
    if step == "list_tools":
        r = await client.list_tools(meta=meta, cache_mode="bypass")
        return {"tools": sorted(t.name for t in r.tools)}
    if step == "get_weather":
        return _dump(await client.call_tool("get_weather", {"city": "Paris"}, meta=meta))
    if step == "add":
        return _dump(await client.call_tool("add", {"a": 2, "b": 3}, meta=meta))
    if step == "fail_tool":
        return _dump(await client.call_tool("fail_tool", {"reason": "requested"}, meta=meta))
    if step == "slow_progress":
        return _dump(
            await client.call_tool(
                "slow_progress",
                {"steps": progress_steps, "delay": progress_delay},
                progress_callback=progress_cb,
                meta=meta,
            )
        )
    if step == "big_result":
        r = await client.call_tool("big_result", {"size": big_size}, meta=meta)
        text = r.content[0].text if r.content else ""
        return {"is_error": r.is_error, "text_len": len(text)}
    if step == "read_resource":
        return _dump(await client.read_resource("demo://readme", meta=meta, cache_mode="bypass"))
    if step == "get_prompt":
        return _dump(await client.get_prompt("greeting", {"name": "Ada"}, meta=meta))
    if step == "ping":
        if mode == "sessionless":
            return {"skipped": "ping does not exist at 2026-07-28"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _dump(await client.send_ping(meta=meta))
    raise ValueError(step)  # pragma: no cover


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """A compact view: per HTTP exchange the MCP-relevant headers; per step ok / isError / error."""
    interesting_req = ["accept", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name",
                       "mcp-session-id", "traceparent", "authorization", "x-session-id", "last-event-id"]
    interesting_resp = ["content-type", "mcp-session-id", "x-request-id", "traceparent"]
    http = []
    for ex in report["http"]:
        body = ex.get("request_json") or {}
        params = body.get("params") or {} if isinstance(body, dict) else {}
        m = params.get("_meta") if isinstance(params, dict) else None
        http.append(
            {
                "req": f'{ex["method"]} {body.get("method", "") if isinstance(body, dict) else ""}'.strip(),
                "status": ex["status"],
                "req_headers": {h: _hget(ex["request_headers"], h) for h in interesting_req
                                if _hget(ex["request_headers"], h) is not None},
                "resp_headers": {h: _hget(ex["response_headers"], h) for h in interesting_resp
                                 if _hget(ex["response_headers"], h) is not None},
                "meta_keys": sorted(m) if isinstance(m, dict) else None,
                "meta_traceparent": m.get("traceparent") if isinstance(m, dict) else None,
            }
        )
    steps = {}
    for k, v in report["results"].items():
        if isinstance(v, dict) and v.get("isError"):
            steps[k] = "isError"
        elif isinstance(v, dict) and "skipped" in v:
            steps[k] = "skipped"
        else:
            steps[k] = "ok"
    for k, v in report["errors"].items():
        steps[k] = f"error {v}"
    return {
        "mode": report["mode"],
        "protocol_version": report["protocol_version"],
        "session_id": report["session_id"],
        "trace_id": report["trace_id"],
        "steps": steps,
        "progress": report["progress"],
        "http": http,
    }


def run(url: str = "http://127.0.0.1:8000/mcp", mode: str = "session", **kw: Any) -> dict[str, Any]:
    """Synchronous wrapper around run_scenario (for plain pytest tests)."""
    return asyncio.run(run_scenario(url, mode, **kw))


def shutdown_otel() -> None:
    """Flush and shut down the client TracerProvider, if one was installed."""
    if _PROVIDER is not None:
        _PROVIDER.force_flush()


def _parse_header(s: str) -> tuple[str, str]:
    k, sep, v = s.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"header must be 'Name: value', got {s!r}")
    return k.strip(), v.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000/mcp")
    ap.add_argument("--mode", choices=["session", "sessionless", "both"], default="both")
    ap.add_argument("-H", "--header", action="append", type=_parse_header, default=[],
                    help="extra request header 'Name: value' (repeatable)")
    ap.add_argument("--otel", action="store_true", help="enable client OTel SDK (spans + _meta injection)")
    ap.add_argument("--otel-endpoint", default=None,
                    help="OTLP traces URL (default $OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces or 127.0.0.1:4318)")
    ap.add_argument("--no-root-span", action="store_true", help="with --otel: one trace per request")
    ap.add_argument("--meta-traceparent", default=None, help="explicit traceparent to put in params._meta")
    ap.add_argument("--steps", default=None, help=f"comma list from {ALL_STEPS}; 'all' for every step")
    ap.add_argument("--no-discover", action="store_true",
                    help="sessionless: pin 2026-07-28 without the server/discover probe")
    ap.add_argument("--progress-steps", type=int, default=3)
    ap.add_argument("--progress-delay", type=float, default=0.2)
    ap.add_argument("--big-size", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="print the full report (incl. all HTTP exchanges)")
    args = ap.parse_args(argv)

    steps = ALL_STEPS if args.steps == "all" else (args.steps.split(",") if args.steps else None)
    modes = ["session", "sessionless"] if args.mode == "both" else [args.mode]
    out = []
    ok = True
    for m in modes:
        rep = run(
            args.url, m, headers=dict(args.header), otel=args.otel, otel_endpoint=args.otel_endpoint,
            root_span=not args.no_root_span, meta_traceparent=args.meta_traceparent, steps=steps,
            no_discover=args.no_discover, progress_steps=args.progress_steps,
            progress_delay=args.progress_delay, big_size=args.big_size,
        )
        ok = ok and not rep["errors"]
        out.append(rep if args.json else summarize(rep))
    shutdown_otel()
    print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
