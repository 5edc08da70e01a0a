"""Load generation and client-side measurements for `make bench`.

  run_wrk        HTTP/1.1, wrk + bench/wrk/tools_call.lua (unique JSON-RPC id per request)
  run_h2load     cleartext HTTP/2 (prior knowledge), h2load; one fixed body
  first_events   time to the first SSE event, over one keep-alive HTTP/1.1 connection
  CaptureSink    an OTLP/HTTP sink that keeps the raw export bodies (preflight only)
  request_once   one request, for the preflight checks
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SESSION_ID = "bench-session-0001"
PROTOCOL_VERSION = "2025-11-25"
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-session-id": SESSION_ID,
    "mcp-protocol-version": PROTOCOL_VERSION,
}


@dataclass(frozen=True)
class Cell:
    """One load: what is sent, where, over how many connections, with which tool."""

    key: str
    label: str
    path: str  # upstream route: /mcp JSON, /mcp-sse SSE, /mcp-big 1 MiB JSON result
    body: int  # request body bytes (about)
    conns: int
    tool: str = "wrk"  # "wrk" (HTTP/1.1) or "h2load" (h2c)
    # The client's context in params._meta only (as the mcp SDK sends it), so mcp-trace
    # reports its own span (own_spans "auto"); otherwise the client sends no context.
    meta: bool = False

    @property
    def latency(self) -> bool:
        return self.conns == 1


CELLS = (
    Cell("json-1k-c1", "1 KB call, JSON, 1 conn", "/mcp", 1024, 1),
    Cell("sse-1k-c1", "1 KB call, SSE, 1 conn", "/mcp-sse", 1024, 1),
    Cell("json-200-c16", "200 B call, JSON, 16 conns", "/mcp", 200, 16),
    Cell("json-1k-c16", "1 KB call, JSON, 16 conns", "/mcp", 1024, 16),
    Cell("sse-1k-c16", "1 KB call, SSE, 16 conns", "/mcp-sse", 1024, 16),
    Cell("json-64k-c16", "64 KB call, JSON, 16 conns", "/mcp", 65536, 16),
    Cell("json-1m-c16", "1 MB call, JSON, 16 conns", "/mcp", 1048576, 16),
    Cell("bigres-1k-c16", "1 KB call, 1 MB JSON result, 16 conns", "/mcp-big", 1024, 16),
    Cell("h2-json-1k-c16", "1 KB call, JSON, h2c 16 conns", "/mcp", 1024, 16, "h2load"),
    Cell("meta-1k-c16", "1 KB call, context in _meta only, 16 conns", "/mcp", 1024, 16, meta=True),
)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _cmd(args: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *args] if cpus else args


_first_id = 0


def run_wrk(lua: Path, url: str, cell: Cell, seconds: float, cpus: str | None) -> LoadResult:
    global _first_id
    _first_id += 10**10  # every run gets its own block of JSON-RPC ids
    args = ["wrk", "-t1", f"-c{cell.conns}", f"-d{seconds:g}s", "--timeout", "5s", "-s", str(lua), url + cell.path]
    args += ["--", str(cell.body), SESSION_ID, str(_first_id), "meta" if cell.meta else "plain"]
    run = subprocess.run(_cmd(args, cpus), capture_output=True, text=True, timeout=seconds + 30)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    d = json.loads(line.removeprefix("BENCH_JSON "))
    lat = d["latency_us"]
    return LoadResult(
        requests=d["requests"] - d["errors"]["status"],  # non-2xx responses are not served requests
        seconds=d["duration_us"] / 1e6,
        p50_us=lat["p50"],
        p90_us=lat["p90"],
        p99_us=lat["p99"],
        errors={k: v for k, v in d["errors"].items() if v},
    )


def tools_call_body(size: int, request_id: int = 1, tool: str = "get_weather") -> bytes:
    """A tools/call of about `size` bytes, like the wrk script's."""
    head = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"city":"Paris","data":"' % (request_id, tool)
    tail = '"}}}'
    return (head + "x" * max(0, size - len(head) - len(tail)) + tail).encode()


def sequential_calls(port: int, count: int, size: int) -> None:
    """`count` tools/call of about `size` bytes, one after the other on one keep-alive
    HTTP/1.1 connection, each with its own JSON-RPC id; fails on any non-200."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for i in range(count):
            conn.request("POST", "/mcp", tools_call_body(size, 900_000_000 + i), HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"front answered {response.status} to request {i}")
    finally:
        conn.close()


def run_h2load(body_file: Path, url: str, cell: Cell, seconds: float, cpus: str | None) -> LoadResult:
    args = ["h2load", "-t1", f"-c{cell.conns}", "-m1", f"-D{seconds:g}", "-d", str(body_file)]
    for name, value in HEADERS.items():
        args += ["-H", f"{name}: {value}"]
    args.append(url + cell.path)
    run = subprocess.run(_cmd(args, cpus), capture_output=True, text=True, timeout=seconds + 30)
    finished = re.search(r"finished in ([\d.]+)(m?s)", run.stdout)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", run.stdout)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", run.stdout)
    if run.returncode != 0 or not (finished and counts and status):
        raise RuntimeError(f"h2load failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    duration = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    ok = int(status.group(1))
    errors = {"failed": int(counts.group(3)), "errored": int(counts.group(4)), "timeout": int(counts.group(5)), "non2xx": int(counts.group(2)) - ok}
    return LoadResult(requests=ok, seconds=duration, errors={k: v for k, v in errors.items() if v})


# --------------------------------------------------------------------------- raw HTTP/1.1 client


def _request_bytes(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: bench\r\n" + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
    return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body


class _Response:
    """Reads one HTTP/1.1 response (content-length or chunked) from a socket and notes
    when the first SSE `data:` line arrived."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.first_data_at: float | None = None
        self.status = 0
        self.body = b""

    def _recv(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        self.buf += chunk

    def read(self) -> _Response:
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.buf = rest
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                self._mark()
                self._recv()
            self._mark()
            self.body, self.buf = self.buf[:length], self.buf[length:]
        else:  # chunked: the response ends with the zero-size chunk
            while not self.buf.endswith(b"0\r\n\r\n"):
                self._mark()
                self._recv()
            self._mark()
            self.body, self.buf = self.buf, b""
        return self

    def _mark(self) -> None:
        if self.first_data_at is None and b"data:" in self.buf:
            self.first_data_at = time.perf_counter()


def request_once(port: int, path: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(_request_bytes(path, body))
        r = _Response(sock).read()
        return r.status, r.body


def first_events(port: int, path: str, count: int, body_size: int = 1024) -> dict[str, list[float]]:
    """Time from sending a request to the first SSE `data:` byte, and to the end of the
    response, in microseconds, for `count` requests on one keep-alive connection."""
    ttfe: list[float] = []
    total: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            request = _request_bytes(path, tools_call_body(body_size, 1_000_000 + i))
            start = time.perf_counter()
            sock.sendall(request)
            r = _Response(sock).read()
            end = time.perf_counter()
            if r.status != 200 or r.first_data_at is None:
                raise RuntimeError(f"SSE request got status {r.status}, body {r.body[:200]!r}")
            ttfe.append((r.first_data_at - start) * 1e6)
            total.append((end - start) * 1e6)
    return {"ttfe_us": ttfe, "total_us": total}


# --------------------------------------------------------------------------- preflight OTLP sink


class CaptureSink:
    """OTLP/HTTP sink that keeps the raw export bodies (protobuf), for the preflight's
    "did the spans carry the tags" check. Strings are stored verbatim in protobuf, so a
    byte search is enough."""

    def __init__(self, port: int):
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self._read_body()
                with sink.lock:
                    sink.bodies.append(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def _read_body(self) -> bytes:
                if "chunked" not in self.headers.get("transfer-encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("content-length", "0")))
                body = b""  # Envoy's OTLP exporter sends chunked bodies
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()  # the CRLF after the last chunk (no trailers)
                return body

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def clear(self) -> None:
        with self.lock:
            self.bodies.clear()

    def wait_for(self, needles: list[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                data = b"".join(self.bodies)
            if all(n in data for n in needles):
                return True
            time.sleep(0.1)
        return False

    def seen(self, needle: bytes) -> bool:
        with self.lock:
            return any(needle in b for b in self.bodies)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
