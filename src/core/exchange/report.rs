//! Stage 7: what is reported when the exchange ends: counters, the duration, and the
//! filter's own spans.

use super::{Exchange, Host};
use crate::core::metrics::{Counter, ErrorClass};
use crate::core::otlp::{keep_span, SpanKind, SpanRecord};
use crate::core::span::{keys, Value, TOOL_ERROR};

impl Exchange {
    /// Counts SSE traffic and each failed operation by the class of its error.
    pub(super) fn count_outcomes(&self, host: &mut impl Host) {
        if self.response.sse.events > 0 {
            host.add(Counter::SseEvents, self.response.sse.events);
        }
        for op in &self.operations {
            let Some(outcome) = op.outcome.as_ref().filter(|o| o.is_error()) else { continue };
            let class = match outcome.error_type.as_deref() {
                Some(TOOL_ERROR) => ErrorClass::Tool,
                _ if outcome.status_code.is_some() => ErrorClass::JsonRpc,
                _ => ErrorClass::Http,
            };
            host.increment(Counter::Error(class));
            log::debug!("{} {} failed: error.type={}", self.log_prefix(), op.name, outcome.error_type.as_deref().unwrap_or(""));
        }
    }

    /// The stream is over: record the duration and export the own spans.
    pub(super) fn report(&mut self, host: &mut impl Host) {
        self.finish_response(host);
        let now = host.now_unix_nanos();
        if !self.operations.is_empty() {
            host.record_duration_ms(now.saturating_sub(self.started_ns) / 1_000_000);
        }
        let batch_size = self.batch.then_some(self.operations.len() as i64);
        let sse = self.response.sse;
        for op in std::mem::take(&mut self.operations) {
            let Some(ctx) = op.own_span else { continue };
            let outcome = op.outcome.unwrap_or_default();
            if !keep_span(ctx.parent_sampled, ctx.flags & 1 == 1, outcome.is_error()) {
                continue;
            }
            let mut attributes = op.attributes;
            attributes.extend(outcome.attributes());
            if sse.events > 0 {
                attributes.push((keys::SSE_EVENTS, Value::Int(sse.events)));
                attributes.push((keys::SSE_NOTIFICATIONS, Value::Int(sse.notifications)));
                attributes.push((keys::SSE_REQUESTS, Value::Int(sse.requests)));
            }
            if let Some(size) = batch_size {
                attributes.push((keys::BATCH_SIZE, Value::Int(size)));
            }
            let error = outcome.is_error().then(|| outcome.message.clone().or(outcome.error_type.clone()).unwrap_or_default());
            host.emit_span(SpanRecord {
                trace_id: ctx.trace_id,
                span_id: ctx.span_id,
                parent_span_id: ctx.parent_span_id,
                name: op.name,
                kind: SpanKind::Client,
                start_unix_nano: self.started_ns,
                end_unix_nano: now,
                attributes,
                links: ctx.link.into_iter().collect(),
                error,
            });
        }
    }
}
