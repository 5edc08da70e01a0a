//! Which trace context the MCP server must continue, and what goes into `_meta`.
//!
//! The rules (OpenTelemetry MCP conventions, SEP-414, and the FastMCP span-link issue):
//! - A valid `params._meta` context is the MCP parent; the HTTP context becomes a link.
//! - Invalid values are dropped: never forwarded, in `_meta` or in headers.
//! - The proxy inserts a span of its own between the client and the server only when
//!   that span is reported: Envoy's span (seen as the injected `traceparent` in the
//!   router's upstream filter chain) or the filter's own span.

use crate::core::baggage::validate_baggage;
use crate::core::jsonrpc::MetaContext;
use crate::core::meta_splice::{KeyWrite, MetaWrite};
use crate::core::trace_context::{new_span_id, new_trace_id, validate_tracestate, TraceParent};

/// W3C trace flags defined today: sampled (Level 1) and random (Level 2).
const KNOWN_TRACE_FLAGS: u8 = 0x03;

/// Who the server's parent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentMode {
    /// Forward the client's context unchanged (no reported proxy span to insert).
    Forward,
    /// The HTTP `traceparent` is Envoy's own span (router upstream filter): make it the
    /// server's parent when it is on the same trace as the MCP context.
    EnvoySpan,
    /// Mint a span of our own, reported through OTLP, and make it the parent.
    OwnSpan,
}

/// The trace context of the HTTP request, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderContext {
    pub traceparent: Option<TraceParent>,
    pub tracestate: Option<String>,
}

impl HeaderContext {
    #[cfg(test)]
    pub fn from_headers(traceparent: Option<&str>, tracestate: Option<&str>) -> HeaderContext {
        let traceparent = traceparent.and_then(TraceParent::parse);
        // tracestate is meaningless without a valid traceparent (W3C).
        let tracestate = traceparent.and(tracestate.and_then(validate_tracestate)).map(str::to_string);
        HeaderContext { traceparent, tracestate }
    }
}

/// The context of the span the filter reports itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnSpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The parent's sampled flag, when there was a parent.
    pub parent_sampled: Option<bool>,
    pub flags: u8,
    /// The HTTP-level context, linked when the parent came from `_meta`.
    pub link: Option<([u8; 16], [u8; 8])>,
}

/// What to write into one message's `_meta`, and the own span, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub meta: MetaWrite<'static>,
    pub own_span: Option<OwnSpanContext>,
    /// The context the server will continue (for logs and tests).
    pub server_parent: Option<TraceParent>,
}

/// The valid `traceparent` of a message's `params._meta`, if it has one.
pub fn meta_traceparent(meta: &MetaContext) -> Option<TraceParent> {
    meta.traceparent.as_ref().and_then(|v| v.as_ref().ok()).and_then(|v| TraceParent::parse(v))
}

/// Whose span the server continues when own spans are reported "auto": the filter's own,
/// exactly when Envoy's span cannot be the server's parent on the client's trace. Envoy's
/// span is visible only to the router's upstream instance, as the `traceparent` it
/// injected; no header there means Envoy started no span; a `_meta` context on another
/// trace means the client's MCP trace is not Envoy's.
pub fn auto_parent_mode(sees_envoy_span: bool, header: &HeaderContext, meta: &MetaContext) -> ParentMode {
    let Some(envoy) = header.traceparent.filter(|_| sees_envoy_span) else { return ParentMode::OwnSpan };
    match meta_traceparent(meta) {
        Some(client) if client.trace_id != envoy.trace_id => ParentMode::OwnSpan,
        _ => ParentMode::EnvoySpan,
    }
}

/// Plans the `_meta` trace keys for one message. `root_sampled` decides the sampled flag
/// of a new root trace (own spans with no parent).
pub fn plan(mode: ParentMode, header: &HeaderContext, meta: &MetaContext, root_sampled: bool) -> Plan {
    let mut write = MetaWrite::default();
    let meta_tp = meta_traceparent(meta);
    let meta_ts = meta_tp.and(meta.tracestate.as_ref().and_then(|v| v.as_ref().ok()).and_then(|v| validate_tracestate(v)));
    if let Some(Err(())) | Some(Ok(_)) = &meta.baggage {
        let valid = matches!(&meta.baggage, Some(Ok(b)) if validate_baggage(b).is_some());
        write.keys.push(("baggage", if valid { KeyWrite::Keep } else { KeyWrite::Remove }));
    }
    let meta_tp_present = meta.traceparent.is_some();
    let meta_ts_present = meta.tracestate.is_some();
    // The traceparent/tracestate pair to write, or keep what `_meta` has.
    let set_pair = |write: &mut MetaWrite<'static>, tp: TraceParent, ts: Option<&str>| {
        write.set("traceparent", tp.to_header());
        match ts {
            Some(ts) => write.set("tracestate", ts.to_string()),
            None if meta_ts_present => write.remove("tracestate"),
            None => {}
        }
    };
    let keep_meta = |write: &mut MetaWrite<'static>| {
        if meta_ts.is_none() && meta_ts_present {
            write.remove("tracestate");
        }
    };
    let drop_invalid_meta = |write: &mut MetaWrite<'static>| {
        if meta_tp_present {
            write.remove("traceparent");
        }
        if meta_ts_present {
            write.remove("tracestate");
        }
    };

    match mode {
        ParentMode::OwnSpan => {
            let (parent, parent_state, from_meta) = match (meta_tp, header.traceparent) {
                (Some(m), _) => (Some(m), meta_ts.map(str::to_string), true),
                (None, Some(h)) => (Some(h), header.tracestate.clone(), false),
                (None, None) => (None, None, false),
            };
            let (Some(span_id), Some(trace_id)) = (new_span_id(), parent.map(|p| Some(p.trace_id)).unwrap_or_else(new_trace_id)) else {
                // No randomness: fall back to forwarding what came in.
                return plan(ParentMode::Forward, header, meta, root_sampled);
            };
            // A span we start carries only the flags W3C defines (sampled, random): the
            // others are reserved and must be zero in what we create.
            let flags = parent.map_or(if root_sampled { 0x01 } else { 0x00 }, |p| p.flags & KNOWN_TRACE_FLAGS);
            let own = TraceParent { trace_id, span_id, flags };
            set_pair(&mut write, own, parent_state.as_deref());
            let link = if from_meta { header.traceparent.filter(|h| Some(*h) != parent).map(|h| (h.trace_id, h.span_id)) } else { None };
            Plan {
                meta: write,
                own_span: Some(OwnSpanContext {
                    trace_id,
                    span_id,
                    parent_span_id: parent.map(|p| p.span_id),
                    parent_sampled: parent.map(|p| p.sampled()),
                    flags,
                    link,
                }),
                server_parent: Some(own),
            }
        }
        ParentMode::EnvoySpan => match (meta_tp, header.traceparent) {
            (Some(m), Some(h)) if m.trace_id != h.trace_id => {
                // The client's MCP trace differs from Envoy's: keep the client's parent.
                keep_meta(&mut write);
                Plan { meta: write, own_span: None, server_parent: Some(m) }
            }
            (m, Some(h)) => {
                let state = header.tracestate.as_deref().or(if m.is_some() { meta_ts } else { None });
                set_pair(&mut write, h, state);
                Plan { meta: write, own_span: None, server_parent: Some(h) }
            }
            (Some(m), None) => {
                keep_meta(&mut write);
                Plan { meta: write, own_span: None, server_parent: Some(m) }
            }
            (None, None) => {
                drop_invalid_meta(&mut write);
                Plan { meta: write, own_span: None, server_parent: None }
            }
        },
        ParentMode::Forward => match (meta_tp, header.traceparent) {
            (Some(m), _) => {
                keep_meta(&mut write);
                Plan { meta: write, own_span: None, server_parent: Some(m) }
            }
            (None, Some(h)) => {
                set_pair(&mut write, h, header.tracestate.as_deref());
                Plan { meta: write, own_span: None, server_parent: Some(h) }
            }
            (None, None) => {
                drop_invalid_meta(&mut write);
                Plan { meta: write, own_span: None, server_parent: None }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    const CLIENT: &str = "00-11111111111111111111111111111111-aaaaaaaaaaaaaaaa-01";
    const ENVOY_SAME_TRACE: &str = "00-11111111111111111111111111111111-bbbbbbbbbbbbbbbb-01";
    const OTHER_TRACE: &str = "00-22222222222222222222222222222222-cccccccccccccccc-01";

    fn meta(tp: Option<&'static str>, ts: Option<&'static str>) -> MetaContext<'static> {
        MetaContext { traceparent: tp.map(|v| Ok(Cow::Borrowed(v))), tracestate: ts.map(|v| Ok(Cow::Borrowed(v))), baggage: None }
    }

    fn set(plan: &Plan, key: &str) -> Option<String> {
        plan.meta.keys.iter().find_map(|(k, w)| match w {
            KeyWrite::Set(v) if *k == key => Some(v.to_string()),
            _ => None,
        })
    }

    fn removed(plan: &Plan, key: &str) -> bool {
        plan.meta.keys.iter().any(|(k, w)| *k == key && *w == KeyWrite::Remove)
    }

    #[test]
    fn forward_copies_header_context_when_meta_has_none() {
        let h = HeaderContext::from_headers(Some(CLIENT), Some("a=b"));
        let p = plan(ParentMode::Forward, &h, &meta(None, None), true);
        assert_eq!(set(&p, "traceparent").as_deref(), Some(CLIENT));
        assert_eq!(set(&p, "tracestate").as_deref(), Some("a=b"));
        assert!(p.own_span.is_none());
    }

    #[test]
    fn meta_context_wins_over_header() {
        let h = HeaderContext::from_headers(Some(OTHER_TRACE), None);
        let p = plan(ParentMode::Forward, &h, &meta(Some(CLIENT), Some("x=y")), true);
        assert!(p.meta.keys.is_empty(), "client's _meta left exactly as it was");
        assert_eq!(p.server_parent, TraceParent::parse(CLIENT));
    }

    #[test]
    fn envoy_span_becomes_parent_on_the_same_trace() {
        let h = HeaderContext::from_headers(Some(ENVOY_SAME_TRACE), None);
        let p = plan(ParentMode::EnvoySpan, &h, &meta(Some(CLIENT), None), true);
        assert_eq!(set(&p, "traceparent").as_deref(), Some(ENVOY_SAME_TRACE));
        // A different trace in _meta: the client's MCP trace is kept.
        let h = HeaderContext::from_headers(Some(OTHER_TRACE), None);
        let p = plan(ParentMode::EnvoySpan, &h, &meta(Some(CLIENT), None), true);
        assert!(set(&p, "traceparent").is_none());
        assert_eq!(p.server_parent, TraceParent::parse(CLIENT));
    }

    #[test]
    fn own_span_is_child_of_meta_and_links_http() {
        let h = HeaderContext::from_headers(Some(OTHER_TRACE), None);
        let p = plan(ParentMode::OwnSpan, &h, &meta(Some(CLIENT), Some("v=1")), true);
        let own = p.own_span.clone().unwrap();
        let client = TraceParent::parse(CLIENT).unwrap();
        assert_eq!(own.trace_id, client.trace_id);
        assert_eq!(own.parent_span_id, Some(client.span_id));
        assert_ne!(own.span_id, client.span_id);
        let other = TraceParent::parse(OTHER_TRACE).unwrap();
        assert_eq!(own.link, Some((other.trace_id, other.span_id)));
        let written = TraceParent::parse(&set(&p, "traceparent").unwrap()).unwrap();
        assert_eq!(written.span_id, own.span_id, "server's parent is the own span");
        assert_eq!(set(&p, "tracestate").as_deref(), Some("v=1"));
    }

    /// "auto": the filter reports its own span exactly when Envoy's cannot be the
    /// server's parent on the client's trace.
    #[test]
    fn auto_reports_an_own_span_only_where_envoys_cannot_be_the_parent() {
        let envoy = HeaderContext::from_headers(Some(ENVOY_SAME_TRACE), None);
        let none = HeaderContext::default();
        let cases = [
            (true, &envoy, meta(None, None), ParentMode::EnvoySpan, "header client, paired"),
            (true, &envoy, meta(Some(CLIENT), None), ParentMode::EnvoySpan, "_meta on Envoy's trace"),
            (true, &envoy, meta(Some(OTHER_TRACE), None), ParentMode::OwnSpan, "_meta on another trace (a _meta-only client)"),
            (true, &envoy, meta(Some("garbage"), None), ParentMode::EnvoySpan, "invalid _meta: Envoy's span replaces it"),
            (true, &none, meta(None, None), ParentMode::OwnSpan, "Envoy started no span"),
            (true, &none, meta(Some(CLIENT), None), ParentMode::OwnSpan, "_meta only, Envoy started none"),
            (false, &envoy, meta(None, None), ParentMode::OwnSpan, "single instance: Envoy's span is not visible"),
            (false, &none, meta(Some(CLIENT), None), ParentMode::OwnSpan, "single instance, _meta client"),
        ];
        for (sees_envoy_span, header, meta, expected, case) in cases {
            assert_eq!(auto_parent_mode(sees_envoy_span, header, &meta), expected, "{case}");
        }
    }

    #[test]
    fn own_span_clears_reserved_flags() {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff";
        let p = plan(ParentMode::OwnSpan, &HeaderContext::default(), &meta(Some(parent), None), true);
        let written = TraceParent::parse(&set(&p, "traceparent").unwrap()).unwrap();
        assert_eq!(written.flags, 0x03, "sampled and random kept, reserved bits zero");
    }

    #[test]
    fn own_span_root_when_nothing_came_in() {
        let p = plan(ParentMode::OwnSpan, &HeaderContext::default(), &meta(None, None), false);
        let own = p.own_span.unwrap();
        assert_eq!(own.parent_span_id, None);
        assert_eq!(own.flags, 0, "root sampling decision is propagated");
    }

    #[test]
    fn invalid_values_are_dropped() {
        let h = HeaderContext::from_headers(Some("00-zz"), Some("a=b"));
        assert_eq!(h, HeaderContext::default(), "no tracestate without a valid traceparent");
        let p = plan(ParentMode::Forward, &h, &meta(Some("garbage"), Some("BAD STATE")), true);
        assert!(removed(&p, "traceparent"));
        assert!(removed(&p, "tracestate"));
        let mut m = meta(Some(CLIENT), Some("BAD STATE"));
        m.baggage = Some(Ok(Cow::Borrowed("not baggage")));
        let p = plan(ParentMode::Forward, &h, &m, true);
        assert!(removed(&p, "tracestate"));
        assert!(removed(&p, "baggage"));
        assert!(!removed(&p, "traceparent"));
    }
}
