"""Issue 11, with Envoy configurations of their own: a stateless server, a collector that
is not there, and the replies Envoy makes itself. (A separate module from the tests of the
shipped configs: two Envoys on one port would share it, SO_REUSEPORT.)"""

from __future__ import annotations

import json
import math
import time

import httpx

import mcp_client
from conftest import (
    MCP_URL,
    envelope_meta,
    envoy_spans,
    header,
    load_envoy_config,
    plugin_config,
    server_span_of,
    set_plugin_config,
    start_envoy,
    wasm_filters,
)
from mcp_server import start_server_subprocess
import pytest


def stateless_server_config(layout: str, port: int) -> dict:
    config = load_envoy_config(layout)
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "mcp_upstream")
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = port
    return config


@pytest.mark.parametrize("layout", ["paired", "sidecar"])
def test_a_stateless_server_gets_no_invented_sessions(sink, server, layout):
    """A server that assigns no session, and a client that sends none: no session id on
    any span (a backend would otherwise list one "session" per request), counted."""
    with start_server_subprocess("--stateless", "--static-tool-schemas", port=8004, otlp_endpoint=sink.url):
        envoy = start_envoy(stateless_server_config(layout, 8004))
        try:
            before = envoy.stats().get("wasmcustom.mcp_trace.sessions.none", 0)
            report = mcp_client.run(MCP_URL, "session", otel=False, steps=["list_tools", "get_weather"])
            assert not report["errors"], report["errors"]
            assert report["session_id"] is None, "the server assigned none"
            for ex in report["http"]:
                span = server_span_of(envoy_spans(sink, header(ex["response_headers"], "x-request-id")))
                assert "mcp.session.id" not in span["attributes"] and "session.id" not in span["attributes"], span["name"]
            assert envoy.stats()["wasmcustom.mcp_trace.sessions.none"] - before == len(report["http"])
        finally:
            envoy.stop()


def test_no_reachable_collector_costs_nothing_but_the_spans(server, sink):
    """Own spans on, and their cluster missing: requests are not held, failures are counted
    (and logged at powers of two, not per request)."""
    config = load_envoy_config("sidecar")
    for entry in wasm_filters(config):
        set_plugin_config(entry, {**plugin_config(entry), "own_spans": {"cluster": "no_such_cluster", "flush_interval_ms": 50}})
    envoy = start_envoy(config)
    try:
        started = time.monotonic()
        for _ in range(5):
            report = mcp_client.run(MCP_URL, "sessionless", otel=True, steps=["get_weather"])
            assert not report["errors"], report["errors"]
        assert time.monotonic() - started < 20
        deadline = time.monotonic() + 10
        while envoy.stats().get("wasmcustom.mcp_trace.own_spans.export_failures", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = envoy.stats()
        assert stats["wasmcustom.mcp_trace.own_spans.export_failures"] > 0
        assert stats["wasmcustom.mcp_trace.own_spans.dropped"] > 0
        # Logged at the 1st, 2nd, 4th… failure of each worker (two here), not at every one.
        failures = stats["wasmcustom.mcp_trace.own_spans.export_failures"]
        assert 0 < envoy.log().count("own-span export to cluster") <= 2 * (math.floor(math.log2(failures)) + 1)
    finally:
        envoy.stop()


def _route(config: dict) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"][0]


def unreachable(config: dict) -> None:
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "mcp_upstream")
    cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = 8009


def no_route(config: dict) -> None:
    _route(config)["match"] = {"prefix": "/elsewhere"}


def timeout(config: dict) -> None:
    _route(config)["route"]["timeout"] = "0.5s"


def small_buffers(config: dict) -> None:
    config["static_resources"]["listeners"][0]["per_connection_buffer_limit_bytes"] = 16384


# (case, config change, expected status, tool called, body bytes, sent slowly: headers first)
LOCAL_REPLIES = [
    ("upstream unreachable", unreachable, 503, "get_weather", 200, True),
    ("no route", no_route, 404, "get_weather", 200, True),
    ("timeout", timeout, 504, "slow_progress", 200, False),
    ("413", small_buffers, 413, "get_weather", 100_000, False),
]


@pytest.mark.parametrize("layout", ["paired", "sidecar"])
@pytest.mark.parametrize("case, change, status, tool, size, slow", LOCAL_REPLIES, ids=[c[0] for c in LOCAL_REPLIES])
def test_replies_envoy_makes_itself_are_named_and_failed(server, sink, layout, case, change, status, tool, size, slow):
    """The span of a request Envoy answers itself gets `error.type` = the status, and its
    name from `Mcp-Method`/`Mcp-Name` (which 2026-07-28 clients must send), whether the body
    was read or had not yet arrived."""
    config = load_envoy_config(layout)
    change(config)
    envoy = start_envoy(config)
    try:
        arguments = {"steps": 3, "delay": 0.5} if tool == "slow_progress" else {"city": "x" * size}
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"_meta": envelope_meta(), "name": tool, "arguments": arguments}}
        body = json.dumps(message).encode()

        def slowly():
            time.sleep(0.3)  # the headers are out: Envoy may answer before any of the body
            yield body[:10]
            time.sleep(0.3)
            yield body[10:]

        headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": tool}
        r = httpx.post(MCP_URL, content=slowly() if slow else body, headers=headers, timeout=30)
        assert r.status_code == status, (case, r.status_code, r.text[:200])
        span = server_span_of(envoy_spans(sink, r.headers["x-request-id"]))
        assert span["name"] == f"tools/call {tool}", (case, span["name"])
        assert span["attributes"]["error.type"] == str(status), case
        assert span["attributes"]["gen_ai.tool.name"] == tool
        assert span["attributes"]["mcp.method.name"] == "tools/call"
    finally:
        envoy.stop()
