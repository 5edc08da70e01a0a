"""Issue 10: the filter works with the configuration a control plane generates.

envoy/envoy-sidecar.yaml is the single-instance layout as istiod writes it for a WasmPlugin:
no `allow_on_headers_stop_iteration` (so the filter must never pause request headers), no
`vm_id`. Bodies must still reach the server byte-identical but for `_meta`, correctly
framed, whatever the downstream and upstream protocol.
"""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from conftest import (
    LAYOUTS,
    MCP_URL,
    envelope_meta,
    load_envoy_config,
    plugin_config,
    seen_posts,
    start_envoy,
    wasm_filters,
)

HOP_PORT = 8002
HOP_ADMIN_PORT = 9903


def hcm(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def test_sidecar_config_is_what_istiod_generates():
    sidecar, paired = load_envoy_config("sidecar"), load_envoy_config("paired")
    entries = wasm_filters(sidecar)
    assert len(entries) == 1, "one instance: a WasmPlugin cannot place a router upstream filter"
    router = next(f for f in hcm(sidecar)["http_filters"] if f["name"] == "envoy.filters.http.router")
    assert "upstream_http_filters" not in router["typed_config"]
    plugin = entries[0]["typed_config"]["config"]
    # istio/istio pilot/pkg/model/extensions.go: name <namespace>.<name>, root_id <pluginName>.
    assert entries[0]["name"] == plugin["name"] == "mcp-tools.mcp-trace"
    assert plugin["root_id"] == "mcp_trace"
    assert "allow_on_headers_stop_iteration" not in plugin
    assert "vm_id" not in plugin["vm_config"]
    assert plugin["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert plugin["failure_policy"] == "FAIL_OPEN" and "reload_config" not in plugin
    assert plugin_config(entries[0])["role"] == "standalone"
    # Everything but the filters is the reference deployment's.
    assert hcm(sidecar)["tracing"] == hcm(paired)["tracing"]
    assert sidecar["static_resources"]["clusters"] == paired["static_resources"]["clusters"]
    assert sidecar["admin"] == paired["admin"]
    for key in ("address", "per_connection_buffer_limit_bytes"):
        assert sidecar["static_resources"]["listeners"][0][key] == paired["static_resources"]["listeners"][0][key]


def h2_hop_config() -> dict:
    """An Envoy that takes h2c and forwards HTTP/1.1 to the FastMCP server: put behind the
    gateway, it makes the gateway's upstream HTTP/2. Its HTTP/2 codec refuses a stream
    whose DATA disagrees with its content-length, so a wrong length cannot go unnoticed."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": HOP_ADMIN_PORT}}},
        "static_resources": {
            "listeners": [{
                "name": "hop", "address": {"socket_address": {"address": "127.0.0.1", "port_value": HOP_PORT}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "hop", "codec_type": "HTTP2",
                        "http2_protocol_options": {"initial_stream_window_size": 4194304},
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "fastmcp", "timeout": "0s"}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "fastmcp", "type": "STATIC", "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "fastmcp", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8000}}}}]}]},
            }],
        },
    }


def with_h2_upstream(config: dict) -> dict:
    config = copy.deepcopy(config)
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "mcp_upstream")
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    options["explicit_http_config"] = {"http2_protocol_options": {}}
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    endpoint["address"]["socket_address"]["port_value"] = HOP_PORT
    return config


def mcp_body_limit(config: dict) -> int:
    """max_body_bytes of the instance that reads bodies (the upstream one when paired)."""
    confs = [plugin_config(e) for e in wasm_filters(config)]
    worker = next(c for c in confs if c.get("role", "standalone") != "downstream")
    return worker.get("max_body_bytes", 512 * 1024)


def tools_call(request_id: int, size: int) -> bytes:
    """A 2026-07-28 tools/call of exactly `size` bytes (the city pads it)."""
    skeleton = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                "params": {"_meta": envelope_meta(), "name": "get_weather", "arguments": {"city": ""}}}
    pad = size - len(json.dumps(skeleton).encode())
    assert pad >= 0
    skeleton["params"]["arguments"]["city"] = "".join(chr(ord("a") + i % 26) for i in range(pad))
    body = json.dumps(skeleton).encode()
    assert len(body) == size
    return body


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream",
           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "get_weather"}


def send(body: bytes, downstream: str) -> httpx.Response:
    if downstream == "h2c":
        with httpx.Client(http1=False, http2=True, timeout=30) as client:
            r = client.post(MCP_URL, content=body, headers=HEADERS)
            assert r.http_version == "HTTP/2"
            return r
    content = (body[i:i + 16384] for i in range(0, len(body), 16384)) if downstream == "h1-chunked" else body
    return httpx.post(MCP_URL, content=content, headers=HEADERS, timeout=30)


@pytest.mark.parametrize("upstream", ["h1", "h2"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_bodies_arrive_whole_and_framed_with_only_meta_added(server, sink, layout, upstream):
    config = load_envoy_config(layout)
    limit = mcp_body_limit(config)
    hop = start_envoy(h2_hop_config()) if upstream == "h2" else None
    gateway = start_envoy(with_h2_upstream(config) if hop else config)
    try:
        request_id = 100
        for size in (1024, 300_000, limit):
            for downstream in ("h1-length", "h1-chunked", "h2c"):
                request_id += 1
                server.clear_seen()
                sent = tools_call(request_id, size)
                r = send(sent, downstream)
                assert r.status_code == 200, (size, downstream, r.status_code, r.text[:200])
                assert "Weather in" in r.text
                seen = seen_posts(server)[-1]
                got = seen["body"]
                length = seen["headers_map"].get("content-length")
                if length is not None:
                    assert int(length) == len(got), (size, downstream)
                # One insertion (the new `_meta`), every other byte as sent.
                inserted = len(got) - len(sent)
                prefix = next(i for i, (a, b) in enumerate(zip(sent, got)) if a != b)
                assert inserted > 0 and got[:prefix] == sent[:prefix] and got[prefix + inserted:] == sent[prefix:]
                meta = json.loads(got)["params"]["_meta"]
                assert meta["io.github.mcp-trace/request-id"] == r.headers["x-request-id"]
                assert meta["traceparent"].startswith("00-"), "the server always gets a parent"
        reloads = {k: v for k, v in gateway.stats("wasm").items() if "reload" in k or "crash" in k}
        assert not any(reloads.values()), reloads
    finally:
        gateway.stop()
        if hop:
            hop.stop()
