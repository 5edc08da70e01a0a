"""Envoy configurations for `make bench`.

Every front Envoy is derived from envoy/envoy.yaml (loaded, modified, written out), so
all of them share the listener, route, timeouts, buffer limits, access log and the
OpenTelemetry tracer. Only the HTTP filters (and, for N, the span tags that its filters
feed) differ:

  A   bare Envoy: both wasm filters removed (HCM chain and the router's
      upstream_http_filters; Envoy then installs its upstream codec by itself).
  W   platform floor: the empty proxy-wasm filter (bench/empty-filter) in both places
      mcp-trace occupies, i.e. one HCM instance and one router upstream instance
      sharing one VM per worker, exactly like B. Same wasm plumbing options.
  W1  (optional) the empty filter in the HCM chain only.
  B   mcp-trace as in envoy/envoy.yaml.
  BS  B with the request headers streamed, not held: no `hold_request_headers` and no
      `allow_on_headers_stop_iteration`, as every control plane's config has it (Istio,
      Envoy Gateway); content-length is dropped as the headers leave.
  B+  B with `"own_spans": {"mode": "always"}` in both instances' plugin configuration
      (the filter exports its own span for every request, to cluster otel_collector;
      B does so only when it must, "auto": see the _meta-only load).
  M   the floor of the job in B's layout: bench/probe-filter in both of B's places
      (one VM per worker), the HCM instance making no call, the upstream instance in
      `mcp_floor` mode, which does only host work no filter doing this job can skip
      (drop content-length as the headers leave, hold and read the body, write one byte
      back, set the same 8
      filter-state keys as B, read the response's first bytes), with no parsing.
      B − M is what mcp-trace's own code and extra calls cost.
  B0  B running another build of the filter (`--baseline-wasm`), to measure a change
      against the build before it in the same run.
  N   Envoy's native MCP filter (envoy.filters.http.mcp) + json_to_metadata (JSON
      responses) + sse_to_metadata (SSE responses), with span tags and span name
      taken from their dynamic metadata. See `front_native` for what it covers.

The fast upstream (`upstream_config`) is a separate Envoy that answers from
direct_response routes and also plays the OTLP collector on 127.0.0.1:4318.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import yaml

# All fronts run at the same time (only one is loaded at a time), each on its own
# listener and admin port: the i-th front of the run listens on FRONT_PORT + i and
# has its admin on FRONT_ADMIN_BASE + i.
FRONT_PORT = 10000
FRONT_ADMIN_BASE = 9910
UPSTREAM_PORT = 8000
UPSTREAM_ADMIN_PORT = 9902
OTLP_PORT = 4318
STREAM_SERVER_PORT = 8001  # bench/sse_server.py, behind the upstream Envoy's /mcp-stream route
SESSION_SERVER_PORT = 8002  # FastMCP (tests/peers/mcp_server.py), for the user-session measurement
SESSION_FRONT_OFFSET = 40  # the session fronts listen on FRONT_PORT + 40 + i (admin likewise)

FRONTS = ("A", "W", "W1", "M", "B", "BS", "B+", "B0", "N")
FRONT_DESCRIPTIONS = {
    "A": "bare Envoy (same listener, route, tracer; no wasm)",
    "W": "empty proxy-wasm filter, HCM + router upstream (same two placements as B)",
    "W1": "empty proxy-wasm filter, HCM only",
    "M": "the job's floor in B's layout: a probe filter in both places whose upstream instance only holds and reads the body, writes 1 byte back, fixes content-length on the held headers and sets B's 7 filter-state keys (no parsing)",
    "B": "mcp-trace as in envoy/envoy.yaml",
    "BS": "B with request headers streamed, not held (no allow_on_headers_stop_iteration, as Istio and Envoy Gateway)",
    "B+": "mcp-trace with own_spans.mode always in both instances",
    "B0": "B with the build given by --baseline-wasm",
    "N": "native envoy.filters.http.mcp + json_to_metadata + sse_to_metadata",
}

WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


# --------------------------------------------------------------------------- front Envoys


def _hcm(config: dict) -> dict:
    listener = next(lst for lst in config["static_resources"]["listeners"] if lst["name"] == "mcp_listener")
    chain = listener["filter_chains"][0]["filters"]
    return next(f for f in chain if f["name"] == "envoy.filters.network.http_connection_manager")["typed_config"]


def _router(hcm: dict) -> dict:
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router")["typed_config"]


def _is_wasm(http_filter: dict) -> bool:
    return http_filter.get("typed_config", {}).get("@type") == WASM_FILTER


def _wasm_filters(hcm: dict) -> list[dict]:
    """The wasm filters of the HCM chain and of the router's upstream chain (in that order)."""
    found = [f for f in hcm["http_filters"] if _is_wasm(f)]
    found += [f for f in _router(hcm).get("upstream_http_filters", []) if _is_wasm(f)]
    return found


def _remove_wasm(hcm: dict) -> int:
    """Removes every wasm filter; returns the HCM-chain index the first one had."""
    index = next(i for i, f in enumerate(hcm["http_filters"]) if _is_wasm(f))
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not _is_wasm(f)]
    router = _router(hcm)
    router.pop("upstream_http_filters", None)  # Envoy falls back to its upstream codec filter
    return index


def load_reference(repo: Path) -> dict:
    """envoy/envoy.yaml with the wasm path made absolute (Envoy resolves it against its CWD)."""
    config = yaml.safe_load((repo / "envoy" / "envoy.yaml").read_text())
    for f in _wasm_filters(_hcm(config)):
        local = f["typed_config"]["config"]["vm_config"]["code"]["local"]
        local["filename"] = str((repo / local["filename"]).resolve())
    return config


def front_bare(reference: dict) -> dict:
    config = copy.deepcopy(reference)
    _remove_wasm(_hcm(config))
    return config


def front_empty_wasm(reference: dict, empty_wasm: Path, upstream_too: bool = True) -> dict:
    config = copy.deepcopy(reference)
    hcm = _hcm(config)
    if not upstream_too:
        router = _router(hcm)
        router["upstream_http_filters"] = [f for f in router["upstream_http_filters"] if not _is_wasm(f)]
    for f in _wasm_filters(hcm):
        plugin = f["typed_config"]["config"]
        plugin["vm_config"]["vm_id"] = "bench_empty"
        plugin["vm_config"]["code"]["local"]["filename"] = str(empty_wasm.resolve())
        plugin.pop("configuration", None)  # the empty filter reads none
    return config


def front_probe(reference: dict, empty_wasm: Path, probe_wasm: Path, call: str, repeat: int) -> dict:
    """W with the HCM filter replaced by bench/probe-filter making `repeat` host calls
    of kind `call` per request (the router's upstream filter stays empty)."""
    config = front_empty_wasm(reference, empty_wasm)
    hcm_filter = _wasm_filters(_hcm(config))[0]["typed_config"]["config"]
    hcm_filter["vm_config"]["vm_id"] = "bench_probe"  # other code than the empty upstream filter's VM
    hcm_filter["vm_config"]["code"]["local"]["filename"] = str(probe_wasm.resolve())
    hcm_filter["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps({"call": call, "repeat": repeat})}
    return config


def front_job_floor(reference: dict, empty_wasm: Path, probe_wasm: Path) -> dict:
    """B's layout with bench/probe-filter in both places: the router's upstream
    instance (where B does its MCP work) in `mcp_floor` mode, the HCM instance making
    no call. Both share one VM per worker, as B's and W's instances do."""
    config = front_empty_wasm(reference, empty_wasm)
    for plugin, call in zip((f["typed_config"]["config"] for f in _wasm_filters(_hcm(config))), ("none", "mcp_floor")):
        plugin["vm_config"]["vm_id"] = "bench_floor"
        plugin["vm_config"]["code"]["local"]["filename"] = str(probe_wasm.resolve())
        # The request headers are held as B holds them (where its config lets it).
        hold = bool(plugin.get("allow_on_headers_stop_iteration"))
        settings = {"call": call, "repeat": 1, "hold": hold}
        plugin["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(settings)}
    return config


def front_mcp_trace(reference: dict, own_spans: bool = False, stream_headers: bool = False) -> dict:
    config = copy.deepcopy(reference)
    for f in _wasm_filters(_hcm(config)):
        configuration = f["typed_config"]["config"]["configuration"]
        plugin_config = json.loads(configuration["value"])
        if own_spans:
            plugin_config["own_spans"] = {"mode": "always"}
        if stream_headers:
            plugin_config.pop("hold_request_headers", None)
            f["typed_config"]["config"].pop("allow_on_headers_stop_iteration", None)
        configuration["value"] = json.dumps(plugin_config)
    return config


# Dynamic metadata namespace that json_to_metadata / sse_to_metadata write for N.
N_RESPONSE_NS = "bench.mcp_response"


def _response_rules() -> list[dict]:
    """json_to_metadata rules: the JSON-RPC error code and CallToolResult.isError."""

    def rule(path: list[str], key: str) -> dict:
        return {
            "selectors": [{"key": p} for p in path],
            "on_present": {"metadata_namespace": N_RESPONSE_NS, "key": key, "type": "STRING"},
        }

    return [rule(["error", "code"], "error_code"), rule(["result", "isError"], "is_error")]


def front_native(reference: dict) -> dict:
    """The peer a user would otherwise pick: Envoy's own MCP support, no wasm.

    Covers: JSON-RPC method, id and params.name of the request (envoy.filters.http.mcp,
    dynamic metadata), session and protocol version (request headers), the span name
    "<method> <params.name>", and the response's JSON-RPC error code / isError, from JSON
    (json_to_metadata, which buffers the response body) and from SSE events
    (sse_to_metadata). Does not cover what mcp-trace adds beyond tags: x-request-id
    minting, session resolution across sources, W3C context in params._meta, batches,
    SSE event counts, error.type classes, own spans.
    """
    config = copy.deepcopy(reference)
    hcm = _hcm(config)
    index = _remove_wasm(hcm)
    mcp_md = "envoy.filters.http.mcp"
    native_filters = [
        {
            "name": "envoy.filters.http.mcp",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
                "traffic_mode": "PASS_THROUGH",
                "request_storage_mode": "DYNAMIC_METADATA_AND_FILTER_STATE",
                # The listener's buffer limit. The MCP filter applies it to the whole stream, so a
                # smaller value (e.g. 512 KiB) makes json_to_metadata fail 1 MiB responses with 500.
                "max_request_body_size": 4194304,
            },
        },
        {
            "name": "envoy.filters.http.json_to_metadata",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
                "response_rules": {"rules": _response_rules()},
            },
        },
        {
            "name": "envoy.filters.http.sse_to_metadata",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata",
                "response_rules": {
                    "content_parser": {
                        "name": "envoy.content_parsers.json",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.content_parsers.json.v3.JsonContentParser",
                            "rules": [{"rule": r} for r in _response_rules()],
                        },
                    },
                },
            },
        },
    ]
    hcm["http_filters"][index:index] = native_filters

    tracing = hcm["tracing"]
    name = f"%DYNAMIC_METADATA({mcp_md}:method)% %DYNAMIC_METADATA({mcp_md}:params:name)%"
    tracing["operation"] = name
    tracing["upstream_operation"] = name
    tracing["custom_tags"] = [
        {"tag": "mcp.method.name", "value": f"%DYNAMIC_METADATA({mcp_md}:method)%"},
        {"tag": "gen_ai.tool.name", "value": f"%DYNAMIC_METADATA({mcp_md}:params:name)%"},
        {"tag": "jsonrpc.request.id", "value": f"%DYNAMIC_METADATA({mcp_md}:id)%"},
        {"tag": "mcp.session.id", "value": "%REQ(mcp-session-id)%"},
        {"tag": "mcp.protocol.version", "value": "%REQ(mcp-protocol-version)%"},
        {"tag": "rpc.response.status_code", "value": f"%DYNAMIC_METADATA({N_RESPONSE_NS}:error_code)%"},
        {"tag": "mcp_bench.tool.is_error", "value": f"%DYNAMIC_METADATA({N_RESPONSE_NS}:is_error)%"},
    ]
    return config


def place_front(config: dict, listener_port: int, admin_port: int) -> dict:
    """Moves a front (derived from envoy/envoy.yaml: listener 10000, admin 9901) to its ports."""
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = next(lst for lst in config["static_resources"]["listeners"] if lst["name"] == "mcp_listener")
    listener["address"]["socket_address"]["port_value"] = listener_port
    return config


def front_with_wasm(reference: dict, wasm: Path) -> dict:
    config = copy.deepcopy(reference)
    for f in _wasm_filters(_hcm(config)):
        f["typed_config"]["config"]["vm_config"]["vm_id"] = "mcp_trace_baseline"  # not B's VM
        f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(wasm.resolve())
    return config


def front_config(front: str, reference: dict, empty_wasm: Path, probe_wasm: Path, baseline_wasm: Path | None = None) -> dict:
    if front == "A":
        return front_bare(reference)
    if front == "W":
        return front_empty_wasm(reference, empty_wasm, upstream_too=True)
    if front == "W1":
        return front_empty_wasm(reference, empty_wasm, upstream_too=False)
    if front == "M":
        return front_job_floor(reference, empty_wasm, probe_wasm)
    if front == "B":
        return front_mcp_trace(reference)
    if front == "BS":
        return front_mcp_trace(reference, stream_headers=True)
    if front == "B+":
        return front_mcp_trace(reference, own_spans=True)
    if front == "B0":
        if baseline_wasm is None:
            raise ValueError("front B0 needs --baseline-wasm")
        return front_with_wasm(reference, baseline_wasm)
    if front == "N":
        return front_native(reference)
    raise ValueError(f"unknown front {front!r}; known: {', '.join(FRONTS)}")


# --------------------------------------------------------------------------- fast upstream

# One small tools/call result; the id is fixed (direct_response is static). mcp-trace
# pairs a lone response with the lone request whatever its id.
SMALL_RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "Sunny, 21 C"}], "isError": False}}
BIG_RESULT_BYTES = 1024 * 1024


def small_json_body() -> str:
    return json.dumps(SMALL_RESULT, separators=(",", ":"))


def sse_body() -> str:
    return f"event: message\ndata: {small_json_body()}\n\n"


def big_json_body() -> str:
    """A tools/call result of exactly BIG_RESULT_BYTES bytes."""
    head = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"'
    tail = '"}],"isError":false}}'
    return head + "x" * (BIG_RESULT_BYTES - len(head) - len(tail)) + tail


def _direct(path: str, content_type: str, body: dict) -> dict:
    return {
        "match": {"path": path} if path != "/" else {"prefix": "/"},
        "direct_response": {"status": 200, "body": body},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": content_type}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
    }


def _hcm_filter(stat_prefix: str, route_config: dict, http_filters: list[dict]) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "generate_request_id": False,
            "route_config": route_config,
            "http_filters": http_filters,
        },
    }


def upstream_config(big_body_file: Path, with_sink: bool = True) -> dict:
    """The fast MCP "server" (127.0.0.1:8000) and the OTLP sink (127.0.0.1:4318).

    POST /mcp         small JSON-RPC result, application/json
    POST /mcp-sse     the same result as one SSE event, text/event-stream
    POST /mcp-big     a 1 MiB JSON-RPC result
    POST /mcp-stream  proxied to bench/sse_server.py: first event at once, the second
                      after a pause (time-to-first-event test)
    POST :4318/*      200, empty body (an empty ExportTraceServiceResponse); left out
                      with with_sink=False, when the preflight's capturing sink is there

    The buffer filter makes the upstream read the whole request before it answers: an
    HTTP/1.1 server that answers early makes Envoy close the connection.
    """
    router = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    buffer = {
        "name": "envoy.filters.http.buffer",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 4194304},
    }
    mcp_routes = {
        "name": "mcp_server",
        "max_direct_response_body_size_bytes": 2 * BIG_RESULT_BYTES,
        "virtual_hosts": [
            {
                "name": "mcp_server",
                "domains": ["*"],
                "routes": [
                    _direct("/mcp-sse", "text/event-stream", {"inline_string": sse_body()}),
                    _direct("/mcp-big", "application/json", {"filename": str(big_body_file)}),
                    {"match": {"path": "/mcp-stream"}, "route": {"cluster": "sse_server", "timeout": "0s"}},
                    _direct("/", "application/json", {"inline_string": small_json_body()}),
                ],
            }
        ],
    }
    sink_routes = {
        "name": "otlp_sink",
        "virtual_hosts": [
            {
                "name": "otlp_sink",
                "domains": ["*"],
                "routes": [_direct("/", "application/x-protobuf", {"inline_string": ""})],
            }
        ],
    }

    def listener(name: str, port: int, hcm: dict) -> dict:
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": 4194304,
            "filter_chains": [{"filters": [hcm]}],
        }

    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": UPSTREAM_ADMIN_PORT}}},
        "static_resources": {
            "listeners": [listener("mcp_server", UPSTREAM_PORT, _hcm_filter("mcp_server", mcp_routes, [buffer, router]))]
            + ([listener("otlp_sink", OTLP_PORT, _hcm_filter("otlp_sink", sink_routes, [buffer, router]))] if with_sink else []),
            "clusters": [
                {
                    "name": "sse_server",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "sse_server",
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": STREAM_SERVER_PORT}}}}]}
                        ],
                    },
                }
            ],
        },
    }


def point_at(config: dict, port: int) -> dict:
    """The front's MCP upstream (cluster `mcp_upstream`) moved to 127.0.0.1:`port`."""
    cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == "mcp_upstream")
    for group in cluster["load_assignment"]["endpoints"]:
        for endpoint in group["lb_endpoints"]:
            endpoint["endpoint"]["address"]["socket_address"]["port_value"] = port
    return config


def shift_ports(config: dict, offset: int) -> dict:
    """Adds `offset` to every port in the config (socket addresses and the tracer URI),
    for running beside something that already holds the reference ports."""
    if offset == 0:
        return config

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "port_value" and isinstance(value, int):
                    node[key] = value + offset
                elif key == "uri" and isinstance(value, str):
                    node[key] = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{int(m.group(1)) + offset}", value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return config


class _Dumper(yaml.SafeDumper):
    """Writes strings that contain line breaks double-quoted with escapes: Envoy's YAML
    parser folds PyYAML's multi-line single-quoted form differently (an SSE body lost
    its final newline that way)."""


_Dumper.add_representer(
    str, lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style='"' if "\n" in s else None)
)


def write_yaml(config: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=120))
    return path
