#!/usr/bin/env python3
"""An agent instrumented by a third-party MCP instrumentation library: Arize's
openinference-instrumentation-mcp, around the official `mcp` client (mcp_client.py).

Like the `mcp` SDK's own tracing, the library carries the client's trace context in
`params._meta` only, never in an HTTP `traceparent` header. Its instrumentation is
process-global (it wraps the SDK's transport before `mcp` is imported), so it runs in a
process of its own:

  python instrumented_client.py --url http://127.0.0.1:10000/mcp --otlp http://127.0.0.1:4318/v1/traces

prints one JSON line: {"library", "trace_id", "root_span_id", "session_id", "errors", "http"}.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--otlp", required=True, help="OTLP/HTTP traces URL")
    ap.add_argument("--mode", choices=["session", "sessionless"], default="session")
    ap.add_argument("--steps", default="get_weather")
    args = ap.parse_args()

    # The tracer provider and the instrumentation first: `mcp` must not be imported yet.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from openinference.instrumentation.mcp import MCPInstrumentor

    provider = TracerProvider(resource=Resource.create({"service.name": "mcp-client"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.otlp, timeout=5)))
    trace.set_tracer_provider(provider)
    MCPInstrumentor().instrument(tracer_provider=provider)

    import mcp_client  # noqa: E402  (after the instrumentation, on purpose)

    mcp_client._PROVIDER = provider  # the client's setup_otel() keeps this one
    report = mcp_client.run(args.url, args.mode, otel=True, steps=args.steps.split(","))
    provider.force_flush()
    print(json.dumps({
        "library": f"openinference-instrumentation-mcp {importlib.metadata.version('openinference-instrumentation-mcp')}",
        "trace_id": report["trace_id"],
        "root_span_id": report["root_span_id"],
        "session_id": report["session_id"],
        "errors": report["errors"],
        "http": report["http"],
    }))
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
