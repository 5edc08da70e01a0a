"""The filter's own spans (OTLP/HTTP JSON through an Envoy cluster) with
`own_spans.mode: always`: one per message, with kind, status, links and the sampling
decision Envoy's tracer cannot express. (When they are reported by default, "auto", is
tests/e2e/test_one_trace.py's subject.)"""

from __future__ import annotations

import json

import pytest

import mcp_client
from conftest import MCP_URL, header, new_traceparent, own_spans_config, post_jsonrpc, seen_posts, start_envoy


@pytest.fixture(scope="module")
def gateway_own_spans(server, sink):
    envoy = start_envoy(own_spans_config())
    yield envoy
    envoy.stop()


def spans_of(sink, service, predicate, timeout=20):
    found = sink.wait_for(lambda sp: any(s["service_name"] == service and predicate(s) for s in sp), timeout=timeout)
    return [s for s in found if s["service_name"] == service and predicate(s)]


def test_context_only_in_meta_still_gives_one_trace(gateway_own_spans, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "session", otel=True, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    trace_id = report["trace_id"]
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    assert header(call["request_headers"], "traceparent") is None, "context only in _meta"
    client_span = spans_of(sink, "mcp-client", lambda s: s["name"] == "MCP send tools/call get_weather" and s["trace_id"] == trace_id)[0]
    proxy = spans_of(sink, "mcp-trace", lambda s: s["name"] == "tools/call get_weather" and s["trace_id"] == trace_id)[0]
    server_span = spans_of(sink, "mcp-server", lambda s: s["name"] == "tools/call get_weather" and s["trace_id"] == trace_id)[0]
    # client span -> proxy MCP span -> server span, all on the client's trace
    assert proxy["parent_span_id"] == client_span["span_id"]
    assert server_span["parent_span_id"] == proxy["span_id"]
    assert proxy["kind_name"] == "CLIENT"
    assert proxy["attributes"]["mcp.method.name"] == "tools/call"
    assert proxy["attributes"]["gen_ai.tool.name"] == "get_weather"
    assert proxy["attributes"]["mcp.session.id"] == report["session_id"]
    assert proxy["attributes"]["mcp_trace.request_id"] == header(call["response_headers"], "x-request-id")
    # ... and the proxy span links Envoy's HTTP span, which is on a trace of its own.
    assert len(proxy["links"]) == 1
    link = proxy["links"][0]
    envoy = spans_of(sink, "envoy-mcp-gateway", lambda s: s["span_id"] == link["span_id"])[0]
    assert envoy["trace_id"] == link["trace_id"] != trace_id
    assert envoy["attributes"]["mcp_trace.request_id"] == proxy["attributes"]["mcp_trace.request_id"]
    # The upstream body carries the proxy span as the server's parent.
    upstream = next(s for s in seen_posts(server) if b'"tools/call"' in s["body"])
    assert json.loads(upstream["body"])["params"]["_meta"]["traceparent"].split("-")[2] == proxy["span_id"]


def test_own_span_status_and_error_type(gateway_own_spans, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "session", otel=True, steps=["fail_tool"])
    proxy = spans_of(sink, "mcp-trace", lambda s: s["name"] == "tools/call fail_tool" and s["trace_id"] == report["trace_id"])[0]
    assert proxy["attributes"]["error.type"] == "tool_error"
    assert proxy["status"]["code_name"] == "ERROR"

    r = post_jsonrpc("nonexistent/method", {})
    error = r.json()["error"]
    rid = r.headers["x-request-id"]
    proxy = spans_of(sink, "mcp-trace", lambda s: s["attributes"].get("mcp_trace.request_id") == rid)[0]
    assert proxy["attributes"]["error.type"] == str(error["code"])
    assert proxy["attributes"]["rpc.response.status_code"] == str(error["code"])
    assert proxy["status"]["code_name"] == "ERROR"
    assert proxy["status"]["message"] == error["message"][:256]


def test_a_batch_gets_one_span_and_one_context_per_element(gateway_own_spans, fresh, server, sink):
    batch = [
        {"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {}},
        {"jsonrpc": "2.0", "id": "twelve", "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}},
    ]
    r = post_jsonrpc("tools/list", raw=json.dumps(batch).encode())
    rid = r.headers["x-request-id"]
    spans = spans_of(sink, "mcp-trace", lambda s: s["attributes"].get("mcp_trace.request_id") == rid)
    spans = sink.wait_for(lambda sp: len([s for s in sp if s["attributes"].get("mcp_trace.request_id") == rid
                                          and s["service_name"] == "mcp-trace"]) == 3)
    spans = {s["name"]: s for s in spans if s["attributes"].get("mcp_trace.request_id") == rid and s["service_name"] == "mcp-trace"}
    assert set(spans) == {"tools/list", "tools/call add", "notifications/cancelled"}
    assert spans["tools/list"]["attributes"]["jsonrpc.request.id"] == "11"
    assert spans["tools/call add"]["attributes"]["jsonrpc.request.id"] == "twelve"
    assert "jsonrpc.request.id" not in spans["notifications/cancelled"]["attributes"]
    assert all(s["attributes"]["mcp_trace.batch.size"] == 3 for s in spans.values())
    forwarded = json.loads(seen_posts(server)[-1]["body"])
    parents = [m["params"]["_meta"]["traceparent"].split("-")[2] for m in forwarded]
    assert parents == [spans["tools/list"]["span_id"], spans["tools/call add"]["span_id"], spans["notifications/cancelled"]["span_id"]]
    assert forwarded[1]["params"]["arguments"] == {"a": 1, "b": 2}


def test_own_spans_follow_the_sampled_flag(gateway_own_spans, fresh, server, sink):
    unsampled = f"00-{'7' * 32}-{'5' * 16}-00"
    sampled, _ = new_traceparent()
    ok = post_jsonrpc("tools/list", {}, headers={"traceparent": unsampled})
    failed = post_jsonrpc("nonexistent/method", {}, headers={"traceparent": unsampled})
    marker = post_jsonrpc("tools/list", {}, headers={"traceparent": sampled})
    assert failed.json()["error"]
    # Once the sampled request's span is in, the unsampled ones' would have been too.
    spans_of(sink, "mcp-trace", lambda s: s["attributes"].get("mcp_trace.request_id") == marker.headers["x-request-id"])
    for unsampled_request in (ok, failed):
        assert not [s for s in sink.spans() if s["service_name"] == "mcp-trace"
                    and s["attributes"].get("mcp_trace.request_id") == unsampled_request.headers["x-request-id"]], \
            "an unsampled parent's decision is followed, failures included"
    forwarded = json.loads(seen_posts(server)[0]["body"])
    assert forwarded["params"]["_meta"]["traceparent"].endswith("-00"), "the decision travels with the context"
