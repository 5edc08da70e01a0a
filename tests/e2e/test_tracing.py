"""Trace context into _meta, MCP spans through Envoy's tracing, on the shipped configs
(each layout: the `gateway` fixture)."""

from __future__ import annotations

import difflib
import json
import re

import mcp_client
from conftest import (
    MCP_URL,
    PROXY_SERVICES,
    assert_proxy_span_between,
    server_span,
    envoy_spans,
    header,
    new_traceparent,
    post_jsonrpc,
    seen_posts,
    server_span_of,
)

SEMCONV_NETWORK = {"network.protocol.name": "http", "network.transport": "tcp"}


def exchange(report, method, name=None):
    for ex in report["http"]:
        j = ex.get("request_json") or {}
        if isinstance(j, dict) and j.get("method") == method and (name is None or j.get("params", {}).get("name") == name):
            return ex
    raise AssertionError(f"no {method} {name or ''} in the report")


def test_traceparent_header_server_span_nests_under_a_reported_proxy_span(gateway, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    report = mcp_client.run(MCP_URL, "session", otel=False, headers={"traceparent": traceparent}, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    rid = header(exchange(report, "tools/call", "get_weather")["response_headers"], "x-request-id")
    fastmcp = server_span(sink, trace_id, "tools/call get_weather")
    # Envoy's span (paired) or, where the filter cannot see it (sidecar), the filter's own.
    parent = assert_proxy_span_between(sink, traceparent.split("-")[2], fastmcp, "tools/call get_weather")
    attrs = parent["attributes"]
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.tool.name"] == "get_weather"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["jsonrpc.request.id"] == str(exchange(report, "tools/call")["request_json"]["id"])
    assert attrs["mcp.session.id"] == report["session_id"], "the id the server assigned"
    assert attrs["mcp.protocol.version"] == "2025-11-25"
    assert attrs["mcp_trace.request_id"] == rid
    for k, v in SEMCONV_NETWORK.items():
        assert attrs[k] == v
    assert attrs["network.protocol.version"] in ("1.1", "2")
    # The server's own span and the proxy's agree on the session.
    assert fastmcp["attributes"]["mcp.session.id"] == report["session_id"]
    # Envoy's SERVER span continues the client's traceparent.
    assert server_span_of(envoy_spans(sink, rid))["parent_span_id"] == traceparent.split("-")[2]


def test_every_method_gets_its_span_name_and_attributes(gateway, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    report = mcp_client.run(MCP_URL, "session", otel=False, headers={"traceparent": traceparent})
    assert not report["errors"], report["errors"]
    expected = {
        "initialize": ("initialize", {"mcp.method.name": "initialize", "mcp.protocol.version": "2025-11-25"}),
        "notifications/initialized": ("notifications/initialized", {"mcp.method.name": "notifications/initialized"}),
        "tools/list": ("tools/list", {"mcp.method.name": "tools/list"}),
        "resources/read": ("resources/read", {"mcp.method.name": "resources/read"}),
        "prompts/get": ("prompts/get greeting", {"mcp.method.name": "prompts/get", "gen_ai.prompt.name": "greeting"}),
        "ping": ("ping", {"mcp.method.name": "ping"}),
    }
    for method, (name, attrs) in expected.items():
        ex = exchange(report, method)
        span = server_span_of(envoy_spans(sink, header(ex["response_headers"], "x-request-id")))
        assert span["name"] == name
        for k, v in attrs.items():
            assert span["attributes"][k] == v, (method, k)
        assert span["attributes"]["mcp.session.id"] == report["session_id"]
        if method.startswith("notifications/"):
            assert "jsonrpc.request.id" not in span["attributes"]
        else:
            assert span["attributes"]["jsonrpc.request.id"] == str(ex["request_json"]["id"])
        assert "mcp.resource.uri" not in span["attributes"], "opt-in only"
        assert "gen_ai.tool.name" not in span["attributes"]
    # GET stream and DELETE carry the session too.
    for verb in ("GET", "DELETE"):
        ex = next(e for e in report["http"] if e["method"] == verb)
        span = server_span_of(envoy_spans(sink, header(ex["response_headers"], "x-request-id")))
        assert span["name"] == f"{verb} /mcp"
        assert span["attributes"]["mcp.session.id"] == report["session_id"]


def test_tool_error_and_jsonrpc_error_give_error_type(gateway, fresh, server, sink):
    report = mcp_client.run(MCP_URL, "session", otel=False, steps=["fail_tool"])
    assert report["results"]["fail_tool"]["isError"] is True
    rid = header(exchange(report, "tools/call", "fail_tool")["response_headers"], "x-request-id")
    span = server_span_of(envoy_spans(sink, rid))
    assert span["attributes"].get("error.type") == "tool_error", span
    assert "rpc.response.status_code" not in span["attributes"]

    r = post_jsonrpc("nonexistent/method", {})
    code = r.json()["error"]["code"]
    span = server_span_of(envoy_spans(sink, r.headers["x-request-id"]))
    assert span["attributes"]["error.type"] == str(code)
    assert span["attributes"]["rpc.response.status_code"] == str(code)
    assert span["name"] == "nonexistent/method"


def test_meta_gets_the_context_the_server_continues_and_nothing_else_changes(gateway, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    # Odd but valid JSON: whitespace, escapes, big numbers, an existing _meta with a
    # stale traceparent and the client's progressToken, keys in unusual order.
    body = (
        '{ "params" : {"arguments":{"city":"Par\\u00eds \\"q\\"","n":12345678901234567890,"f":1.50E+3},'
        '\n  "_meta" : { "progressToken" : 7 , "traceparent":"00-00000000000000000000000000000000-0000000000000000-00" },'
        '"name":"get_weather"}, "id" : 41 ,"method":"tools/call", "jsonrpc":"2.0" }'
    ).encode()
    r = post_jsonrpc("tools/call", name="get_weather", raw=body, headers={"traceparent": traceparent})
    assert r.status_code < 500
    upstream = seen_posts(server)[-1]["body"].decode()
    sent = body.decode()
    meta = json.loads(upstream)["params"]["_meta"]
    tp = meta["traceparent"]
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", tp) and tp.split("-")[1] == trace_id
    assert tp.split("-")[2] != traceparent.split("-")[2], "the proxy's span, not the client's"
    assert meta["progressToken"] == 7
    assert meta["io.github.mcp-trace/request-id"] == r.headers["x-request-id"]
    # Byte level: only insertions into _meta and the replaced traceparent value.
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, sent, upstream, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        changed = upstream[j1:j2]
        assert op in ("insert", "replace"), (op, sent[i1:i2])
        if op == "replace":
            assert sent[i1:i2] in "00-00000000000000000000000000000000-0000000000000000-00", sent[i1:i2]
        else:
            assert "io.github.mcp-trace/" in changed or changed.strip(",") in tp or changed.startswith('"io.github'), changed
    # The span the server's parent names is one the proxy reported (Envoy's, or where the
    # filter cannot see Envoy's, its own).
    rid = r.headers["x-request-id"]
    reported = sink.wait_for(lambda sp: any(s["span_id"] == tp.split("-")[2] for s in sp), timeout=20)
    parent = next(s for s in reported if s["span_id"] == tp.split("-")[2])
    assert parent["service_name"] in PROXY_SERVICES and parent["attributes"]["mcp_trace.request_id"] == rid


def test_large_bodies_in_many_chunks_arrive_whole_with_only_meta_added(gateway, fresh, server):
    """The `_meta` write replaces only the head of the held body (Envoy drains it and
    prepends the new head); the rest must arrive exactly as sent, whether `_meta` is
    inserted near the start or near the end, with a content-length or chunked."""
    import httpx
    from conftest import envelope_meta

    city = "".join(chr(ord("a") + i % 26) for i in range(300_000))
    # A 2026-07-28 server wants the _meta envelope: first in params, or last.
    near_start = {"jsonrpc": "2.0", "id": 51, "method": "tools/call",
                  "params": {"_meta": envelope_meta(), "name": "get_weather", "arguments": {"city": city}}}
    near_end = {"jsonrpc": "2.0", "id": 52, "method": "tools/call",
                "params": {"arguments": {"city": city}, "name": "get_weather", "_meta": {**envelope_meta(), "progressToken": 3}}}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "get_weather"}
    for message in (near_start, near_end):
        sent = json.dumps(message).encode()
        for chunked in (False, True):
            content = (sent[i:i + 8192] for i in range(0, len(sent), 8192)) if chunked else sent
            r = httpx.post(MCP_URL, content=content, headers=headers, timeout=30)
            assert r.status_code == 200, r.text[:200]
            assert "Weather in" in r.text
            seen = seen_posts(server)[-1]
            upstream = seen["body"]
            # Paired (envoy.yaml holds the headers): the new length; sidecar (no control
            # plane can hold them): the headers left first, so no length, the body chunked.
            length = seen["headers_map"].get("content-length")
            assert int(length) == len(upstream) if gateway.layout == "paired" and not chunked else length is None
            got = json.loads(upstream)
            meta = got["params"].pop("_meta")
            assert meta["traceparent"].startswith("00-")
            expected = json.loads(sent)
            expected_meta = expected["params"].pop("_meta")
            assert got == expected, "only _meta changed"
            assert {k: meta[k] for k in expected_meta} == expected_meta
            # Byte level: the sent body with one insertion into (or of) _meta.
            prefix = next(i for i, (a, b) in enumerate(zip(sent, upstream)) if a != b)
            inserted = len(upstream) - len(sent)
            assert inserted > 0 and upstream[:prefix] == sent[:prefix] and upstream[prefix + inserted:] == sent[prefix:], (chunked, prefix)
