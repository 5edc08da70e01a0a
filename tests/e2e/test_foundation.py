"""Issue 2: the filter in a real Envoy — MCP recognition, request IDs, sessions, config.

Real Envoy (envoy/envoy.yaml as shipped), the real `mcp` client, a real FastMCP server.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

import mcp_client
from conftest import (
    MCP_URL,
    GATEWAY,
    REQUEST_ID_RE,
    header,
    load_envoy_config,
    plugin_config,
    seen_posts,
    set_plugin_config,
    wasm_filters,
    envoy_spans,
    server_span_of,
    Envoy,
)

META_KEYS_WE_ADD = {"traceparent", "tracestate", "io.github.mcp-trace/request-id", "io.github.mcp-trace/session-id"}


def strip_our_meta(body: dict | list) -> dict | list:
    """The client's message with what the filter adds to params._meta removed."""
    if isinstance(body, list):
        return [strip_our_meta(b) for b in body]
    body = json.loads(json.dumps(body))
    meta = body.get("params", {}).get("_meta")
    if isinstance(meta, dict):
        for k in META_KEYS_WE_ADD:
            meta.pop(k, None)
        if not meta:
            body["params"].pop("_meta")
        if not body["params"]:
            body.pop("params")
    return body


def assert_forwarded_as_sent(report, server):
    """Every POST reached the server with the same JSON-RPC content, plus only our _meta keys,
    and carrying the same x-request-id the client got back."""
    seen = [s for s in seen_posts(server) if s["method"] == "POST"]
    by_rid = {s["headers_map"].get("x-request-id"): s for s in seen}
    posts = [ex for ex in report["http"] if ex["method"] == "POST"]
    assert posts
    for ex in posts:
        rid = header(ex["response_headers"], "x-request-id")
        assert rid, f"no x-request-id on {ex['request_json']}"
        upstream = by_rid.get(rid)
        assert upstream is not None, f"server never saw x-request-id {rid}"
        sent = json.loads(ex["request_body"])
        got = json.loads(upstream["body"])
        assert strip_our_meta(got) == strip_our_meta(sent)
        assert int(upstream["headers_map"].get("content-length", len(upstream["body"]))) == len(upstream["body"])


@pytest.mark.parametrize("mode", ["session", "sessionless"])
def test_real_client_and_server_complete_a_session_through_envoy(gateway, fresh, server, mode):
    report = mcp_client.run(MCP_URL, mode, otel=False)
    assert not report["errors"], report["errors"]
    assert report["results"]["get_weather"]["content"][0]["text"].startswith("Weather in Paris")
    assert report["results"]["fail_tool"]["isError"] is True
    if mode == "session":
        assert report["protocol_version"] == "2025-11-25"
        assert report["session_id"]
    else:
        assert report["protocol_version"] == "2026-07-28"
    # Every response carries x-request-id, and the server saw the same one.
    seen_ids = {s["headers_map"].get("x-request-id") for s in seen_posts(server)}
    for ex in report["http"]:
        rid = header(ex["response_headers"], "x-request-id")
        assert rid and re.match(REQUEST_ID_RE, rid), ex
        assert rid in seen_ids
    assert_forwarded_as_sent(report, server)


def test_incoming_request_id_is_kept_and_bad_ones_replaced(gateway, fresh, server):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    kept = httpx.post(MCP_URL, json=body, headers={**headers, "x-request-id": "client-chosen-42"})
    assert kept.headers["x-request-id"] == "client-chosen-42"
    too_long = "x" * 300
    replaced = httpx.post(MCP_URL, json=body, headers={**headers, "x-request-id": too_long})
    new_id = replaced.headers["x-request-id"]
    assert re.match(REQUEST_ID_RE, new_id)
    ids = [s["headers_map"].get("x-request-id") for s in seen_posts(server)]
    assert ids == ["client-chosen-42", new_id]


def raw_post(path, content, content_type="application/json", **headers):
    return httpx.post(f"{GATEWAY}{path}", content=content, headers={"content-type": content_type, **headers}, timeout=10)


def test_everything_else_passes_through_byte_identical_and_is_counted(gateway, fresh, server):
    before = gateway.stats()
    cases = [
        ("/mcp", b"plain text, not json", "text/plain", "not_mcp"),
        ("/mcp", b'{"hello": "world", "n": 1.50}', "application/json", "not_jsonrpc"),
        ("/mcp", b'{"jsonrpc":"2.0","id":1,"method":"tools/ca', "application/json", "malformed"),
        ("/mcp", b"[" * 20000 + b"]" * 20000, "application/json", "not_jsonrpc"),
        ("/other", b'{"jsonrpc":"2.0","id":1,"method":"x"}', "application/xml", "not_mcp"),
    ]
    limit = max(plugin_config(e).get("max_body_bytes", 512 * 1024) for e in wasm_filters(load_envoy_config()))
    big = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "add", "arguments": {"pad": "z" * (limit + 1024)}}}).encode()
    cases.append(("/mcp", big, "application/json", "over_limit"))
    for path, body, ctype, _ in cases:
        raw_post(path, body, ctype)
    seen = seen_posts(server)
    assert [s["body"] for s in seen] == [c[1] for c in cases], "upstream bodies must be byte-identical"
    for s, (_, body, _, _) in zip(seen, cases):
        # A body the filter might have rewritten went on without its length (chunked).
        assert int(s["headers_map"].get("content-length", len(body))) == len(body)
    after = gateway.stats()
    for reason in ("not_mcp", "not_jsonrpc", "malformed", "over_limit"):
        key = f"wasmcustom.mcp_trace.passthrough.{reason}"
        expected = sum(1 for c in cases if c[3] == reason)
        assert after[key] - before.get(key, 0) >= expected, (reason, after[key], before.get(key, 0))


def test_bearer_token_never_leaves_the_authorization_header(gateway, fresh, server, sink):
    secret = "sk-live-SECRET-7f3a9c"
    report = mcp_client.run(MCP_URL, "sessionless", otel=False, headers={"Authorization": f"Bearer {secret}"},
                            steps=["list_tools", "get_weather"])
    assert not report["errors"], report["errors"]
    for s in seen_posts(server):
        for k, v in s["headers"]:
            if secret in v:
                assert k.lower() == "authorization"
        assert secret.encode() not in s["body"]
    rid = header(report["http"][-1]["response_headers"], "x-request-id")
    spans = envoy_spans(sink, rid)
    assert spans
    session = server_span_of(spans)["attributes"]["mcp.session.id"]
    assert session.startswith("bearer-sha256:") and secret not in session
    assert secret not in json.dumps(sink.spans())
    assert secret not in gateway.log()


def test_session_sources_in_order(gateway, fresh, server, sink):
    base = {"content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    cases = [
        ("/mcp", {"x-session-id": "xs-1", "x-correlation-id": "xc-1"}, "xs-1"),
        ("/mcp", {"x-correlation-id": "xc-1"}, "xc-1"),
        ("/mcp?session_id=q-1", {"x-correlation-id": "bad value"}, "q-1"),
        ("/mcp", {"x-session-id": "bad\tvalue"}, None),
    ]
    for path, extra, expected in cases:
        rid = f"session-case-{len(expected or 'none')}-{abs(hash(path + str(extra))) % 10**6}"
        r = httpx.post(f"{GATEWAY}{path}", content=body, headers={**base, **extra, "x-request-id": rid}, timeout=10)
        assert r.status_code < 500
        attributes = server_span_of(envoy_spans(sink, rid))["attributes"]
        # What the filter forwards (the _meta it writes, span attributes) never carries a
        # value it rejected; with no valid source there is no session (none is invented).
        upstream = json.loads(seen_posts(server)[-1]["body"])["params"]["_meta"]
        assert attributes.get("mcp.session.id") == attributes.get("session.id") == expected
        assert upstream.get("io.github.mcp-trace/session-id") == expected


def test_logs_carry_ids_and_tool_argument_names_only(gateway, fresh, server):
    report = mcp_client.run(MCP_URL, "session", otel=False, steps=["get_weather"])
    assert not report["errors"]
    rid = next(header(ex["response_headers"], "x-request-id") for ex in report["http"]
               if (ex["request_json"] or {}).get("method") == "tools/call")
    lines = [line for line in gateway.log().splitlines() if "mcp_trace" in line and "wasm log" in line and "[req=" in line]
    assert lines
    mine = [line for line in lines if f"[req={rid}|session={report['session_id']}]" in line]
    assert any("tools/call get_weather" in line and "argument_keys=[city]" in line for line in mine), mine
    assert not any("Paris" in line for line in lines), "argument values are never logged"


def test_hostile_header_bytes_do_not_kill_the_vm(gateway, fresh, server, sink):
    import socket

    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    for content_type in (b"application/\xffabcd", b"\xff\xfe+json", b"application/json\xc3"):
        raw = (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type +
               b"\r\nX-Session-ID: \xe9t\xe9\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        with socket.create_connection(("127.0.0.1", 10000), timeout=10) as s:
            s.sendall(raw)
            assert s.recv(65536).startswith(b"HTTP/1.1 ")
    r = post_jsonrpc_plain()
    assert r.headers["x-request-id"]
    assert "panicked" not in gateway.log()
    reloads = {k: v for k, v in gateway.stats("wasm").items() if "reload" in k or "crash" in k}
    assert reloads and not any(reloads.values()), reloads


def post_jsonrpc_plain():
    return httpx.post(MCP_URL, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                      headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                               "mcp-method": "tools/list"}, timeout=10)


def test_bad_configuration_is_refused_with_a_clear_line(tmp_path):
    config = load_envoy_config()
    config["admin"]["address"]["socket_address"]["port_value"] = 0
    config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = 0
    entry = wasm_filters(config)[0]
    set_plugin_config(entry, {**plugin_config(entry), "max_body_bytes": 0})
    envoy = Envoy(config)
    try:
        envoy.proc.wait(timeout=30)
    except Exception:
        envoy.stop()
        pytest.fail("envoy accepted a bad filter configuration")
    envoy.stop()
    assert envoy.proc.returncode != 0
    assert "mcp-trace: invalid plugin configuration: field `max_body_bytes`: must be between 1 and" in envoy.log()
