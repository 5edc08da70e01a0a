//! Stage 5: names and attributes for Envoy's span, as filter state (`wasm.<key>`) that
//! the HCM's `tracing.operation` and `custom_tags` read when the span ends. Each key is a
//! host call and a filter-state object on the hot path, so only what Envoy cannot say
//! itself is written.

use super::{Exchange, Host};
use crate::core::jsonrpc::Message;
use crate::core::span::{each_request_attribute, keys, Outcome, Target};

impl Exchange {
    /// Request-side tags: name and attributes of the first message (a batch also gets its
    /// size; with own spans every message gets its own span).
    pub(super) fn tag_request(&mut self, first: &Message, host: &mut impl Host) {
        let Some(op) = self.operations.first() else { return };
        host.set_property(keys::SPAN_NAME, &op.name);
        each_request_attribute(first, &self.request_facts(), &mut |key, value| {
            // Not as filter state: the session was published in the header phase (Envoy
            // tags `session.id` from it too), and the Envoy config tags `network.*` (the
            // constants, and the version from `request.protocol` with `%CEL(…)%`) and the
            // request id (from the x-request-id header) itself.
            if !matches!(
                key,
                keys::MCP_SESSION_ID
                    | keys::SESSION_ID
                    | keys::REQUEST_ID
                    | keys::NETWORK_PROTOCOL_NAME
                    | keys::NETWORK_TRANSPORT
                    | keys::NETWORK_PROTOCOL_VERSION
            ) {
                host.set_property(key, &value);
            }
        });
        self.named = true;
        if self.batch {
            host.set_property(keys::BATCH_SIZE, &self.operations.len().to_string());
        }
    }

    /// Name and attributes from the 2026-07-28 `Mcp-Method`/`Mcp-Name` headers, for an
    /// operation whose body is not read.
    pub(super) fn tag_from_mirrored_headers(&mut self, host: &mut impl Host) {
        let Some(head) = &self.head else { return };
        let Some(method) = head.mirrored_method.as_deref() else { return };
        let target = Target { method, target: head.mirrored_name.as_deref() };
        host.set_property(keys::SPAN_NAME, &target.span_name(self.config.record_resource_uri));
        self.named = true;
        target.each_attribute(self.config.record_resource_uri, &mut |key, value| host.set_property(key, &value));
    }

    /// A GET stream or a DELETE is named by its verb and path.
    pub(super) fn tag_transport_operation(&mut self, host: &mut impl Host) {
        let Some(head) = &self.head else { return };
        let verb = match head.transport {
            super::classify::Transport::Stream => "GET",
            super::classify::Transport::SessionEnd => "DELETE",
            super::classify::Transport::Post => return,
        };
        host.set_property(keys::SPAN_NAME, &format!("{verb} {}", head.path_only()));
        log::debug!("{} {verb} {}", self.log_prefix(), head.path_only());
        self.named = true;
    }

    /// A response Envoy made itself (no route, upstream unreachable, a timeout, a 413…)
    /// never reaches the paired upstream instance, so the edge instance tags it:
    /// `error.type` is the status, and the name comes from `Mcp-Method`/`Mcp-Name` when
    /// the client sent them (the body may not even have arrived). A response the paired
    /// upstream instance saw costs no host call here, others one (their status).
    pub(super) fn tag_local_reply(&mut self, host: &mut impl Host) {
        // The paired upstream instance noted that the answer came from upstream: nothing
        // to ask Envoy.
        if self.identity.request_id.as_deref().is_some_and(|id| host.with_upstream_answers(|answers| answers.take(id))) {
            return;
        }
        // The status first: a header read costs less than the `response.code_details`
        // property, and only an error status can be a reply worth tagging.
        let status = host.response_header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let outcome = Outcome::from_http_status(status);
        if !outcome.is_error() || host.response_code_details().is_none_or(|details| details == "via_upstream") {
            return;
        }
        self.tag_from_mirrored_headers(host);
        for (key, value) in outcome.attributes() {
            host.set_property(key, &value.as_text());
        }
        log::debug!("{} Envoy answered {status} itself", self.log_prefix());
    }

    /// The first operation's outcome and the SSE counts, on Envoy's span. Published as
    /// soon as the answer is seen, not only at the end of the stream: a client that got
    /// its answer may reset the stream before the end, and filter state set after that
    /// (in `on_log`) no longer reaches the span.
    pub(super) fn publish_response(&mut self, host: &mut impl Host) {
        let response = &mut self.response;
        if !response.outcome_published {
            let first = self.operations.first().and_then(|op| op.outcome.clone());
            let outcome = first.or_else(|| response.finished.then(|| Outcome::from_http_status(response.status)));
            if let Some(outcome) = outcome {
                for (key, value) in outcome.attributes() {
                    host.set_property(key, &value.as_text());
                }
                response.outcome_published = true;
            }
        }
        let (seen, published) = (response.sse, response.published_sse);
        if seen.events > published.events {
            host.set_property(keys::SSE_EVENTS, &seen.events.to_string());
        }
        if seen.notifications > published.notifications {
            host.set_property(keys::SSE_NOTIFICATIONS, &seen.notifications.to_string());
        }
        if seen.requests > published.requests {
            host.set_property(keys::SSE_REQUESTS, &seen.requests.to_string());
        }
        response.published_sse = seen;
    }
}
