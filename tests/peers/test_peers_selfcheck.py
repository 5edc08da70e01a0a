"""Self-check of the test peers WITHOUT Envoy: client -> FastMCP server directly, spans -> in-thread sink.

Run:  .venv/bin/python -m pytest -q tests/peers/test_peers_selfcheck.py   (from the repository root)
All sockets are on 127.0.0.1 with free ports; the server child processes are stopped at teardown.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mcp_client  # noqa: E402
from mcp_server import start_server_subprocess  # noqa: E402
from otlp_sink import start_sink  # noqa: E402

TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture(scope="session")
def sink():
    s = start_sink()
    # The client-side provider is process-global: point it at this sink once.
    mcp_client.setup_otel(endpoint=s.traces_url)
    yield s
    mcp_client.shutdown_otel()
    s.stop()


@pytest.fixture(scope="module")
def server(sink):
    with start_server_subprocess(otlp_endpoint=sink.url) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_json(sink):
    with start_server_subprocess("--json-response", otlp_endpoint=sink.url) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_stateless(sink):
    with start_server_subprocess("--stateless", "--static-tool-schemas", otlp_endpoint=sink.url) as srv:
        yield srv


def _h(pairs, name):
    vals = [v for k, v in pairs or [] if k.lower() == name.lower()]
    return vals[0] if vals else None


def _posts(report, method=None):
    out = []
    for ex in report["http"]:
        j = ex["request_json"]
        if ex["method"] == "POST" and isinstance(j, dict) and (method is None or j.get("method") == method):
            out.append(ex)
    return out


def _assert_seen_matches(server, report):
    """Every POST the client made reached the server byte-identical (same order)."""
    seen = [s for s in server.seen() if s["method"] == "POST"]
    sent = [ex for ex in report["http"] if ex["method"] == "POST"]
    assert len(seen) >= len(sent)
    seen_bodies = [base64.b64decode(s["body_b64"]) for s in seen]
    for ex in sent:
        assert ex["request_body"].encode() in seen_bodies
    return seen


def _check_parenting(sink, report, tool="get_weather"):
    trace_id = report["trace_id"]
    spans = sink.wait_for(
        lambda sp: any(s["name"] == f"tools/call {tool}" and s["trace_id"] == trace_id for s in sp)
        and any(s["name"] == f"mcp-client {report['mode']}" and s["trace_id"] == trace_id for s in sp),
        timeout=10,
    )
    mine = [s for s in spans if s["trace_id"] == trace_id]
    client = next(s for s in mine if s["name"] == f"MCP send tools/call {tool}")
    srv = next(s for s in mine if s["name"] == f"tools/call {tool}")
    assert client["service_name"] == "mcp-client" and client["kind_name"] == "CLIENT"
    assert srv["service_name"] == "mcp-server" and srv["kind_name"] == "SERVER"
    assert srv["parent_span_id"] == client["span_id"]
    assert client["parent_span_id"] == report["root_span_id"]
    # the _meta traceparent on the wire names the client span
    post = next(ex for ex in _posts(report, "tools/call") if ex["request_json"]["params"]["name"] == tool)
    m = TP_RE.match(post["request_json"]["params"]["_meta"]["traceparent"])
    assert m and m.group(1) == trace_id and m.group(2) == client["span_id"]
    return mine


def test_session_mode_sse(server, sink):
    server.clear_seen()
    rep = mcp_client.run(server.url, "session", otel=True, steps=mcp_client.ALL_STEPS)
    assert not rep["errors"], rep["errors"]
    assert rep["protocol_version"] == "2025-11-25"
    assert rep["session_id"]
    assert rep["results"]["fail_tool"]["isError"] is True
    assert rep["results"]["get_weather"]["content"][0]["text"] == "Weather in Paris: sunny, 21C"
    assert rep["results"]["big_result"]["text_len"] == 100_000
    assert len(rep["progress"]) == 3
    init = _posts(rep, "initialize")[0]
    assert _h(init["response_headers"], "mcp-session-id") == rep["session_id"]
    assert _h(init["response_headers"], "content-type").startswith("text/event-stream")
    assert _h(init["request_headers"], "mcp-protocol-version") is None  # not sent on initialize
    notif = _posts(rep, "notifications/initialized")[0]
    assert notif["status"] == 202
    for ex in _posts(rep, "tools/call"):
        assert _h(ex["request_headers"], "mcp-session-id") == rep["session_id"]
        assert _h(ex["request_headers"], "mcp-protocol-version") == "2025-11-25"
        assert _h(ex["request_headers"], "mcp-method") is None
        assert _h(ex["request_headers"], "mcp-name") is None
        assert _h(ex["request_headers"], "traceparent") is None  # context ONLY in _meta
        assert _h(ex["response_headers"], "content-type").startswith("text/event-stream")
    methods = [ex["method"] for ex in rep["http"]]
    assert "GET" in methods and methods[-1] == "DELETE"
    _assert_seen_matches(server, rep)
    mine = _check_parenting(sink, rep)
    fail = next(s for s in mine if s["name"] == "tools/call fail_tool")
    assert fail["status"]["code_name"] == "ERROR" and fail["attributes"]["error.type"] == "tool_error"
    wx = next(s for s in mine if s["name"] == "tools/call get_weather")
    assert wx["attributes"]["mcp.session.id"] == rep["session_id"]
    assert wx["attributes"]["mcp.protocol.version"] == "2025-11-25"


def test_sessionless_mode(server, sink):
    server.clear_seen()
    rep = mcp_client.run(server.url, "sessionless", otel=True, steps=mcp_client.ALL_STEPS)
    assert not rep["errors"], rep["errors"]
    assert rep["protocol_version"] == "2026-07-28"
    assert rep["session_id"] is None
    assert rep["results"]["ping"] == {"skipped": "ping does not exist at 2026-07-28"}
    assert len(rep["progress"]) == 3
    assert [ex["request_json"]["method"] for ex in _posts(rep)][:2] == ["server/discover", "tools/list"]
    assert not _posts(rep, "initialize")
    assert all(ex["method"] == "POST" for ex in rep["http"])  # no GET stream, no DELETE
    for ex in _posts(rep):
        j = ex["request_json"]
        assert _h(ex["request_headers"], "mcp-protocol-version") == "2026-07-28"
        assert _h(ex["request_headers"], "mcp-method") == j["method"]
        assert _h(ex["request_headers"], "mcp-session-id") is None
        assert _h(ex["response_headers"], "mcp-session-id") is None
        name_key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(j["method"])
        assert _h(ex["request_headers"], "mcp-name") == (j["params"][name_key] if name_key else None)
        meta = j["params"]["_meta"]
        assert {"io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/clientInfo",
                "io.modelcontextprotocol/clientCapabilities", "traceparent"} <= set(meta)
        is_progress = j["method"] == "tools/call" and j["params"]["name"] == "slow_progress"
        ctype = _h(ex["response_headers"], "content-type")
        assert ctype.startswith("text/event-stream" if is_progress else "application/json"), (j, ctype)
    _assert_seen_matches(server, rep)
    _check_parenting(sink, rep)


def test_json_response_server(server_json, sink):
    for mode in ("session", "sessionless"):
        server_json.clear_seen()
        rep = mcp_client.run(server_json.url, mode, otel=True, steps=mcp_client.ALL_STEPS)
        assert not rep["errors"], rep["errors"]
        for ex in _posts(rep):
            if ex["status"] == 202:
                continue
            assert _h(ex["response_headers"], "content-type").startswith("application/json")
        # JSON mode has nowhere to put progress notifications: they are dropped
        assert rep["progress"] == []
        _assert_seen_matches(server_json, rep)
        _check_parenting(sink, rep)


def test_stateless_server_session_mode(server_stateless, sink):
    rep = mcp_client.run(server_stateless.url, "session", otel=True)
    assert not rep["errors"], rep["errors"]
    assert rep["protocol_version"] == "2025-11-25"
    assert rep["session_id"] is None  # stateless: no Mcp-Session-Id
    assert "GET" not in [ex["method"] for ex in rep["http"]]
    _check_parenting(sink, rep)


def test_orphan_tools_list_spans(server, server_stateless, sink):
    """2026-07-28 tools/call with arguments makes FastMCP emit an extra root 'tools/list' span (stock),
    unless --static-tool-schemas."""
    for srv, expect_orphans in ((server, True), (server_stateless, False)):
        sink.clear()
        rep = mcp_client.run(srv.url, "sessionless", otel=True, steps=["get_weather"])
        assert not rep["errors"]
        sink.wait_for(lambda sp: any(s["name"] == "mcp-client sessionless" for s in sp))
        orphans = [s for s in sink.spans(service="mcp-server") if s["trace_id"] != rep["trace_id"]]
        if expect_orphans:
            assert [s["name"] for s in orphans] == ["tools/list"] and orphans[0]["parent_span_id"] == ""
        else:
            assert orphans == []


@pytest.mark.parametrize("mode", ["session", "sessionless"])
def test_header_only_context_is_ignored_by_server(server, sink, mode):
    """traceparent as HTTP header only (client OTel off): nothing in _meta; FastMCP ignores the header."""
    sink.clear()
    tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    rep = mcp_client.run(server.url, mode, otel=False, steps=["get_weather"],
                         headers={"traceparent": f"00-{tid}-{sid}-01", "Authorization": "Bearer xyz",
                                  "X-Session-ID": "abc"})
    assert not rep["errors"]
    call = _posts(rep, "tools/call")[0]
    assert "traceparent" not in call["request_json"]["params"].get("_meta", {})
    seen = [s for s in server.seen() if s["method"] == "POST"][-1]
    hdrs = {k: v for k, v in seen["headers"]}
    assert hdrs["traceparent"] == f"00-{tid}-{sid}-01"
    assert hdrs["authorization"] == "Bearer xyz" and hdrs["x-session-id"] == "abc"
    spans = sink.wait_for(lambda sp: any(s["name"] == "tools/call get_weather" for s in sp))
    srv = next(s for s in spans if s["name"] == "tools/call get_weather")
    assert srv["trace_id"] != tid and srv["parent_span_id"] == ""
    assert not sink.spans(service="mcp-client")


def test_meta_traceparent_without_sdk(server, sink):
    sink.clear()
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    rep = mcp_client.run(server.url, "sessionless", otel=False, steps=["get_weather"],
                         meta_traceparent=f"00-{tid}-{sid}-01")
    assert not rep["errors"]
    spans = sink.wait_for(lambda sp: any(s["name"] == "tools/call get_weather" for s in sp))
    srv = next(s for s in spans if s["name"] == "tools/call get_weather")
    assert srv["trace_id"] == tid and srv["parent_span_id"] == sid


def test_sink_takes_gzipped_protobuf_and_refuses_json(sink):
    import gzip

    import httpx
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    sink.clear()
    span = Span(trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"), span_id=bytes.fromhex("eee19b7ec3c1b174"),
                parent_span_id=bytes.fromhex("eee19b7ec3c1b173"), name="x", kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=1, end_time_unix_nano=2, attributes=[KeyValue(key="n", value=AnyValue(int_value=7))],
                links=[Span.Link(trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60d"), span_id=bytes.fromhex("eee19b7ec3c1b175"))])
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    request.resource_spans[0].resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="j")))
    r = httpx.post(sink.traces_url, content=gzip.compress(request.SerializeToString()),
                   headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"})
    assert r.status_code == 200
    got = httpx.get(f"{sink.url}/spans", params={"trace_id": "5b8efff798038103d269b633813fc60c"}).json()
    assert len(got) == 1
    s = got[0]
    assert (s["span_id"], s["parent_span_id"], s["kind_name"]) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173", "SERVER")
    assert s["attributes"] == {"n": 7} and s["service_name"] == "j"
    assert s["links"][0]["span_id"] == "eee19b7ec3c1b175"
    # OTLP/JSON is refused, as Phoenix refuses it.
    r = httpx.post(sink.traces_url, content=json.dumps({"resourceSpans": []}).encode(), headers={"content-type": "application/json"})
    assert r.status_code == 415
    assert httpx.delete(f"{sink.url}/spans").status_code == 204
    assert httpx.get(f"{sink.url}/spans").json() == []
