#!/usr/bin/env python3
"""mcp-trace demo: MCP client -> Envoy (with the mcp-trace filter) -> FastMCP server, traced into Phoenix.

Run from the repository root (`make demo` does this after building the filter and the venvs):

    .venv/bin/python demo/run_demo.py                # keeps running until Ctrl-C
    .venv/bin/python demo/run_demo.py --once         # prints the traces and exits (scripted check)
    .venv/bin/python demo/run_demo.py --client-only  # steps 3-4 only, against services already running
                                                     # (a running demo, or envoy/docker-compose.yaml)

What it does:
  1. starts Phoenix (the trace backend, from its own venv) on 127.0.0.1:4318, the port
     envoy/envoy.yaml exports to: Phoenix serves its UI, REST API and OTLP/HTTP receiver
     (/v1/traces) on one port, so envoy.yaml is used unchanged. Its data lives in .demo/phoenix.
  2. starts the demo MCP server (tests/peers/mcp_server.py) on 127.0.0.1:8000, exporting its spans
     to Phoenix, and Envoy with envoy/envoy.yaml (listener 127.0.0.1:10000, admin 127.0.0.1:9901).
  3. runs an MCP client (tests/peers/mcp_client.py, the official mcp SDK) through Envoy, once in
     session mode (2025-11-25) and once in sessionless mode (2026-07-28), each under a root span of
     its own, with the client's OpenTelemetry SDK on (client spans, _meta.traceparent) and the HTTP
     traceparent header set as an HTTP-instrumented client would, so client, Envoy and server spans
     form one trace per session.
  4. waits for the spans to land in Phoenix, reads them back through Phoenix's REST API and prints
     each trace as a tree, with the Phoenix UI links.

Everything listens on 127.0.0.1 only. Logs: .demo/logs/. Environment:
  PHOENIX_VENV  the Phoenix venv (default .venv-phoenix, made by `make setup-phoenix`)
  ENVOY_BIN     the Envoy binary (default: `envoy` next to this Python, i.e. .venv/bin/envoy)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO / ".demo"
LOG_DIR = DEMO_DIR / "logs"
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_trace.wasm"
PEERS = REPO / "tests" / "peers"

HOST = "127.0.0.1"
GATEWAY_PORT, ADMIN_PORT, MCP_PORT = 10000, 9901, 8000  # as in envoy/envoy.yaml
PHOENIX_PORT = 4318  # envoy.yaml's OTLP/HTTP collector; Phoenix serves UI + REST + OTLP/HTTP here
PHOENIX_GRPC_PORT = 4317  # Phoenix always opens an OTLP/gRPC receiver too (the standard port)

GATEWAY_URL = f"http://{HOST}:{GATEWAY_PORT}/mcp"
PHOENIX_URL = f"http://{HOST}:{PHOENIX_PORT}"
OTLP_TRACES_URL = f"{PHOENIX_URL}/v1/traces"
ADMIN_URL = f"http://{HOST}:{ADMIN_PORT}"
MCP_URL = f"http://{HOST}:{MCP_PORT}"
PROJECT = "default"  # Phoenix project for spans without an openinference.project.name resource attribute

# The client's steps: every request type the filter names, one tool error, and a tool that streams
# progress notifications over SSE. `ping` is skipped in sessionless mode (it does not exist there).
STEPS = ["list_tools", "get_weather", "fail_tool", "read_resource", "get_prompt", "slow_progress", "ping"]
# (name, MCP mode, protocol version, HTTP traceparent too): two agents with HTTP
# instrumentation (the context in each header and in _meta: Envoy's span is the server's
# parent), and one with only the mcp SDK's own tracing (the context in _meta alone: the
# filter's own MCP span is, linked to Envoy's span on a trace of its own).
AGENTS = [
    ("session", "session", "2025-11-25", True),
    ("sessionless", "sessionless", "2026-07-28", True),
    ("_meta only", "sessionless", "2026-07-28", False),
]

# Attributes shown in the tree, in this order, when a span has them.
SHOW_ATTRS = [
    "mcp.method.name",
    "gen_ai.tool.name",
    "gen_ai.prompt.name",
    "mcp.resource.uri",
    "mcp.session.id",
    "error.type",
    "rpc.response.status_code",
    "http.status_code",
    "mcp.sse.notifications",
]

SPAN_WAIT_S = 30.0  # Envoy's OTel exporter sends a batch about every 5 s


class DemoError(Exception):
    """A failure with a message for the user (no traceback)."""


class Stop(Exception):
    """SIGINT / SIGTERM / SIGHUP arrived."""


def _on_signal(signum: int, _frame: Any) -> None:
    raise Stop(signal.Signals(signum).name)


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- child processes


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the demo process dies (Linux), so even a
    `kill -9` of the demo leaves no orphans. Elsewhere this is a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Child:
    """One background service. Its own session (process group), so a Ctrl-C in the terminal
    reaches only the demo, which then stops every child in order and waits for it."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        # Anything the child left behind in its process group.
        self._signal_group(signal.SIGKILL)
        self._log.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


# --------------------------------------------------------------------------- checks


def port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def preflight(envoy_bin: Path, phoenix_python: Path) -> None:
    problems = []
    if not WASM.is_file():
        problems.append(f"the filter is not built ({WASM.relative_to(REPO)} is missing): run `make build`")
    if not (envoy_bin.is_file() and os.access(envoy_bin, os.X_OK)):
        problems.append(f"Envoy not found at {envoy_bin}: run `make setup-python` (or set ENVOY_BIN)")
    if not (phoenix_python.is_file() and os.access(phoenix_python, os.X_OK)):
        problems.append(
            f"the Phoenix venv is missing ({phoenix_python} not found): run `make setup-phoenix` (or set PHOENIX_VENV)"
        )
    busy = [
        (port, what)
        for port, what in [
            (GATEWAY_PORT, "Envoy MCP listener"),
            (ADMIN_PORT, "Envoy admin"),
            (MCP_PORT, "demo MCP server"),
            (PHOENIX_PORT, "Phoenix UI + OTLP/HTTP"),
            (PHOENIX_GRPC_PORT, "Phoenix OTLP/gRPC"),
        ]
        if port_busy(port)
    ]
    for port, what in busy:
        problems.append(f"port {HOST}:{port} ({what}) is already in use")
    if busy:
        ports = ",".join(str(p) for p, _ in busy)
        problems.append(
            f"find the listener with: ss -ltnp | grep -E ':({ports.replace(',', '|')})\\b'  "
            "(another demo, `make e2e`, or a collector?)"
        )
    if problems:
        raise DemoError("cannot start the demo:\n" + "\n".join(f"  - {p}" for p in problems))


def phoenix_version(venv: Path) -> str:
    for dist in sorted(venv.glob("lib/python*/site-packages/arize_phoenix-*.dist-info")):
        return dist.name[len("arize_phoenix-") : -len(".dist-info")]
    return "?"


# --------------------------------------------------------------------------- HTTP helpers


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(services: list[tuple[str, str, float, Child | None]]) -> None:
    """Poll each (name, readiness URL, time limit, child process or None) until 200; fail fast if
    a child exits."""
    pending = {name: (url, time.monotonic() + limit, child) for name, url, limit, child in services}
    while pending:
        for name, (url, deadline, child) in list(pending.items()):
            log = f" (log {child.log_path.relative_to(REPO)}):\n{child.tail()}" if child else ""
            if child and not child.alive():
                raise DemoError(f"{name} exited with status {child.proc.returncode} while starting{log}")
            try:
                if http_get(url, timeout=1.0)[0] == 200:
                    del pending[name]
                    continue
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"{name} was not ready at {url} in time{log}")
        time.sleep(0.2)


def phoenix_json(path: str, params: list[tuple[str, Any]] | None = None) -> Any:
    url = f"{PHOENIX_URL}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    status, body = http_get(url, timeout=10.0)
    if status != 200:
        raise DemoError(f"Phoenix answered {status} to GET {url}: {body[:300]!r}")
    return json.loads(body)


def fetch_spans(trace_ids: list[str]) -> list[dict[str, Any]]:
    """Every span of these traces, as Phoenix stored them (REST: GET /v1/projects/{p}/spans)."""
    spans: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: list[tuple[str, Any]] = [("trace_id", t) for t in trace_ids] + [("limit", 1000)]
        if cursor:
            params.append(("cursor", cursor))
        page = phoenix_json(f"/v1/projects/{PROJECT}/spans", params)
        spans.extend(page.get("data") or [])
        cursor = page.get("next_cursor")
        if not cursor:
            return spans


# --------------------------------------------------------------------------- the MCP client


def run_client(mcp_client: Any, tracer: Any, agent: str, mode: str, headers: dict[str, str], http_context: bool) -> tuple[dict[str, Any], str]:
    """One MCP session through Envoy under a root span of its own; returns (report, trace id).

    With `http_context`, like an agent with HTTP instrumentation, the client sends each
    message's context both in _meta and as the HTTP traceparent: Envoy's spans then sit on
    the agent's trace, and Envoy's span is the MCP server's parent. Requests without _meta
    (notifications, GET, DELETE) carry the root span's context from the static header.
    Without it, the context travels in _meta alone, as the mcp SDK's own tracing sends it."""
    with tracer.start_as_current_span(f"mcp-trace demo: {agent}") as root:
        ctx = root.get_span_context()
        trace_id = format(ctx.trace_id, "032x")
        traceparent = f"00-{trace_id}-{format(ctx.span_id, '016x')}-01"
        report = mcp_client.run(
            GATEWAY_URL, mode, headers={**headers, **({"traceparent": traceparent} if http_context else {})}, otel=True,
            root_span=False, steps=STEPS, http_traceparent_from_meta=http_context,
        )
        session = report.get("session_id") or headers.get("X-Session-ID")
        if session:
            root.set_attribute("session.id", session)  # Phoenix's Sessions view groups by it
    return report, trace_id


def describe_steps(report: dict[str, Any]) -> str:
    parts = []
    for step in STEPS:
        if step in report["errors"]:
            parts.append(f"{step}: FAILED {report['errors'][step]}")
            continue
        res = report["results"].get(step)
        if isinstance(res, dict) and "skipped" in res:
            continue
        if isinstance(res, dict) and res.get("isError"):
            parts.append(f"{step} (isError, on purpose)")
        elif step == "slow_progress":
            parts.append(f"{step} ({len(report['progress'])} progress notifications)")
        else:
            parts.append(step)
    return ", ".join(parts)


# --------------------------------------------------------------------------- the trace view


def classify(span: dict[str, Any]) -> tuple[str, str]:
    """(service, kind). Phoenix keeps neither the OTLP resource (service.name) nor the OTel span
    kind, so both are inferred from what it does keep: Envoy's spans carry component=proxy (the
    SERVER span has http.url, the upstream CLIENT span upstream_address), FastMCP's carry
    fastmcp.* attributes, the mcp SDK's client spans are named "MCP send ..."."""
    a = span.get("attributes") or {}
    name = span.get("name") or ""
    if a.get("component") == "proxy":
        return "envoy-mcp-gateway", ("SERVER" if "http.url" in a else "CLIENT")
    if any(k.startswith("fastmcp.") for k in a):
        return "mcp-server", "SERVER"
    if name.startswith("MCP send"):
        return "mcp-client", "CLIENT"
    if "mcp_trace.request_id" in a:  # the filter's own MCP span: the proxy as the server's client
        return "mcp-trace", "CLIENT"
    if name.startswith(("mcp-trace demo", "mcp-client ")):  # root spans: this demo's, mcp_client.py's
        return "mcp-client", "INTERNAL"
    return "?", "?"


def _ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _ms(span: dict[str, Any]) -> float:
    return (_ts(span["end_time"]) - _ts(span["start_time"])).total_seconds() * 1000.0


def _fmt_attr(key: str, value: Any, ascii_only: bool) -> str:
    v = str(value)
    if key == "mcp.session.id" and len(v) > 16:  # server-minted ids are 32 hex digits
        v = v[:8] + ("..." if ascii_only else "…")
    return f"{key}={v}"


def render_tree(spans: list[dict[str, Any]], ascii_only: bool) -> list[str]:
    by_id = {s["context"]["span_id"]: s for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans:
        parent = s.get("parent_id")
        children.setdefault(parent if parent in by_id else None, []).append(s)
    for lst in children.values():
        lst.sort(key=lambda s: (s["start_time"], s["context"]["span_id"]))
    tee, last, bar, gap = ("|- ", "`- ", "|  ", "   ") if ascii_only else ("├─ ", "└─ ", "│  ", "   ")

    rows: list[tuple[str, str, str, str, str]] = []

    def walk(span: dict[str, Any], prefix: str, connector: str) -> None:
        service, kind = classify(span)
        attrs = span.get("attributes") or {}
        shown = [_fmt_attr(k, attrs[k], ascii_only) for k in SHOW_ATTRS if k in attrs and attrs[k] not in ("", None)]
        if span.get("status_code") == "ERROR":
            shown.append("status=ERROR" + (f" ({span['status_message']})" if span.get("status_message") else ""))
        rows.append((prefix + connector + span["name"], service, kind, f"{_ms(span):8.1f} ms", "  ".join(shown)))
        kids = children.get(span["context"]["span_id"], [])
        child_prefix = "" if connector == "" else prefix + (gap if connector == last else bar)
        for i, kid in enumerate(kids):
            walk(kid, child_prefix, last if i == len(kids) - 1 else tee)

    for root in children.get(None, []):
        walk(root, "", "")
    width = max((len(r[0]) for r in rows), default=10)
    out = [f"  {'span':<{width}}  {'service':<17} {'kind':<8} {'duration':>11}  key attributes"]
    out += [f"  {n:<{width}}  {svc:<17} {k:<8} {d:>11}  {a}".rstrip() for n, svc, k, d, a in rows]
    return out


def wait_for_spans(expected: dict[str, tuple[str, int]]) -> tuple[list[dict[str, Any]], bool]:
    """Poll Phoenix until every trace holds at least the expected number of proxy spans of its
    kind (Envoy's, or the filter's own) and the span count has settled."""
    deadline = time.monotonic() + SPAN_WAIT_S
    previous = -1
    while True:
        spans = fetch_spans(list(expected))
        proxy = {t: 0 for t in expected}
        for s in spans:
            trace_id = s["context"]["trace_id"]
            if trace_id in expected and classify(s)[0] == expected[trace_id][0]:
                proxy[trace_id] += 1
        complete = all(proxy[t] >= n for t, (_, n) in expected.items())
        if complete and len(spans) == previous:
            return spans, True
        if time.monotonic() > deadline:
            return spans, complete
        previous = len(spans)
        time.sleep(0.5 if complete else 1.0)


# --------------------------------------------------------------------------- main


def start_services(reset: bool, phoenix_venv: Path, phoenix_python: Path, envoy_bin: Path) -> list[Child]:
    """Start Phoenix, the MCP server and Envoy, and wait until all three answer. The caller stops the
    returned children; on a failure here, the ones already started are stopped before raising."""
    if reset:
        shutil.rmtree(DEMO_DIR / "phoenix", ignore_errors=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (DEMO_DIR / "phoenix").mkdir(parents=True, exist_ok=True)
    say(f"[1/4] starting Phoenix {phoenix_version(phoenix_venv)}, the MCP server and Envoy "
        f"(logs in {LOG_DIR.relative_to(REPO)}/) ...")
    children: list[Child] = []
    try:
        # Phoenix: its own venv; configured only through PHOENIX_* variables (the user's are dropped so
        # an exported PHOENIX_SQL_DATABASE_URL or PHOENIX_ENABLE_AUTH cannot redirect or lock the demo).
        phx_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
        phx_env.update(
            PHOENIX_HOST=HOST,  # UI, REST API and OTLP/HTTP on loopback only
            PHOENIX_PORT=str(PHOENIX_PORT),  # = envoy.yaml's collector port: /v1/traces is served here
            PHOENIX_GRPC_PORT=str(PHOENIX_GRPC_PORT),  # phoenix_serve.py binds it to 127.0.0.1
            PHOENIX_WORKING_DIR=str(DEMO_DIR / "phoenix"),  # SQLite database (phoenix.db) and exports
            PHOENIX_TELEMETRY_ENABLED="false",  # no analytics pixels in the UI
            PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",  # no internet requests of its own (fonts, downloads)
            PHOENIX_ENABLE_MCP_SERVER="false",  # Phoenix's own MCP endpoint is not part of the demo
            PHOENIX_DISABLE_AGENT_ASSISTANT="true",  # nor its LLM assistant (and its server-side bash tool)
        )
        phoenix = Child("phoenix", [str(phoenix_python), str(REPO / "demo" / "phoenix_serve.py")], phx_env)
        children.append(phoenix)

        srv_env = {k: v for k, v in os.environ.items()
                   if k not in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED")}
        srv_env["OTEL_EXPORTER_OTLP_ENDPOINT"] = PHOENIX_URL
        server = Child(
            "mcp_server",
            [sys.executable, str(PEERS / "mcp_server.py"), "--host", HOST, "--port", str(MCP_PORT),
             # No extra root "tools/list" span per sessionless tools/call (a FastMCP detail, see README).
             "--static-tool-schemas"],
            srv_env,
        )
        children.append(server)

        # envoy/envoy.yaml as shipped, run from the repo root like the reference deployment. No hot
        # restart: it needs a shared-memory region that would clash with any other Envoy on the host.
        envoy = Child("envoy", [str(envoy_bin), "-c", str(ENVOY_YAML.relative_to(REPO)), "--disable-hot-restart"],
                      dict(os.environ))
        children.append(envoy)

        wait_ready([
            ("phoenix", f"{PHOENIX_URL}/healthz", 120.0, phoenix),
            ("mcp_server", f"{MCP_URL}/_health", 30.0, server),
            ("envoy", f"{ADMIN_URL}/ready", 30.0, envoy),
        ])
    except BaseException:
        for child in reversed(children):
            child.stop()
        raise
    return children


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--once", action="store_true", help="exit after printing the traces (for scripted checks)")
    ap.add_argument(
        "--phoenix-venv",
        default=os.environ.get("PHOENIX_VENV") or ".venv-phoenix",
        help="the Phoenix venv (default: $PHOENIX_VENV or .venv-phoenix)",
    )
    ap.add_argument("--reset", action="store_true", help="delete Phoenix's stored data (.demo/phoenix) first")
    ap.add_argument(
        "--client-only",
        action="store_true",
        help="start nothing: use Phoenix, the MCP server and Envoy already running on the same ports "
        "(e.g. envoy/docker-compose.yaml), run the client sessions, print the traces and exit",
    )
    args = ap.parse_args(argv)

    t_start = time.monotonic()
    phoenix_venv = Path(args.phoenix_venv)
    if not phoenix_venv.is_absolute():
        phoenix_venv = REPO / phoenix_venv
    phoenix_python = phoenix_venv / "bin" / "python"
    envoy_bin = Path(os.environ.get("ENVOY_BIN") or shutil.which("envoy", path=str(Path(sys.executable).parent)) or
                     Path(sys.executable).parent / "envoy")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    children: list[Child] = []
    try:
        if not args.client_only:
            preflight(envoy_bin, phoenix_python)
        try:
            sys.path.insert(0, str(PEERS))
            import mcp_client  # noqa: E402  (tests/peers/mcp_client.py: the official mcp SDK client)
            from opentelemetry import trace
        except ImportError as e:
            raise DemoError(f"the demo's Python packages are missing ({e}): run `make setup-python`") from e

        say("mcp-trace demo: MCP client -> Envoy + mcp-trace -> FastMCP server, traced into Phoenix")
        t0 = time.monotonic()
        if args.client_only:
            say("[1/4] waiting for the running Phoenix, MCP server and Envoy ...")
            wait_ready([
                ("Phoenix", f"{PHOENIX_URL}/healthz", 300.0, None),
                ("the MCP server", f"{MCP_URL}/_health", 300.0, None),  # compose installs its packages first
                ("Envoy", f"{ADMIN_URL}/ready", 300.0, None),
            ])
        else:
            children = start_services(args.reset, phoenix_venv, phoenix_python, envoy_bin)
        project_id = next((p["id"] for p in phoenix_json("/v1/projects")["data"] if p["name"] == PROJECT), None)
        say(f"      ready in {time.monotonic() - t0:.1f} s")

        # The client: official mcp SDK, OTel SDK on (CLIENT spans + _meta.traceparent), exporting to Phoenix.
        mcp_client.setup_otel(endpoint=OTLP_TRACES_URL)
        tracer = trace.get_tracer("mcp-trace-demo")
        say(f"[2/4] MCP client sessions through Envoy at {GATEWAY_URL}")
        runs = []
        ok = True
        for agent, mode, version, http_context in AGENTS:
            # Sessionless clients have no Mcp-Session-Id; the filter takes the session from X-Session-ID
            # (one of its default session sources) so the requests of one conversation still group.
            headers = {"X-Session-ID": f"demo-{uuid.uuid4().hex[:8]}"} if mode == "sessionless" else {}
            report, trace_id = run_client(mcp_client, tracer, agent, mode, headers, http_context)
            runs.append((agent, report, trace_id, http_context))
            ok = ok and not report["errors"] and report["protocol_version"] == version
            if report.get("session_id"):
                sid = f", Mcp-Session-Id {report['session_id']}"
            else:
                sid = "".join(f", {k}: {v}" for k, v in headers.items())
            say(f"      {agent} ({report['protocol_version']}{sid}): {describe_steps(report)}")
            say(f"      -> {len(report['http'])} HTTP exchanges, trace {trace_id}")
        mcp_client.shutdown_otel()

        say("[3/4] waiting for the spans to reach Phoenix (Envoy exports in batches, about every 5 s) ...")
        t0 = time.monotonic()
        # One Envoy span per HTTP exchange on the agent's trace; for a _meta-only agent, one
        # filter span per JSON-RPC message it POSTed.
        expected = {
            trace_id: ("envoy-mcp-gateway", len(report["http"])) if http_context
            else ("mcp-trace", sum(1 for ex in report["http"] if ex["method"] == "POST"))
            for _, report, trace_id, http_context in runs
        }
        spans, complete = wait_for_spans(expected)
        say(f"      {len(spans)} spans stored after {time.monotonic() - t0:.1f} s")
        if not complete:
            ok = False
            where = "Envoy's log" if args.client_only else f"{(LOG_DIR / 'envoy.log').relative_to(REPO)}"
            say(f"      WARNING: not all of Envoy's spans arrived within {SPAN_WAIT_S:.0f} s (see {where})")

        ascii_only = not _can_encode("├─│└")
        say("[4/4] the traces as Phoenix stored them (read back from its REST API)")
        say("      service and kind are inferred: Phoenix stores neither service.name nor the OTel span kind")
        for agent, report, trace_id, _ in runs:
            trace_spans = [sp for sp in spans if sp["context"]["trace_id"] == trace_id]
            say()
            say(f"Trace {trace_id}  ({agent}, {report['protocol_version']}, {len(trace_spans)} spans)")
            if project_id:
                say(f"  {PHOENIX_URL}/projects/{project_id}/traces/{trace_id}")
            for line in render_tree(trace_spans, ascii_only):
                say(line)

        say()
        say(f"Phoenix UI: {PHOENIX_URL}  (project \"{PROJECT}\"; OTLP/HTTP receiver {OTLP_TRACES_URL})")
        if project_id:
            say(f"Sessions:   {PHOENIX_URL}/projects/{project_id}/sessions  (grouped by session.id, which the filter sets)")
        say("Trace ids:  " + "  ".join(f"{agent}={trace_id}" for agent, _, trace_id, _ in runs))
        say(f"Demo took {time.monotonic() - t_start:.1f} s.")
        if args.once or args.client_only:
            return 0 if ok else 1

        say()
        say("Still running; press Ctrl-C to stop. Meanwhile, from another terminal:")
        say("  .venv/bin/python demo/run_demo.py --client-only      # another round of sessions, printed as above")
        say(f"  .venv/bin/python tests/peers/mcp_client.py --url {GATEWAY_URL} --mode both --otel")
        say(f"  Envoy stats: curl -s '{ADMIN_URL}/stats?filter=wasmcustom'   logs: {LOG_DIR.relative_to(REPO)}/")
        while True:
            for child in children:
                if not child.alive():
                    raise DemoError(f"{child.name} exited unexpectedly with status {child.proc.returncode} "
                                    f"(log {child.log_path.relative_to(REPO)}):\n{child.tail()}")
            time.sleep(0.5)
    except Stop as stop:
        say(f"\n{stop}: stopping ...")
        return 0
    except DemoError as e:
        say(f"demo: {e}")
        return 1
    finally:
        # From here on, a second Ctrl-C must not interrupt the shutdown (each step is bounded).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):  # Envoy, the MCP server, then Phoenix (last: it receives spans)
            child.stop()
        if children:
            say("demo: stopped " + ", ".join(c.name for c in reversed(children)) + ".")


def _can_encode(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


if __name__ == "__main__":
    sys.exit(main())
