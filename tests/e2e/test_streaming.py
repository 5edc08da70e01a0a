"""Issue 4: streaming responses, sessions over time, metrics — through the real Envoy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

import mcp_client
from conftest import (
    MCP_URL,
    GATEWAY,
    envelope_meta,
    envoy_spans,
    header,
    post_jsonrpc,
    server_span_of,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def request_ids(report) -> list[str]:
    return [header(ex["response_headers"], "x-request-id") for ex in report["http"]]


def test_progress_notifications_arrive_as_they_are_sent(gateway, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "session", otel=False, steps=["slow_progress"], progress_steps=5, progress_delay=0.4)
    assert not report["errors"], report["errors"]
    arrivals = [p["at"] for p in report["progress"]]
    assert len(arrivals) == 5
    started, finished = report["timing"]["slow_progress"]["started"], report["timing"]["slow_progress"]["finished"]
    # Streamed, not held: the first arrives long before the tool finishes, and they
    # arrive spread out at the pace the server sends them (0.4 s apart).
    assert arrivals[0] - started < 1.0
    assert finished - arrivals[0] > 1.2
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.2, gaps
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    assert header(call["response_headers"], "content-type").startswith("text/event-stream")
    span = server_span_of(envoy_spans(sink, header(call["response_headers"], "x-request-id")))
    assert span["attributes"]["mcp.sse.notifications"] == "5"
    assert int(span["attributes"]["mcp.sse.events"]) >= 6
    assert "error.type" not in span["attributes"]


def test_tool_error_in_json_response_and_sse(gateway, fresh, server, sink):
    for mode, ctype in (("sessionless", "application/json"), ("session", "text/event-stream")):
        report = mcp_client.run(MCP_URL, mode, otel=False, steps=["fail_tool"])
        call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
        assert header(call["response_headers"], "content-type").startswith(ctype)
        span = server_span_of(envoy_spans(sink, header(call["response_headers"], "x-request-id")))
        assert span["attributes"]["error.type"] == "tool_error", mode


def test_ten_megabyte_json_result_passes_intact_with_flat_memory(gateway, fresh, server, sink):
    size = 10_000_000

    def call():
        r = post_jsonrpc("tools/call", {"name": "big_result", "arguments": {"size": size}}, name="big_result")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        text = r.json()["result"]["content"][0]["text"]
        pattern = "0123456789abcdefghijklmnopqrstuvwxyz"
        assert text == (pattern * (size // len(pattern) + 1))[:size], "every byte as the server sent it"
        return r

    call()  # warm up both workers' VMs and Envoy's buffers
    before = rss_kib(gateway.proc.pid)
    for _ in range(3):
        r = call()
    after = rss_kib(gateway.proc.pid)
    # Had the filter held the body, each worker's VM would have grown by >= 10 MB.
    assert after - before < 8 * 1024, f"Envoy RSS grew {after - before} KiB over 3 x 10 MB responses"
    span = server_span_of(envoy_spans(sink, r.headers["x-request-id"]))
    assert span["attributes"]["gen_ai.tool.name"] == "big_result"
    assert "error.type" not in span["attributes"]


def test_one_session_id_on_every_span_of_a_session(gateway, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "session", otel=False, steps=["list_tools", "get_weather"])
    assert not report["errors"]
    methods = [ex["method"] for ex in report["http"]]
    assert "GET" in methods and "DELETE" in methods
    for rid in request_ids(report):
        span = server_span_of(envoy_spans(sink, rid))
        assert span["attributes"]["mcp.session.id"] == report["session_id"], span["name"]


def test_sessionless_mode_takes_the_session_from_other_sources(gateway, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "sessionless", otel=False, steps=["list_tools", "get_weather"],
                            headers={"X-Session-ID": "agent-run-7"})
    assert not report["errors"]
    for rid in request_ids(report):
        assert server_span_of(envoy_spans(sink, rid))["attributes"]["mcp.session.id"] == "agent-run-7"
    report = mcp_client.run(MCP_URL, "sessionless", otel=False, steps=["list_tools"],
                            headers={"Authorization": "Bearer token-of-agent-8"})
    sessions = {server_span_of(envoy_spans(sink, rid))["attributes"]["mcp.session.id"] for rid in request_ids(report)}
    assert len(sessions) == 1 and next(iter(sessions)).startswith("bearer-sha256:")


def test_expired_session_is_marked(gateway, fresh, server, sink):
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
    base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    r = httpx.post(MCP_URL, json=init, headers=base, timeout=10)
    session = r.headers["mcp-session-id"]
    span = server_span_of(envoy_spans(sink, r.headers["x-request-id"]))
    assert span["attributes"]["mcp.session.id"] == session
    # The server drops the session behind the proxy's back (as an expiry would).
    httpx.delete(f"http://127.0.0.1:8000/mcp", headers={**base, "mcp-session-id": session,
                                                         "mcp-protocol-version": "2025-11-25"}, timeout=10)
    before = gateway.stats().get("wasmcustom.mcp_trace.sessions.expired", 0)
    r = httpx.post(MCP_URL, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                   headers={**base, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}, timeout=10)
    assert r.status_code == 404
    span = server_span_of(envoy_spans(sink, r.headers["x-request-id"]))
    assert span["attributes"]["mcp_trace.session.expired"] == "true"
    assert span["attributes"]["mcp.session.id"] == session
    assert gateway.stats()["wasmcustom.mcp_trace.sessions.expired"] == before + 1


def test_legacy_http_sse_transport(gateway, fresh, server, sink):
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    async def session():
        async with sse_client(f"{GATEWAY}/sse") as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                return await s.call_tool("get_weather", {"city": "Oslo"})

    result = asyncio.run(session())
    assert "Oslo" in result.content[0].text
    posts = [x for x in server.seen() if x["method"] == "POST" and x["path"].startswith("/messages")]
    assert posts
    session_id = dict(kv.split("=", 1) for kv in posts[0]["query"].split("&"))["session_id"]
    rids = [dict((k.lower(), v) for k, v in p["headers"]).get("x-request-id") for p in posts]
    names = set()
    for rid in rids:
        span = server_span_of(envoy_spans(sink, rid))
        assert span["attributes"]["mcp.session.id"] == session_id
        names.add(span["name"])
    assert {"initialize", "tools/call get_weather"} <= names
    stream = sink.wait_for(lambda sp: any(s["name"] == "GET /sse" and s["kind_name"] == "SERVER" for s in sp))
    stream = next(s for s in stream if s["name"] == "GET /sse" and s["kind_name"] == "SERVER")
    assert stream["attributes"]["mcp.session.id"] == session_id
    assert int(stream["attributes"]["mcp.sse.events"]) >= 3  # endpoint + two responses


def test_metrics_count_methods_errors_and_durations(gateway, fresh, server, sink):
    before = gateway.stats()
    mcp_client.run(MCP_URL, "sessionless", otel=False, steps=["list_tools", "get_weather", "fail_tool"])
    after = gateway.stats()

    def delta(name):
        return after.get(f"wasmcustom.mcp_trace.{name}", 0) - before.get(f"wasmcustom.mcp_trace.{name}", 0)

    assert delta("requests.server_discover") == 1
    assert delta("requests.tools_call") == 2
    assert delta("requests.tools_list") >= 1
    assert delta("errors.tool_error") == 1
    text = httpx.get("http://127.0.0.1:9901/stats/prometheus", timeout=5).text
    assert "mcp_trace_operation_duration_ms_bucket" in text
    assert not any("get_weather" in line for line in text.splitlines() if line.startswith("mcp_trace")), \
        "per-tool counters only for tools on the allow-list"
