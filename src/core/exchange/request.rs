//! Stage 4: the whole request body is here. Recognise its JSON-RPC messages, plan the
//! trace context each one carries to the server, and write `params._meta` by splicing.

use super::{Exchange, Host};
use crate::core::config::OwnSpanMode;
use crate::core::headers;
use crate::core::ids::random_unit;
use crate::core::jsonrpc::{parse_body, Body, Message, MessageKind, Rejection, RequestId};
use crate::core::log_context::{self, MAX_LOGGED_LEN};
use crate::core::meta_splice::{splice_head, MetaWrite};
use crate::core::metrics::{method_index, Counter, PassReason, METHODS};
use crate::core::otlp::root_sampled;
use crate::core::propagation::{auto_parent_mode, plan, OwnSpanContext, ParentMode};
use crate::core::span::{request_attributes, span_name, Attributes, Outcome, RequestFacts, MAX_ATTRIBUTE_LEN};
use crate::core::text::bounded_printable;
use std::borrow::Cow;

/// One JSON-RPC message of the request, as a span-to-be. `attributes` are filled only
/// for an own span.
#[derive(Debug, Clone)]
pub(super) struct Operation {
    /// Borrowed from [`METHODS`] when known (no copy for the usual methods).
    pub method: Option<Cow<'static, str>>,
    pub id: Option<RequestId<'static>>,
    pub name: String,
    pub attributes: Attributes,
    pub own_span: Option<OwnSpanContext>,
    pub outcome: Option<Outcome>,
}

impl Exchange {
    pub(super) fn read_request(&mut self, body: &[u8], host: &mut impl Host) {
        let parsed = match parse_body(body) {
            Ok(parsed) => parsed,
            Err(rejection) => {
                let reason = match rejection {
                    Rejection::Malformed => PassReason::Malformed,
                    Rejection::NotJsonRpc => PassReason::NotJsonRpc,
                };
                host.increment(Counter::Passthrough(reason));
                log::debug!("{} POST body is not JSON-RPC ({reason:?}), passed through", self.log_prefix());
                self.head = None;
                return;
            }
        };
        self.batch = matches!(parsed, Body::Batch(_));
        let messages = parsed.messages();
        if messages.iter().any(|m| m.method.as_deref() == Some("initialize")) {
            self.identity.restart_recalled_session(host);
        }
        let mut writes: Vec<MetaWrite> = Vec::with_capacity(messages.len());
        self.operations.reserve_exact(messages.len());
        for message in messages {
            let method_index = method_index(message.method.as_deref());
            host.increment(Counter::Request(method_index));
            if let Some(tool) = message.target.as_deref().filter(|_| message.method.as_deref() == Some("tools/call")) {
                if self.config.tool_metrics.iter().any(|t| t == tool) {
                    host.increment_tool(tool);
                }
            }
            self.log_message(message);
            let mut op = Operation {
                method: message
                    .method
                    .as_deref()
                    .map(|m| METHODS.get(method_index).map_or_else(|| Cow::Owned(m.to_string()), |known| Cow::Borrowed(*known))),
                id: message.id.as_ref().map(RequestId::to_owned_id),
                name: span_name(message, self.config.record_resource_uri),
                attributes: Attributes::new(),
                own_span: None,
                outcome: None,
            };
            let mut write = MetaWrite::default();
            if message.kind != MessageKind::Response {
                let mode = self.parent_mode(message);
                if self.config.meta.trace_context || mode == ParentMode::OwnSpan {
                    // A draw only where it can matter: a new root of an own span.
                    let sampled = mode != ParentMode::OwnSpan || root_sampled(self.config.own_spans.root_sample_ratio, random_unit());
                    let p = plan(mode, &self.identity.trace, &message.meta_context, sampled);
                    write = p.meta;
                    op.own_span = p.own_span;
                }
                if let (Some(key), Some(id)) = (&self.config.meta.request_id_key, &self.identity.request_id) {
                    write.set(key, id.as_str());
                }
                if let (Some(key), Some(s)) = (&self.config.meta.session_id_key, &self.identity.session) {
                    write.set(key, s.id.as_str());
                }
            }
            // Owned attributes only for a span the filter reports itself; Envoy's span
            // is tagged from the message as it is (`tag_request`).
            if op.own_span.is_some() {
                if let Some(head) = self.head.as_mut().filter(|h| h.http_version.is_none()) {
                    head.http_version = host.request_protocol();
                }
                op.attributes = request_attributes(message, &self.request_facts());
            }
            writes.push(write);
            self.operations.push(op);
        }
        let targets: Vec<_> = messages.iter().zip(writes.iter()).map(|(m, w)| (&m.layout, w)).collect();
        let (head, skipped) = splice_head(body, &targets);
        if skipped > 0 {
            host.add(Counter::SpliceSkipped, skipped as i64);
        }
        if let Some(head) = head {
            host.replace_request_body_head(head.replaces, &head.bytes);
            // Only a length that was there, on headers still held, is corrected: a chunked
            // (or HTTP/2) request stays without one.
            if self.config.hold_request_headers && self.head.as_ref().is_some_and(|h| h.had_content_length) {
                let new_len = body.len() - head.replaces.min(body.len()) + head.bytes.len();
                host.set_request_header(headers::CONTENT_LENGTH, Some(&new_len.to_string()));
            }
        }
        if let Some(first) = messages.first() {
            self.tag_request(first, host);
        }
    }

    /// Whose span the server continues for this message.
    fn parent_mode(&self, message: &Message) -> ParentMode {
        match self.config.own_spans.mode {
            OwnSpanMode::Always => ParentMode::OwnSpan,
            OwnSpanMode::Off if self.duties.sees_envoy_span => ParentMode::EnvoySpan,
            OwnSpanMode::Off => ParentMode::Forward,
            OwnSpanMode::Auto => auto_parent_mode(self.duties.sees_envoy_span, &self.identity.trace, &message.meta_context),
        }
    }

    /// What the request side knows besides the message, for its attributes.
    pub(super) fn request_facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            request_id: self.identity.request_id.as_deref(),
            session_id: self.identity.session.as_ref().map(|s| s.id.as_str()),
            protocol_version_header: self.head.as_ref().and_then(|h| h.protocol_version.as_deref()),
            http_version: self.head.as_ref().and_then(|h| h.http_version.as_deref()),
            record_resource_uri: self.config.record_resource_uri,
        }
    }

    /// The body is too large to read: it passes through untouched and is counted. A
    /// 2026-07-28 client mirrors the method and name into `Mcp-Method`/`Mcp-Name`; with
    /// those the span is still named and tagged.
    pub(super) fn give_up_body(&mut self, host: &mut impl Host) {
        host.increment(Counter::Passthrough(PassReason::OverLimit));
        log::debug!("{} request body over max_body_bytes ({}), passed through", self.log_prefix(), self.config.max_body_bytes);
        self.tag_from_mirrored_headers(host);
    }

    fn log_message(&self, message: &Message) {
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let method = message.method.as_deref().unwrap_or("response");
        let target = message.target.as_deref().map(|t| format!(" {}", bounded_printable(t, MAX_ATTRIBUTE_LEN))).unwrap_or_default();
        let id = message.id.as_ref().map(|i| format!(" id={}", bounded_printable(i.as_str(), MAX_LOGGED_LEN))).unwrap_or_default();
        if message.method.as_deref() == Some("tools/call") && self.config.log_argument_keys {
            log::debug!(
                "{} {method}{target}{id} argument_keys={}",
                self.log_prefix(),
                log_context::argument_keys(&message.argument_keys())
            );
        } else {
            log::debug!("{} {method}{target}{id}", self.log_prefix());
        }
    }
}
