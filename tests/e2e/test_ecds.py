"""Issue 10: the filter delivered the way Istio delivers it.

istio-agent pulls the module and serves the filter's configuration to Envoy over ECDS
(extension config discovery), pointing the code at the locally cached file and stripping
istiod's ISTIO_META_* VM environment (istio/istio pkg/wasm/convert.go, rewriteVMConfig).
When a WasmPlugin's pluginConfig changes, the pushed config differs only in its
`configuration`: Envoy keeps the VM and configures a new root context in it for new
streams, while open streams finish on the old one. Here ECDS comes from a file (a path
config source), replaced atomically as the agent would.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time

import httpx
import pytest
import yaml

import mcp_client
from conftest import MCP_URL, REPO, envoy_spans, load_envoy_config, seen_posts, server_span_of, start_envoy, wasm_filters

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def ecds_config(sidecar: dict, directory) -> tuple[dict, dict]:
    """The sidecar config with its wasm filter served over ECDS; returns (bootstrap, filter)."""
    config = copy.deepcopy(sidecar)
    # xDS needs a node identity; this is the shape istio-agent gives a sidecar's Envoy.
    config["node"] = {"id": "sidecar~127.0.0.1~mcp-server-0.mcp-tools~mcp-tools.svc.cluster.local",
                      "cluster": "mcp-server.mcp-tools"}
    entry = wasm_filters(config)[0]
    plugin = entry["typed_config"]["config"]
    # istio-agent hands Envoy the cached module by absolute path.
    local = plugin["vm_config"]["code"]["local"]
    local["filename"] = str((REPO / local["filename"]).resolve())
    name = entry.pop("name")
    typed = entry.pop("typed_config")
    entry.clear()
    entry.update({
        "name": name,
        "config_discovery": {
            "config_source": {
                "path_config_source": {"path": str(directory / "ecds.yaml"), "watched_directory": {"path": str(directory)}},
                "resource_api_version": "V3",
            },
            "type_urls": [WASM_TYPE],
        },
    })
    return config, {"name": name, "typed_config": typed}


def push(directory, extension: dict, version: str, plugin_conf: dict) -> None:
    """Writes the ECDS resource as istio-agent would for WasmPlugin resource version `version`."""
    typed = copy.deepcopy(extension["typed_config"])
    typed["config"]["configuration"]["value"] = json.dumps(plugin_conf)
    response = {"version_info": version, "resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": extension["name"], "typed_config": typed}]}
    tmp = directory / "ecds.yaml.tmp"
    tmp.write_text(yaml.safe_dump(response, sort_keys=False))
    os.replace(tmp, directory / "ecds.yaml")  # atomic: Envoy never reads half a file


def ecds_stat(envoy, name: str, stat: str) -> int:
    return envoy.stats("extension_config_discovery").get(f"extension_config_discovery.http_filter.{name}.{stat}", 0)


def wait_until(predicate, timeout=15.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_config_pushed_over_ecds_while_a_session_is_live(server, sink, tmp_path):
    bootstrap, extension = ecds_config(load_envoy_config("sidecar"), tmp_path)
    name = extension["name"]
    push(tmp_path, extension, "1", {"role": "standalone"})
    envoy = start_envoy(bootstrap)
    try:
        wait_until(lambda: ecds_stat(envoy, name, "config_reload") == 1, what="the first ECDS config")
        server.clear_seen()
        sink.clear()
        # A session whose client-side id (X-Session-ID) the filter ties to the server's id.
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        r = httpx.post(MCP_URL, json=init, timeout=10,
                       headers={"accept": "application/json, text/event-stream", "x-session-id": "agent-ecds"})
        server_session = r.headers["mcp-session-id"]

        # A tool call that streams progress for ~3 s, in flight across the update.
        in_flight: dict = {}
        call = threading.Thread(target=lambda: in_flight.update(mcp_client.run(
            MCP_URL, "session", otel=False, steps=["slow_progress"], progress_steps=10, progress_delay=0.3)))
        call.start()
        wait_until(lambda: any(b'"slow_progress"' in p["body"] for p in seen_posts(server)), what="the call to start")

        configured = envoy.log().count("mcp-trace: configured")
        push(tmp_path, extension, "2", {"role": "standalone", "meta": {"request_id_key": "io.github.mcp-trace/rid"}})
        wait_until(lambda: ecds_stat(envoy, name, "config_reload") == 2, what="the pushed ECDS config")
        assert ecds_stat(envoy, name, "config_fail") == 0

        call.join(30)
        assert not call.is_alive()
        assert not in_flight["errors"], in_flight["errors"]
        assert len(in_flight["progress"]) == 10, "the in-flight stream finished on the old config"
        old = json.loads(next(p for p in seen_posts(server) if b'"slow_progress"' in p["body"])["body"])
        assert "io.github.mcp-trace/request-id" in old["params"]["_meta"]

        # New streams run the new configuration...
        later = httpx.post(MCP_URL, json={"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, timeout=10, headers={
            "accept": "application/json, text/event-stream", "x-session-id": "agent-ecds",
            "mcp-session-id": server_session, "mcp-protocol-version": "2025-11-25"})
        assert later.status_code == 200
        meta = json.loads(seen_posts(server)[-1]["body"])["params"]["_meta"]
        assert meta["io.github.mcp-trace/rid"] == later.headers["x-request-id"]
        assert "io.github.mcp-trace/request-id" not in meta
        # ... and the session memory (Envoy shared data, outside the VM) outlived the old VM:
        # a request known only by its client-side id lands on the server's session.
        alias_only = httpx.post(MCP_URL, timeout=10, headers={
            "accept": "application/json, text/event-stream", "x-session-id": "agent-ecds",
            "content-type": "application/json"}, content=b'{"jsonrpc":"2.0","id":6,"method":"ping"}')
        span = server_span_of(envoy_spans(sink, alias_only.headers["x-request-id"]))
        assert span["attributes"]["mcp.session.id"] == server_session

        assert envoy.log().count("mcp-trace: configured") > configured, "the new configuration was loaded"
        wasm = envoy.stats("wasm")
        assert not any(v for k, v in wasm.items() if "crash" in k or "reload" in k), wasm
        assert "panicked" not in envoy.log() and "Failed to" not in envoy.log()
    finally:
        envoy.stop()
