"""Issue 11: one trace for every client and every layout, by default.

The promise: the agent's trace shows the proxy's MCP span, and the MCP server's span nests
under it, whatever the client (trace context in a header, or only in `params._meta` as the
`mcp` SDK and the MCP instrumentation libraries send it) and whatever the layout (the
shipped configs, run by the `gateway` fixture once per layout).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import httpx
import pytest

import mcp_client
from conftest import (
    MCP_URL,
    REPO,
    assert_mcp_attributes,
    assert_proxy_span_between,
    envoy_spans,
    header,
    new_traceparent,
    seen_posts,
    server_span,
    server_span_of,
)


def bearer_session_id(token: str) -> str:
    """The session id the filter makes of a bearer token: a one-way hash."""
    return "bearer-sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def client_span(sink, trace_id: str, name: str = "MCP send tools/call get_weather") -> dict:
    match = lambda s: s["service_name"] == "mcp-client" and s["trace_id"] == trace_id and s["name"] == name
    return next(s for s in sink.wait_for(lambda sp: any(match(s) for s in sp), timeout=20) if match(s))


def test_header_client(gateway, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    report = mcp_client.run(MCP_URL, "session", otel=False, headers={"traceparent": traceparent}, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    proxy = assert_proxy_span_between(sink, traceparent.split("-")[2], server_span(sink, trace_id, "tools/call get_weather"),
                                      "tools/call get_weather")
    assert_mcp_attributes(proxy, "tools/call", "get_weather", session=report["session_id"])
    # Paired, Envoy's span is the parent and nothing extra is exported; a sidecar cannot
    # see Envoy's span, so the filter reports its own.
    assert proxy["service_name"] == ("envoy-mcp-gateway" if gateway.layout == "paired" else "mcp-trace")


@pytest.mark.parametrize("mode, headers, session", [
    ("session", {}, None),
    ("sessionless", {"X-Session-ID": "agent-run-11"}, "agent-run-11"),
    ("sessionless", {"Authorization": "Bearer agent-token-11"}, bearer_session_id("agent-token-11")),
], ids=["session", "sessionless-x-session-id", "sessionless-bearer"])
def test_meta_only_client(gateway, fresh, server, sink, mode, headers, session):
    """The `mcp` SDK with an OpenTelemetry SDK: its CLIENT span's context goes into
    `params._meta` only. Envoy's span starts a trace of its own; the filter's MCP span
    (linked to it when the filter can see it) is the server's parent on the client's trace."""
    report = mcp_client.run(MCP_URL, mode, otel=True, headers=headers, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    assert header(call["request_headers"], "traceparent") is None, "context only in _meta"
    client = client_span(sink, report["trace_id"])
    proxy = assert_proxy_span_between(sink, client["span_id"], server_span(sink, report["trace_id"], "tools/call get_weather"),
                                      "tools/call get_weather")
    assert proxy["service_name"] == "mcp-trace" and proxy["parent_span_id"] == client["span_id"]
    assert_mcp_attributes(proxy, "tools/call", "get_weather", session=session or report["session_id"])
    assert proxy["attributes"]["mcp_trace.request_id"] == header(call["response_headers"], "x-request-id")
    envoy = server_span_of(envoy_spans(sink, proxy["attributes"]["mcp_trace.request_id"]))
    assert envoy["trace_id"] != report["trace_id"], "Envoy's span is on a trace of its own"
    if gateway.layout == "paired":
        links = [(link["trace_id"], link["span_id"]) for link in proxy["links"]]
        assert links == [(envoy["trace_id"], envoy["span_id"])], "linked to Envoy's span"


def test_a_third_party_instrumentation_library(gateway, fresh, server, sink):
    """OpenInference's MCP instrumentation (process-global, hence its own process)."""
    run = subprocess.run([sys.executable, str(REPO / "tests" / "peers" / "instrumented_client.py"), "--url", MCP_URL,
                          "--otlp", sink.traces_url], capture_output=True, text=True, timeout=120,
                         cwd=REPO / "tests" / "peers")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["library"].startswith("openinference-instrumentation-mcp")
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    assert header(call["request_headers"], "traceparent") is None, "context only in _meta"
    client = client_span(sink, report["trace_id"])
    proxy = assert_proxy_span_between(sink, client["span_id"], server_span(sink, report["trace_id"], "tools/call get_weather"),
                                      "tools/call get_weather")
    assert_mcp_attributes(proxy, "tools/call", "get_weather", session=report["session_id"])


def test_malformed_header_context_still_gives_the_server_a_parent(gateway, fresh, server, sink):
    """An invalid `traceparent` header: Envoy's tracer starts no span, so the filter reports
    its own as the root of a new trace (W3C), and `tracestate` (meaningless without a valid
    `traceparent`) travels nowhere."""
    r = httpx.post(MCP_URL, timeout=10, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers={
        "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list",
        "traceparent": "00-zz-garbage", "tracestate": "vendor=secret-state"})
    assert r.status_code < 500
    seen = seen_posts(server)[-1]
    assert "tracestate" not in seen["headers_map"] and "vendor=secret-state" not in seen["body"].decode()
    traceparent = json.loads(seen["body"])["params"]["_meta"]["traceparent"]
    trace_id, own_span_id = traceparent.split("-")[1:3]
    match = lambda s: s["service_name"] == "mcp-trace" and s["span_id"] == own_span_id
    own = next(s for s in sink.wait_for(lambda sp: any(match(s) for s in sp), timeout=20) if match(s))
    assert own["trace_id"] == trace_id and own["parent_span_id"] == "", "the root of a new trace"
    assert own["name"] == "tools/list"
    assert_mcp_attributes(own, "tools/list")
    assert own["attributes"]["mcp_trace.request_id"] == r.headers["x-request-id"]
