"""Start the Phoenix server (`phoenix serve`) with its OTLP/gRPC receiver bound to 127.0.0.1.

Run with the Phoenix venv's python (run_demo.py does this); configure it through the
usual PHOENIX_* environment variables (PHOENIX_HOST, PHOENIX_PORT, PHOENIX_GRPC_PORT,
PHOENIX_WORKING_DIR, ...).

Why this wrapper: PHOENIX_HOST binds the HTTP server (UI, REST API, OTLP/HTTP), but
Phoenix 20.x always binds its OTLP/gRPC receiver to every interface
(`add_insecure_port("[::]:<PHOENIX_GRPC_PORT>")` in phoenix/server/grpc_server.py), and
there is no setting to turn it off or move it. The demo must listen on loopback only,
so this wrapper rewrites that one address before Phoenix starts. If a future Phoenix
changes the call, the rewrite simply does nothing and Phoenix starts as it would anyway.
"""

from __future__ import annotations

import sys

import grpc.aio

_LOOPBACK = "127.0.0.1"
_grpc_server = grpc.aio.server


def _loopback_only(address: str) -> str:
    for wildcard in ("[::]:", "0.0.0.0:"):
        if address.startswith(wildcard):
            return _LOOPBACK + ":" + address[len(wildcard):]
    return address


def _server(*args, **kwargs):
    server = _grpc_server(*args, **kwargs)
    add_insecure, add_secure = server.add_insecure_port, server.add_secure_port
    server.add_insecure_port = lambda address: add_insecure(_loopback_only(address))
    server.add_secure_port = lambda address, creds: add_secure(_loopback_only(address), creds)
    return server


grpc.aio.server = _server

if __name__ == "__main__":
    from phoenix.server.main import main

    sys.argv = ["phoenix", "serve", *sys.argv[1:]]
    main()
