#!/usr/bin/env python3
"""Minimal real OTLP/HTTP trace receiver for tests.

Accepts ``POST /v1/traces`` with ``Content-Type: application/x-protobuf``
(ExportTraceServiceRequest, binary), optionally ``Content-Encoding: gzip`` (or ``deflate``).
OTLP/JSON is refused with 415, as the demo's backend (Arize Phoenix) refuses it: a sender
that only speaks JSON must not pass the tests and then export nothing in the demo.

Every span is stored flattened as a plain dict (see ``_flatten_span``).

Query API:
  GET    /spans                 JSON list of all spans (oldest first)
  GET    /spans?trace_id=<hex>  ... filtered; also ?name=, ?service=, ?span_id= (all exact match)
  DELETE /spans                 clear spans (and stats)
  GET    /stats                 {"exports": n, "spans": n, "content_types": {...}, "encodings": {...}, "errors": [...]}
  GET    /health                "ok"

CLI:      python otlp_sink.py --port 4318 [--host 127.0.0.1]
Library:  sink = start_sink(port=0); sink.url; sink.spans(); sink.wait_for(...); sink.stop()
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SPAN_KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_CODE_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}


# --------------------------------------------------------------------------- decoding


def decode_any_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    if which == "array_value":
        return [decode_any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: decode_any_value(kv.value) for kv in v.kvlist_value.values}
    return None  # pragma: no cover


def _attrs(kvs) -> dict[str, Any]:
    return {kv.key: decode_any_value(kv.value) for kv in kvs}


def _flatten_span(span: Span, resource_attrs: dict[str, Any], scope_name: str, scope_version: str) -> dict[str, Any]:
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() if span.parent_span_id else "",
        "trace_state": span.trace_state,
        "name": span.name,
        "kind": int(span.kind),
        "kind_name": SPAN_KIND_NAMES.get(int(span.kind), str(int(span.kind))),
        "start_time_unix_nano": int(span.start_time_unix_nano),
        "end_time_unix_nano": int(span.end_time_unix_nano),
        "status": {
            "code": int(span.status.code),
            "code_name": STATUS_CODE_NAMES.get(int(span.status.code), str(int(span.status.code))),
            "message": span.status.message,
        },
        "attributes": _attrs(span.attributes),
        "events": [
            {"name": ev.name, "time_unix_nano": int(ev.time_unix_nano), "attributes": _attrs(ev.attributes)}
            for ev in span.events
        ],
        "links": [
            {
                "trace_id": ln.trace_id.hex(),
                "span_id": ln.span_id.hex(),
                "trace_state": ln.trace_state,
                "attributes": _attrs(ln.attributes),
            }
            for ln in span.links
        ],
        "resource": resource_attrs,
        "service_name": resource_attrs.get("service.name", ""),
        "scope_name": scope_name,
        "scope_version": scope_version,
    }


def flatten_request(req: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rs in req.resource_spans:
        res_attrs = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(_flatten_span(span, res_attrs, ss.scope.name, ss.scope.version))
    return out


class UnsupportedMediaType(ValueError):
    pass


def decode_body(body: bytes, content_type: str, content_encoding: str) -> ExportTraceServiceRequest:
    """The request; raises UnsupportedMediaType for JSON, ValueError on anything undecodable."""
    enc = (content_encoding or "").strip().lower()
    if enc == "gzip":
        body = gzip.decompress(body)
    elif enc == "deflate":
        body = zlib.decompress(body)
    elif enc not in ("", "identity"):
        raise ValueError(f"unsupported Content-Encoding {content_encoding!r}")

    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype not in ("application/x-protobuf", "application/protobuf", ""):
        raise UnsupportedMediaType(f"unsupported Content-Type {content_type!r} (binary protobuf only)")
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return req


# --------------------------------------------------------------------------- store


class SpanStore:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._spans: list[dict[str, Any]] = []
        self._stats: dict[str, Any] = {}
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._spans = []
            self._stats = {"exports": 0, "spans": 0, "content_types": {}, "encodings": {}, "errors": []}

    def add(self, spans: list[dict[str, Any]], content_type: str, encoding: str) -> None:
        with self._lock:
            self._spans.extend(spans)
            self._stats["exports"] += 1
            self._stats["spans"] += len(spans)
            ct = self._stats["content_types"]
            ct[content_type] = ct.get(content_type, 0) + 1
            en = self._stats["encodings"]
            en[encoding or "identity"] = en.get(encoding or "identity", 0) + 1
            self._lock.notify_all()

    def error(self, msg: str) -> None:
        with self._lock:
            self._stats["errors"].append(msg)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def spans(self, **filters: str) -> list[dict[str, Any]]:
        """Filters: trace_id, span_id, name, service (service.name)."""
        with self._lock:
            items = list(self._spans)
        return [s for s in items if _match(s, filters)]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Block until predicate(all_spans) is truthy; return all spans. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if predicate(list(self._spans)):
                    return list(self._spans)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"spans not seen within {timeout}s; have {len(self._spans)}")
                self._lock.wait(left)


def _match(span: dict[str, Any], filters: dict[str, str]) -> bool:
    for key, want in filters.items():
        if not want:
            continue
        if key == "service":
            if span.get("service_name") != want:
                return False
        elif key in ("trace_id", "span_id", "parent_span_id"):
            if span.get(key, "").lower() != want.lower():
                return False
        elif span.get(key) != want:
            return False
    return True


# --------------------------------------------------------------------------- HTTP


def _make_handler(store: SpanStore, quiet: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "otlp-sink/1"

        def log_message(self, fmt: str, *args: Any) -> None:  # noqa: D401
            if not quiet:
                sys.stderr.write("otlp_sink: " + (fmt % args) + "\n")

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        # trailers until blank line
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def do_POST(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            body = self._read_body()
            if path != "/v1/traces":
                self._json(404, {"error": f"unknown path {path}"})
                return
            ctype = self.headers.get("Content-Type", "")
            enc = self.headers.get("Content-Encoding", "")
            try:
                spans = flatten_request(decode_body(body, ctype, enc))
            except Exception as exc:  # 415 or 400, like a collector would
                store.error(f"{type(exc).__name__}: {exc}")
                self._json(415 if isinstance(exc, UnsupportedMediaType) else 400, {"code": 3, "message": f"cannot decode: {exc}"})
                return
            store.add(spans, ctype.split(";")[0].strip(), enc)
            self._send(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

        def do_GET(self) -> None:  # noqa: N802
            u = urlsplit(self.path)
            if u.path == "/spans":
                q = {k: v[-1] for k, v in parse_qs(u.query).items()}
                self._json(200, store.spans(**q))
            elif u.path == "/stats":
                self._json(200, store.stats())
            elif u.path in ("/health", "/"):
                self._send(200, b"ok", "text/plain")
            else:
                self._json(404, {"error": "not found"})

        def do_DELETE(self) -> None:  # noqa: N802
            if urlsplit(self.path).path == "/spans":
                store.clear()
                self._send(204, b"", "text/plain")
            else:
                self._json(404, {"error": "not found"})

    return Handler


class SinkHandle:
    """A running sink (background thread). Use .url, .spans(), .wait_for(), .clear(), .stop()."""

    def __init__(self, server: ThreadingHTTPServer, thread: threading.Thread, store: SpanStore) -> None:
        self.server = server
        self.thread = thread
        self.store = store
        host, port = server.server_address[:2]
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.traces_url = f"{self.url}/v1/traces"

    def spans(self, **filters: str) -> list[dict[str, Any]]:
        return self.store.spans(**filters)

    def wait_for(self, predicate, timeout: float = 10.0):
        return self.store.wait_for(predicate, timeout)

    def clear(self) -> None:
        self.store.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> SinkHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def make_server(host: str = "127.0.0.1", port: int = 4318, quiet: bool = True) -> tuple[ThreadingHTTPServer, SpanStore]:
    store = SpanStore()
    server = ThreadingHTTPServer((host, port), _make_handler(store, quiet))
    return server, store


def start_sink(host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> SinkHandle:
    """Start the sink in a daemon thread; port=0 picks a free port (see handle.port / handle.url)."""
    server, store = make_server(host, port, quiet)
    t = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    t.start()
    return SinkHandle(server, t, store)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4318)
    ap.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    args = ap.parse_args(argv)
    server, _ = make_server(args.host, args.port, quiet=not args.verbose)
    print(f"otlp_sink listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
