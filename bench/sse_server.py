#!/usr/bin/env python3
"""A streaming MCP "server" for the time-to-first-SSE-event test.

Answers every POST with `text/event-stream`: the first event (a JSON-RPC progress
notification) at once, the final JSON-RPC result after --gap-ms. If a proxy held the
response back until the end of the stream, the client would see the first event
late by at least the gap.

Usage: sse_server.py --port 8001 [--gap-ms 20]   (127.0.0.1 only; stops on SIGTERM)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "done"}], "isError": False}}


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event(message: dict) -> bytes:
    return b"event: message\ndata: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, chunked responses
    disable_nagle_algorithm = True  # else the first event waits for the peer's delayed ACK
    gap_s = 0.02

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        self.rfile.read(int(self.headers.get("content-length", "0")))
        # Written by hand so that the head and the first event leave in one write.
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        self.wfile.write(head + chunk(event(PROGRESS)))
        time.sleep(self.gap_s)
        self.wfile.write(chunk(event(RESULT)) + chunk(b""))

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    args = parser.parse_args()
    Handler.gap_s = args.gap_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"sse_server listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
