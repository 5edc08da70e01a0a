//! Which session a request belongs to.
//!
//! Sources are tried in the configured order (by default `Mcp-Session-Id`,
//! `X-Session-ID`, `X-Correlation-ID`, the `session_id` query parameter, then a bearer
//! token); the first valid value wins. Invalid values are skipped, never forwarded.
//! A bearer token is only ever used through a one-way hash: the token itself does not
//! leave this module.

use crate::core::config::SessionSource;
use crate::core::ids::generate_id;
use crate::core::text::{is_visible_ascii, push_hex};
use sha2::{Digest, Sha256};

/// Longest session id accepted from any source.
pub const MAX_SESSION_ID_LEN: usize = 256;

/// Where the session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOrigin {
    Header,
    Query,
    BearerHash,
    Generated,
    /// Assigned by the MCP server in the `initialize` response.
    Server,
    /// Remembered: a client-side id that earlier led to this server-assigned session.
    Remembered,
    /// Resolved by the edge (HCM) instance, read from its filter state.
    Edge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub origin: SessionOrigin,
    /// For a session recalled from memory: the client-side id it was recalled by.
    pub client_key: Option<String>,
}

impl Session {
    pub fn new(id: String, origin: SessionOrigin) -> Session {
        Session { id, origin, client_key: None }
    }
}

/// Resolves the session of a request. `header` looks a request header up by lowercase
/// name; `path` is the `:path` pseudo-header, query string included.
pub fn resolve_session<'h>(
    sources: &[SessionSource],
    header: impl Fn(&str) -> Option<&'h str>,
    path: &str,
    generate: bool,
) -> Option<Session> {
    for source in sources {
        let found = match source {
            SessionSource::Header(name) => {
                header(name).filter(|v| is_visible_ascii(v, MAX_SESSION_ID_LEN)).map(|v| (v.to_string(), SessionOrigin::Header))
            }
            SessionSource::Query(name) => {
                query_param(path, name).filter(|v| is_visible_ascii(v, MAX_SESSION_ID_LEN)).map(|v| (v.to_string(), SessionOrigin::Query))
            }
            SessionSource::BearerHash => header(crate::core::headers::AUTHORIZATION)
                .and_then(bearer_token)
                .map(|t| (bearer_session_id(t), SessionOrigin::BearerHash)),
        };
        if let Some((id, origin)) = found {
            return Some(Session::new(id, origin));
        }
    }
    if generate {
        return generate_id().map(|id| Session::new(id, SessionOrigin::Generated));
    }
    None
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A stable, one-way session id for a bearer token: the first 16 bytes of its SHA-256,
/// as hex, behind a prefix that says what it is. The same token always maps to the same
/// session; the token cannot be recovered from it.
pub fn bearer_session_id(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut id = String::with_capacity(14 + 32);
    id.push_str("bearer-sha256:");
    push_hex(&mut id, digest.get(..16).unwrap_or_default());
    id
}

/// The raw value of query parameter `name` in `path` (first occurrence), not decoded:
/// session ids are visible ASCII and are compared as the client sent them.
pub fn query_param<'p>(path: &'p str, name: &str) -> Option<&'p str> {
    let query = path.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use std::collections::HashMap;

    fn resolve(headers: &[(&str, &str)], path: &str) -> Option<Session> {
        let map: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sources = Config::parse(b"{}").unwrap().session_sources;
        resolve_session(&sources, |name| map.get(name).map(String::as_str), path, true)
    }

    #[test]
    fn follows_the_documented_order() {
        let all =
            [("mcp-session-id", "mcp-1"), ("x-session-id", "xs-1"), ("x-correlation-id", "xc-1"), ("authorization", "Bearer secret-token")];
        assert_eq!(resolve(&all, "/mcp?session_id=q-1").unwrap().id, "mcp-1");
        assert_eq!(resolve(&all[1..], "/mcp?session_id=q-1").unwrap().id, "xs-1");
        assert_eq!(resolve(&all[2..], "/mcp?session_id=q-1").unwrap().id, "xc-1");
        let q = resolve(&all[3..], "/messages/?x=1&session_id=q-1").unwrap();
        assert_eq!((q.id.as_str(), q.origin), ("q-1", SessionOrigin::Query));
        let b = resolve(&all[3..], "/mcp").unwrap();
        assert_eq!(b.origin, SessionOrigin::BearerHash);
        let g = resolve(&[], "/mcp").unwrap();
        assert_eq!(g.origin, SessionOrigin::Generated);
        assert_eq!(g.id.len(), 32);
    }

    #[test]
    fn invalid_values_are_skipped() {
        let s = resolve(&[("mcp-session-id", "bad\r\nvalue"), ("x-session-id", "ok-2")], "/mcp").unwrap();
        assert_eq!(s.id, "ok-2");
        let long = "a".repeat(MAX_SESSION_ID_LEN + 1);
        assert_eq!(resolve(&[("mcp-session-id", &long)], "/mcp").unwrap().origin, SessionOrigin::Generated);
        assert_eq!(resolve(&[("x-session-id", "")], "/mcp?session_id=").unwrap().origin, SessionOrigin::Generated);
        assert_eq!(resolve(&[("authorization", "Basic abc")], "/mcp").unwrap().origin, SessionOrigin::Generated);
        assert_eq!(resolve(&[("authorization", "Bearer ")], "/mcp").unwrap().origin, SessionOrigin::Generated);
    }

    #[test]
    fn bearer_token_is_only_ever_hashed() {
        let s = resolve(&[("authorization", "bearer my-secret-token")], "/mcp").unwrap();
        assert!(!s.id.contains("my-secret-token"));
        assert!(s.id.starts_with("bearer-sha256:"));
        assert_eq!(s.id, bearer_session_id("my-secret-token"), "stable for the same token");
        assert_ne!(s.id, bearer_session_id("other-token"));
        // sha256("my-secret-token"), first 16 bytes
        let full = hex::encode(Sha256::digest(b"my-secret-token"));
        assert_eq!(&s.id["bearer-sha256:".len()..], &full[..32]);
    }

    #[test]
    fn query_param_parsing() {
        assert_eq!(query_param("/m?session_id=a&b=c", "session_id"), Some("a"));
        assert_eq!(query_param("/m?b=c&session_id=a#frag", "session_id"), Some("a"));
        assert_eq!(query_param("/m?xsession_id=a", "session_id"), None);
        assert_eq!(query_param("/m", "session_id"), None);
        assert_eq!(query_param("/m?session_id", "session_id"), None);
    }
}
