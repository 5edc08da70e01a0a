"""Issue 11: the README's checklist for your own Envoy is complete. envoy/minimal.yaml holds
exactly what it lists; a client that sends a sampled `traceparent` and no `x-request-id`
(which a config without `use_request_id_for_trace_sampling: false` leaves untraced) gets
the MCP span on its trace, with the server's span under it."""

from __future__ import annotations

import httpx
import pytest
import yaml

import mcp_client
from conftest import (
    MCP_URL,
    REPO,
    assert_mcp_attributes,
    assert_proxy_span_between,
    header,
    new_traceparent,
    server_span,
    start_envoy,
)


@pytest.fixture(scope="module")
def minimal(server, sink):
    envoy = start_envoy(yaml.safe_load((REPO / "envoy" / "minimal.yaml").read_text()))
    yield envoy
    envoy.stop()


def test_a_client_with_a_sampled_traceparent_and_no_request_id_is_traced(minimal, fresh, server, sink):
    traceparent, trace_id = new_traceparent()
    report = mcp_client.run(MCP_URL, "session", otel=False, headers={"traceparent": traceparent}, steps=["get_weather"])
    assert not report["errors"], report["errors"]
    call = next(ex for ex in report["http"] if (ex["request_json"] or {}).get("method") == "tools/call")
    assert header(call["request_headers"], "x-request-id") is None
    proxy = assert_proxy_span_between(sink, traceparent.split("-")[2], server_span(sink, trace_id, "tools/call get_weather"),
                                      "tools/call get_weather")
    assert proxy["service_name"] == "envoy-mcp-gateway"
    assert_mcp_attributes(proxy, "tools/call", "get_weather", session=report["session_id"])
    assert proxy["attributes"]["mcp_trace.request_id"] == header(call["response_headers"], "x-request-id")


def test_the_minimal_file_names_every_checklist_item():
    """The checklist in the README and the file stay one list."""
    readme = (REPO / "README.md").read_text()
    minimal = (REPO / "envoy" / "minimal.yaml").read_text()
    for setting in ("use_request_id_for_trace_sampling: false", "generate_request_id: false", "preserve_external_request_id: true",
                    "always_set_request_id_in_response: true", "upstream_http_filters", "vm_id: mcp_trace", "FAIL_RELOAD",
                    "operation:", "custom_tags:", "idle_timeout: 4s", "timeout: 0s", "stream_idle_timeout: 0s",
                    "session_from_mcp_header"):
        assert setting in minimal, setting
        assert setting.split(":")[0] in readme, f"the README's checklist does not name {setting}"
