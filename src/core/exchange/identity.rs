//! Stage 2: who the request is. The request id and the session are resolved once, by the
//! instance at the edge (the HCM chain), and published for the other; trace headers are
//! validated and what is invalid removed.

use super::classify::{RequestHead, Transport};
use super::{now_secs, Host};
use crate::core::baggage::validate_baggage;
use crate::core::config::Config;
use crate::core::headers::{self, HeaderList};
use crate::core::ids::{resolve_request_id, RequestIdSource};
use crate::core::metrics::Counter;
use crate::core::propagation::HeaderContext;
use crate::core::session::{resolve_session, Session, SessionOrigin, MAX_SESSION_ID_LEN};
use crate::core::span::keys;
use crate::core::text::is_visible_ascii;
use crate::core::trace_context::{validate_tracestate, TraceParent};

/// A session id as published by the edge instance may be a bearer hash, longer than the
/// ids clients send.
const MAX_PUBLISHED_SESSION_LEN: usize = MAX_SESSION_ID_LEN + 32;

#[derive(Debug, Default)]
pub(super) struct Identity {
    pub request_id: Option<String>,
    pub session: Option<Session>,
    /// The request carried a valid `Mcp-Session-Id` (so a 404 may be the session's expiry).
    pub carried_session_header: bool,
    /// The request's trace context, validated.
    pub trace: HeaderContext,
}

impl Identity {
    /// Keeps a valid incoming request id, else mints one and sets it on the request.
    pub fn resolve_request_id(&mut self, request: &HeaderList, config: &Config, host: &mut impl Host) {
        let incoming = request.get(&config.request_id_header);
        if let Some((id, source)) = resolve_request_id(incoming) {
            if source == RequestIdSource::Generated || incoming != Some(id.as_str()) {
                host.set_request_header(&config.request_id_header, Some(&id));
            }
            self.request_id = Some(id);
        }
    }

    /// The id the edge instance resolved and set on the request.
    pub fn take_request_id(&mut self, request: &HeaderList, config: &Config) {
        self.request_id = request.get(&config.request_id_header).map(str::to_string);
    }

    /// The session from the configured sources; a client-side id may lead to the session
    /// a server assigned earlier. Published as filter state for the other instance and
    /// Envoy's span. A DELETE ends it.
    pub fn resolve_session(&mut self, request: &HeaderList, head: &RequestHead, config: &Config, host: &mut impl Host) {
        let get = |name: &str| request.get(name);
        self.carried_session_header = get(headers::MCP_SESSION_ID).is_some_and(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN));
        self.session = resolve_session(&config.session_sources, get, &head.path, false);
        if let Some(known) = self.session.as_ref().filter(|s| s.origin != SessionOrigin::Header || !self.carried_session_header) {
            // A source other than Mcp-Session-Id (query, bearer hash, X-Session-ID…) may be
            // tied to a server-assigned session by an earlier initialize.
            if let Some(server_id) = config.sessions.recall(host, now_secs(host), &known.id) {
                let client_key = Some(known.id.clone());
                self.session = Some(Session { id: server_id, origin: SessionOrigin::Remembered, client_key });
            }
        }
        if self.session.is_none() && config.generate_session_id {
            self.session = resolve_session(&[], |_| None, "", true);
        }
        if self.session.is_none() {
            host.increment(Counter::SessionNone);
        }
        // Published in the header phase: the upstream instance reads it in its own, and the
        // client-side id of a recalled session in case the request is a new `initialize`
        // (the standalone instance keeps both itself).
        if let Some(s) = &self.session {
            host.set_property(keys::MCP_SESSION_ID, &s.id);
            if let Some(key) = s.client_key.as_deref().filter(|_| !config.role.duties().mcp) {
                host.set_property(keys::SESSION_CLIENT_KEY, key);
            }
            if head.transport == Transport::SessionEnd {
                config.sessions.forget(host, now_secs(host), &s.id);
            }
        }
    }

    /// The session the edge instance resolved: from its filter state, or (with
    /// `session_from_mcp_header`, where the edge's first source is `Mcp-Session-Id`, a
    /// value it never remaps) from that header, which saves a host call.
    pub fn take_session(&mut self, request: &HeaderList, config: &Config, host: &mut impl Host) {
        let header = request.get(headers::MCP_SESSION_ID).filter(|s| is_visible_ascii(s, MAX_SESSION_ID_LEN));
        self.carried_session_header = header.is_some();
        self.session = match header.filter(|_| config.session_from_mcp_header) {
            Some(id) => Some(Session::new(id.to_string(), SessionOrigin::Header)),
            None => host
                .property(keys::MCP_SESSION_ID)
                .filter(|s| is_visible_ascii(s, MAX_PUBLISHED_SESSION_LEN))
                .map(|s| Session::new(s, SessionOrigin::Edge)),
        };
    }

    /// An `initialize` starts a new session: it does not continue the one its client-side
    /// id was remembered for. The request is the client-side id's again until the server
    /// assigns the new session (which that id will then lead to).
    pub fn restart_recalled_session(&mut self, host: &mut impl Host) {
        let key = match &self.session {
            Some(Session { origin: SessionOrigin::Remembered, client_key, .. }) => client_key.clone(),
            // Resolved by the edge instance, which says when it recalled the session.
            Some(Session { origin: SessionOrigin::Edge, .. }) => host.property(keys::SESSION_CLIENT_KEY),
            _ => None,
        };
        if let Some(key) = key.filter(|k| is_visible_ascii(k, MAX_PUBLISHED_SESSION_LEN)) {
            host.set_property(keys::MCP_SESSION_ID, &key);
            self.session = Some(Session::new(key, SessionOrigin::Edge));
        }
    }
}

/// The request's trace context, validated by the W3C rules: one `traceparent`; the
/// `tracestate` headers read as one list, and only beside a valid `traceparent`. What is
/// invalid is removed from the request (a host call only then).
pub(super) fn clean_trace_headers(request: &HeaderList, host: &mut impl Host) -> HeaderContext {
    let traceparents = request.count(headers::TRACEPARENT);
    let traceparent = request.get(headers::TRACEPARENT).filter(|_| traceparents == 1).and_then(TraceParent::parse);
    if traceparents > 0 && traceparent.is_none() {
        host.set_request_header(headers::TRACEPARENT, None);
    }
    let tracestate = request.joined(headers::TRACESTATE);
    let valid_state = traceparent.and(tracestate.as_deref().and_then(validate_tracestate)).map(str::to_string);
    if tracestate.is_some() && valid_state.is_none() {
        host.set_request_header(headers::TRACESTATE, None);
    }
    if request.joined(headers::BAGGAGE).is_some_and(|b| validate_baggage(&b).is_none()) {
        host.set_request_header(headers::BAGGAGE, None);
    }
    HeaderContext { traceparent, tracestate: valid_state }
}
