"""`hold_request_headers` only where Envoy is told it may stop on headers.

A filter that pauses the request headers without Envoy's
`allow_on_headers_stop_iteration: true` never gets the body: every MCP request hangs.
The filter cannot see the Envoy flag, so this checks every shipped configuration: an
Envoy Wasm filter config may hold the headers only with the flag beside it, and a
control-plane manifest (Istio WasmPlugin or TrafficExtension, Envoy Gateway
EnvoyExtensionPolicy) never, since neither control plane can set the flag.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted([*(REPO / "envoy").glob("*.yaml"), *(REPO / "deploy").rglob("*.yaml")])


def plugin_configs(node, where: str):
    """(where, plugin config, Envoy allows a stop on headers) for each Wasm filter config
    or control-plane plugin config found anywhere in a YAML document."""
    if isinstance(node, list):
        for item in node:
            yield from plugin_configs(item, where)
        return
    if not isinstance(node, dict):
        return
    if "vm_config" in node and "configuration" in node:  # envoy.extensions.wasm.v3.PluginConfig
        value = node["configuration"].get("value", "") if isinstance(node["configuration"], dict) else ""
        yield where, json.loads(value) if value.strip() else {}, node.get("allow_on_headers_stop_iteration") is True
    elif isinstance(node.get("pluginConfig"), dict):  # WasmPlugin, TrafficExtension
        yield where, node["pluginConfig"], False
    elif "code" in node and isinstance(node.get("config"), dict):  # EnvoyExtensionPolicy wasm entry
        yield where, node["config"], False
    for key, value in node.items():
        yield from plugin_configs(value, where)


def hazards(docs, where: str) -> list[str]:
    return [f"{w}: hold_request_headers without allow_on_headers_stop_iteration"
            for w, plugin, allowed in plugin_configs(docs, where)
            if plugin.get("hold_request_headers") is True and not allowed]


def test_no_shipped_config_holds_headers_without_the_envoy_flag():
    found, problems = 0, []
    for path in SHIPPED:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        where = str(path.relative_to(REPO))
        found += sum(1 for _ in plugin_configs(docs, where))
        problems += hazards(docs, where)
    assert not problems, problems
    # envoy.yaml (2), envoy-sidecar.yaml, minimal.yaml (2), WasmPlugin, TrafficExtension,
    # paired layout (2), Envoy Gateway policy: the walk must see them all.
    assert found >= 10, f"only {found} plugin configs found: the walk misses some"


def test_the_check_catches_a_held_request_without_the_flag():
    envoy_filter = {"typed_config": {"config": {
        "vm_config": {"runtime": "envoy.wasm.runtime.v8"},
        "configuration": {"value": '{"hold_request_headers": true}'}}}}
    assert hazards(envoy_filter, "x") != []
    envoy_filter["typed_config"]["config"]["allow_on_headers_stop_iteration"] = True
    assert hazards(envoy_filter, "x") == []
    wasm_plugin = {"kind": "WasmPlugin", "spec": {"pluginConfig": {"hold_request_headers": True}}}
    assert hazards(wasm_plugin, "x") != [], "a control plane cannot set the flag"
