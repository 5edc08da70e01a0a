"""The Istio-sidecar layout: one `standalone` instance, no router upstream filter."""

from __future__ import annotations

import json

import pytest

import mcp_client
from conftest import MCP_URL, envoy_spans, header, new_traceparent, seen_posts, server_span_of, standalone_config, start_envoy


@pytest.fixture(scope="module")
def sidecar(server, sink):
    envoy = start_envoy(standalone_config())
    yield envoy
    envoy.stop()


def test_server_joins_the_client_trace_beside_envoys_span(sidecar, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    report = mcp_client.run(MCP_URL, "session", otel=False, headers={"traceparent": traceparent}, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    rid = header(call["response_headers"], "x-request-id")
    envoy = server_span_of(envoy_spans(sink, rid))
    assert envoy["name"] == "tools/call get_weather"
    assert envoy["attributes"]["mcp.session.id"] == report["session_id"]
    server_span = sink.wait_for(lambda sp: any(s["service_name"] == "mcp-server" and s["trace_id"] == trace_id
                                               and s["name"] == "tools/call get_weather" for s in sp))
    server_span = next(s for s in server_span if s["service_name"] == "mcp-server" and s["trace_id"] == trace_id
                       and s["name"] == "tools/call get_weather")
    # No reported proxy span can be the parent here: the client's span is, as for Envoy's.
    assert server_span["parent_span_id"] == envoy["parent_span_id"] == traceparent.split("-")[2]
    upstream = next(s for s in seen_posts(server) if b'"tools/call"' in s["body"])
    meta = json.loads(upstream["body"])["params"]["_meta"]
    assert meta["traceparent"] == traceparent
    assert meta["io.github.mcp-trace/request-id"] == rid
