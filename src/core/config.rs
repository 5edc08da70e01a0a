//! Plugin configuration: the JSON in the wasm filter's `configuration` field.
//!
//! Every field has a default, so `{}` (or an empty configuration) is a working setup.
//! Anything wrong is refused at load with one message naming the field and the problem;
//! Envoy then refuses the filter instead of running it half-configured.

use crate::core::session_store::SessionStore;
use serde::Deserialize;
use std::fmt;

/// Where this instance of the filter sits, which decides what it does ([`Duties`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Alone in the HCM filter chain (e.g. an Istio sidecar, where no router upstream
    /// filter can be placed): does everything.
    Standalone,
    /// In the HCM chain, paired with an `upstream` instance in the router's
    /// `upstream_http_filters`: resolves the request id and the session at the edge and
    /// publishes them. It reads no body and no response.
    Downstream,
    /// In the router's `upstream_http_filters`, where the `traceparent` Envoy injected
    /// (Envoy's own span) is visible: the MCP work (the body, `_meta`, span tags, the
    /// response, counters, own spans), once per request.
    Upstream,
}

/// What an instance does, decided once from its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duties {
    /// Resolve the request id and the session (the HCM chain, first to see the request).
    pub identity: bool,
    /// The MCP work: recognition, `params._meta`, span tags, the response, counters and
    /// own spans (the instance closest to the upstream: one body read per request).
    pub mcp: bool,
    /// The `traceparent` it sees is Envoy's own span (the router injected it).
    pub sees_envoy_span: bool,
    /// Tag the responses Envoy makes itself (no route, upstream unreachable, timeout…),
    /// which the paired upstream instance never sees.
    pub local_replies: bool,
    /// Note, in the VM both paired instances share, that the upstream answered (so the
    /// downstream instance need not ask Envoy whether it made the reply itself).
    pub notes_answers: bool,
}

impl Role {
    pub fn duties(self) -> Duties {
        match self {
            // A standalone instance sees local replies in its own response path.
            Role::Standalone => Duties { identity: true, mcp: true, sees_envoy_span: false, local_replies: false, notes_answers: false },
            Role::Downstream => Duties { identity: true, mcp: false, sees_envoy_span: false, local_replies: true, notes_answers: false },
            Role::Upstream => Duties { identity: false, mcp: true, sees_envoy_span: true, local_replies: false, notes_answers: true },
        }
    }
}

/// One place a session id may come from, tried in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSource {
    /// A request header (lowercase name).
    Header(String),
    /// A query-string parameter.
    Query(String),
    /// `Authorization: Bearer …`, used only as a SHA-256 hash prefix.
    BearerHash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// Write `traceparent`/`tracestate` into `params._meta`.
    pub trace_context: bool,
    /// `_meta` key for the request id; None disables it.
    pub request_id_key: Option<String>,
    /// `_meta` key for the session id; None disables it.
    pub session_id_key: Option<String>,
}

/// When the filter reports MCP spans of its own (OTLP/HTTP protobuf through an Envoy cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnSpanMode {
    /// Exactly when Envoy's span cannot be the MCP server's parent on the client's trace:
    /// the client's context came only in `params._meta` (or `_meta` and the header are on
    /// different traces), the filter cannot see Envoy's span (single-instance layout), or
    /// Envoy started none (a malformed `traceparent`).
    Auto,
    /// For every MCP request and notification.
    Always,
    /// Never: the server continues Envoy's span (paired layout) or the client's context.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OwnSpansConfig {
    pub mode: OwnSpanMode,
    /// Envoy cluster that receives OTLP/HTTP (binary protobuf).
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub service_name: String,
    pub flush_interval_ms: u64,
    pub max_queue_spans: usize,
    pub max_batch_spans: usize,
    pub timeout_ms: u64,
    /// Probability of keeping a span that has no sampled parent to follow.
    pub root_sample_ratio: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub role: Role,
    pub max_body_bytes: usize,
    /// Pause the request headers until the body is read, then correct `content-length`.
    /// Only where Envoy's filter config sets `allow_on_headers_stop_iteration: true`
    /// (without it the body never arrives and the request hangs; Istio and Envoy
    /// Gateway never set it). Off: the headers go on at once without `content-length`.
    pub hold_request_headers: bool,
    pub request_id_header: String,
    /// Set the request id on the response. Off where Envoy already does it
    /// (`always_set_request_id_in_response` with `x-request-id`): a host call saved.
    pub request_id_in_response: bool,
    pub session_sources: Vec<SessionSource>,
    /// Upstream role: take the session from a valid `Mcp-Session-Id` instead of the
    /// downstream instance's filter state (a host call saved). Only right when the
    /// downstream instance's `session_sources` start with `header:mcp-session-id`.
    pub session_from_mcp_header: bool,
    pub generate_session_id: bool,
    pub endpoint_paths: Vec<String>,
    pub meta: MetaConfig,
    pub record_resource_uri: bool,
    pub log_argument_keys: bool,
    pub own_spans: OwnSpansConfig,
    pub sessions: SessionStore,
    pub tool_metrics: Vec<String>,
}

/// A configuration that was refused, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid plugin configuration: {}", self.problem)
        } else {
            write!(f, "invalid plugin configuration: field `{}`: {}", self.field, self.problem)
        }
    }
}

fn err(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_string(), problem: problem.into() }
}

pub const DEFAULT_MAX_BODY_BYTES: usize = 512 * 1024;
/// Above this a request body is not worth holding in the VM: Envoy's buffers would have
/// refused it long before, and the filter must not be the reason for a 413.
pub const MAX_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// Bounds of the other settings: enough for any deployment, small enough that nothing
/// downstream of them (stat names, memory, timers) misbehaves.
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
/// The host takes the timeout as u32 milliseconds: a larger one would wrap.
pub const MAX_EXPORT_TIMEOUT_MS: u64 = 60_000;
pub const MAX_QUEUED_SPANS: usize = 1_000_000;
pub const MAX_SESSION_ENTRIES: usize = 1_000_000;
/// Per-tool counters are stats: bounded, so their cardinality is.
pub const MAX_TOOL_METRICS: usize = 100;
/// Longest header name and tool name (in a stat name) a configuration may give.
pub const MAX_NAME_LEN: usize = 64;
/// Longest a learned session is remembered. Bounded so an expiry time cannot overflow.
pub const MAX_SESSION_TTL_SECONDS: u64 = 30 * 24 * 3600;
pub const DEFAULT_REQUEST_ID_KEY: &str = "io.github.mcp-trace/request-id";
pub const DEFAULT_SESSION_ID_KEY: &str = "io.github.mcp-trace/session-id";

// What the JSON looks like. Kept separate from `Config` so the validated form can use
// proper types while the wire form stays close to what an operator writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    role: Role,
    max_body_bytes: usize,
    hold_request_headers: bool,
    request_id_header: String,
    request_id_in_response: bool,
    session_sources: Vec<String>,
    session_from_mcp_header: bool,
    generate_session_id: bool,
    endpoint_paths: Vec<String>,
    meta: RawMeta,
    record_resource_uri: bool,
    log_argument_keys: bool,
    own_spans: RawOwnSpans,
    sessions: RawSessions,
    tool_metrics: Vec<String>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            role: Role::Standalone,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            hold_request_headers: false,
            request_id_header: "x-request-id".into(),
            request_id_in_response: true,
            session_from_mcp_header: false,
            session_sources: ["header:mcp-session-id", "header:x-session-id", "header:x-correlation-id", "query:session_id", "bearer"]
                .map(String::from)
                .to_vec(),
            generate_session_id: false,
            endpoint_paths: vec!["/mcp".into(), "/sse".into(), "/messages".into()],
            meta: RawMeta::default(),
            record_resource_uri: false,
            log_argument_keys: true,
            own_spans: RawOwnSpans::default(),
            sessions: RawSessions::default(),
            tool_metrics: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMeta {
    trace_context: bool,
    request_id_key: Option<String>,
    session_id_key: Option<String>,
}

impl Default for RawMeta {
    fn default() -> Self {
        RawMeta {
            trace_context: true,
            request_id_key: Some(DEFAULT_REQUEST_ID_KEY.into()),
            session_id_key: Some(DEFAULT_SESSION_ID_KEY.into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawOwnSpans {
    mode: OwnSpanMode,
    cluster: String,
    authority: String,
    path: String,
    service_name: String,
    flush_interval_ms: u64,
    max_queue_spans: usize,
    max_batch_spans: usize,
    timeout_ms: u64,
    root_sample_ratio: f64,
}

impl Default for RawOwnSpans {
    fn default() -> Self {
        RawOwnSpans {
            mode: OwnSpanMode::Auto,
            cluster: "otel_collector".into(),
            authority: "otel-collector".into(),
            path: "/v1/traces".into(),
            service_name: "mcp-trace".into(),
            // 4 flushes a second of up to 8 batches each: a worker can export 16k
            // spans/s before its queue bound drops any.
            flush_interval_ms: 250,
            max_queue_spans: 4096,
            max_batch_spans: 512,
            timeout_ms: 5000,
            root_sample_ratio: 1.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSessions {
    max_entries: usize,
    ttl_seconds: u64,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions { max_entries: 10_000, ttl_seconds: 3600 }
    }
}

impl Config {
    /// Parses and validates the plugin configuration. Empty input means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: RawConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
            RawConfig::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| err("", e.to_string()))?
        };
        Config::validate(raw)
    }

    fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_MAX_BODY_BYTES {
            return Err(err("max_body_bytes", format!("must be between 1 and {MAX_MAX_BODY_BYTES}, got {}", raw.max_body_bytes)));
        }
        if raw.session_from_mcp_header && raw.role != Role::Upstream {
            return Err(err("session_from_mcp_header", "only the upstream role takes its session from another instance; remove it here"));
        }
        let request_id_header = header_name("request_id_header", &raw.request_id_header)?;
        let mut session_sources = Vec::with_capacity(raw.session_sources.len());
        for (i, source) in raw.session_sources.iter().enumerate() {
            let field = format!("session_sources[{i}]");
            let parsed = parse_session_source(&field, source)?;
            if session_sources.contains(&parsed) {
                return Err(err(&field, format!("`{source}` is listed twice")));
            }
            session_sources.push(parsed);
        }
        for (i, path) in raw.endpoint_paths.iter().enumerate() {
            if !path.starts_with('/') || path.bytes().any(|b| !(0x21..=0x7E).contains(&b)) {
                return Err(err(&format!("endpoint_paths[{i}]"), format!("must be an absolute path like \"/mcp\", got {path:?}")));
            }
        }
        let request_id_key = raw.meta.request_id_key.map(|k| meta_key("meta.request_id_key", k)).transpose()?;
        let session_id_key = raw.meta.session_id_key.map(|k| meta_key("meta.session_id_key", k)).transpose()?;
        if session_id_key.is_some() && session_id_key == request_id_key {
            return Err(err("meta.session_id_key", "must differ from meta.request_id_key (one _meta key cannot hold both ids)"));
        }
        let own = raw.own_spans;
        if own.mode != OwnSpanMode::Off && own.cluster.is_empty() {
            return Err(err("own_spans.cluster", "must name the Envoy cluster of the OTLP/HTTP collector"));
        }
        if !own.path.starts_with('/') {
            return Err(err("own_spans.path", format!("must be an absolute path like \"/v1/traces\", got {:?}", own.path)));
        }
        if own.flush_interval_ms == 0 || own.flush_interval_ms > MAX_FLUSH_INTERVAL_MS {
            return Err(err(
                "own_spans.flush_interval_ms",
                format!("must be between 1 and {MAX_FLUSH_INTERVAL_MS}, got {}", own.flush_interval_ms),
            ));
        }
        if own.max_queue_spans == 0 || own.max_queue_spans > MAX_QUEUED_SPANS {
            return Err(err("own_spans.max_queue_spans", format!("must be between 1 and {MAX_QUEUED_SPANS}, got {}", own.max_queue_spans)));
        }
        if own.max_batch_spans == 0 || own.max_batch_spans > own.max_queue_spans {
            return Err(err(
                "own_spans.max_batch_spans",
                format!("must be between 1 and max_queue_spans ({}), got {}", own.max_queue_spans, own.max_batch_spans),
            ));
        }
        if own.timeout_ms == 0 || own.timeout_ms > MAX_EXPORT_TIMEOUT_MS {
            return Err(err("own_spans.timeout_ms", format!("must be between 1 and {MAX_EXPORT_TIMEOUT_MS}, got {}", own.timeout_ms)));
        }
        if !(0.0..=1.0).contains(&own.root_sample_ratio) {
            return Err(err("own_spans.root_sample_ratio", format!("must be between 0.0 and 1.0, got {}", own.root_sample_ratio)));
        }
        if raw.sessions.max_entries > MAX_SESSION_ENTRIES {
            return Err(err("sessions.max_entries", format!("must be at most {MAX_SESSION_ENTRIES}, got {}", raw.sessions.max_entries)));
        }
        if raw.sessions.ttl_seconds == 0 || raw.sessions.ttl_seconds > MAX_SESSION_TTL_SECONDS {
            return Err(err(
                "sessions.ttl_seconds",
                format!("must be between 1 and {MAX_SESSION_TTL_SECONDS} (30 days), got {}", raw.sessions.ttl_seconds),
            ));
        }
        if raw.tool_metrics.len() > MAX_TOOL_METRICS {
            return Err(err(
                "tool_metrics",
                format!("at most {MAX_TOOL_METRICS} tools may get their own counters, got {}", raw.tool_metrics.len()),
            ));
        }
        for (i, tool) in raw.tool_metrics.iter().enumerate() {
            if !tool.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./".contains(&b)) || tool.is_empty() || tool.len() > MAX_NAME_LEN {
                return Err(err(
                    &format!("tool_metrics[{i}]"),
                    format!("tool names for metrics must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_.-/], got {tool:?}"),
                ));
            }
        }
        Ok(Config {
            role: raw.role,
            max_body_bytes: raw.max_body_bytes,
            hold_request_headers: raw.hold_request_headers,
            request_id_header,
            request_id_in_response: raw.request_id_in_response,
            session_sources,
            session_from_mcp_header: raw.session_from_mcp_header,
            generate_session_id: raw.generate_session_id,
            endpoint_paths: raw.endpoint_paths,
            meta: MetaConfig { trace_context: raw.meta.trace_context, request_id_key, session_id_key },
            record_resource_uri: raw.record_resource_uri,
            log_argument_keys: raw.log_argument_keys,
            own_spans: OwnSpansConfig {
                mode: own.mode,
                cluster: own.cluster,
                authority: own.authority,
                path: own.path,
                service_name: own.service_name,
                flush_interval_ms: own.flush_interval_ms,
                max_queue_spans: own.max_queue_spans,
                max_batch_spans: own.max_batch_spans,
                timeout_ms: own.timeout_ms,
                root_sample_ratio: own.root_sample_ratio,
            },
            sessions: SessionStore { max_entries: raw.sessions.max_entries, ttl_seconds: raw.sessions.ttl_seconds },
            tool_metrics: raw.tool_metrics,
        })
    }

    /// Whether anything may be written into `params._meta`: only then is the request body
    /// held until whole (else it is copied as it passes).
    pub fn writes_meta(&self) -> bool {
        self.meta.trace_context
            || self.meta.request_id_key.is_some()
            || self.meta.session_id_key.is_some()
            || self.own_spans.mode != OwnSpanMode::Off
    }
}

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(err(field, format!("must be an HTTP header name (letters, digits, '-', '_'), got {name:?}")))
    }
}

fn parse_session_source(field: &str, source: &str) -> Result<SessionSource, ConfigError> {
    if source == "bearer" {
        return Ok(SessionSource::BearerHash);
    }
    if let Some(name) = source.strip_prefix("header:") {
        if name.eq_ignore_ascii_case("authorization") {
            return Err(err(field, "use \"bearer\" for the Authorization header: it is only ever used as a hash"));
        }
        return header_name(field, name).map(SessionSource::Header);
    }
    if let Some(name) = source.strip_prefix("query:") {
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
            return Ok(SessionSource::Query(name.to_string()));
        }
        return Err(err(field, format!("query parameter name must be letters, digits, '_', '-', '.', got {name:?}")));
    }
    Err(err(field, format!("expected \"header:<name>\", \"query:<name>\" or \"bearer\", got {source:?}")))
}

/// A `_meta` key: an optional reverse-DNS prefix ending in `/`, then a name. We require
/// the prefix (our keys must not collide with the client's) and refuse the prefixes MCP
/// reserves (second label `modelcontextprotocol` or `mcp`).
fn meta_key(field: &str, key: String) -> Result<String, ConfigError> {
    let Some((prefix, name)) = key.rsplit_once('/') else {
        return Err(err(field, format!("must be a prefixed key like \"io.github.mcp-trace/request-id\", got {key:?}")));
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    let label_ok = |l: &str| {
        l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && l.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && l.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    let second = labels.get(1).copied();
    if second.is_none() || !labels.iter().all(|l| label_ok(l)) {
        return Err(err(field, format!("prefix {prefix:?} is not a reverse-DNS name like \"io.github.mcp-trace\"")));
    }
    if let Some(reserved @ ("modelcontextprotocol" | "mcp")) = second {
        return Err(err(field, format!("prefix {prefix:?} is reserved by MCP (second label `{reserved}`)")));
    }
    let name_ok = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if !name_ok {
        return Err(err(field, format!("name {name:?} must start and end with a letter or digit and contain only [A-Za-z0-9-_.]")));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_configuration_gives_documented_defaults() {
        for input in [&b""[..], b"  ", b"{}"] {
            let c = Config::parse(input).unwrap();
            assert_eq!(c, Config::parse(b"{}").unwrap());
            assert_eq!(c.role, Role::Standalone);
            assert_eq!(c.max_body_bytes, 512 * 1024);
            assert_eq!(c.request_id_header, "x-request-id");
            assert_eq!(
                c.session_sources,
                vec![
                    SessionSource::Header("mcp-session-id".into()),
                    SessionSource::Header("x-session-id".into()),
                    SessionSource::Header("x-correlation-id".into()),
                    SessionSource::Query("session_id".into()),
                    SessionSource::BearerHash,
                ]
            );
            assert!(c.meta.trace_context);
            assert_eq!(c.meta.request_id_key.as_deref(), Some(DEFAULT_REQUEST_ID_KEY));
            assert_eq!(c.own_spans.mode, OwnSpanMode::Auto);
            assert!(!c.generate_session_id, "no invented sessions");
            assert!(!c.record_resource_uri);
        }
    }

    #[test]
    fn fields_are_read() {
        let c = Config::parse(
            br#"{"role":"upstream","max_body_bytes":1024,"request_id_header":"X-Trace-Id",
                 "session_sources":["query:sid","header:X-Tenant-Session"],"generate_session_id":false,
                 "meta":{"trace_context":false,"request_id_key":null,"session_id_key":"com.example/sid"},
                 "own_spans":{"mode":"always","cluster":"otlp","root_sample_ratio":0.5},
                 "tool_metrics":["get_weather"]}"#,
        )
        .unwrap();
        assert_eq!(c.role, Role::Upstream);
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.request_id_header, "x-trace-id");
        assert_eq!(c.session_sources, vec![SessionSource::Query("sid".into()), SessionSource::Header("x-tenant-session".into())]);
        assert!(!c.generate_session_id);
        assert_eq!(c.meta.request_id_key, None);
        assert_eq!(c.meta.session_id_key.as_deref(), Some("com.example/sid"));
        assert_eq!(c.own_spans.mode, OwnSpanMode::Always);
        assert_eq!(c.own_spans.root_sample_ratio, 0.5);
        assert_eq!(c.tool_metrics, vec!["get_weather".to_string()]);
    }

    fn refused(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn bad_configurations_name_the_field_and_problem() {
        assert!(refused(r#"{"max_body_bytez":1}"#).contains("unknown field `max_body_bytez`"));
        assert!(refused(r#"{"max_body_bytes":0}"#).contains("field `max_body_bytes`: must be between"));
        assert!(refused(r#"{"max_body_bytes":"big"}"#).contains("invalid type"));
        assert!(refused(r#"{"max_body_bytes":-1}"#).contains("invalid value"));
        assert!(refused(r#"{"role":"sidecar"}"#).contains("unknown variant `sidecar`"));
        assert!(refused(r#"{"session_sources":["cookie:x"]}"#).contains("field `session_sources[0]`"));
        assert!(refused(r#"{"session_sources":["bearer","bearer"]}"#).contains("listed twice"));
        assert!(refused(r#"{"session_sources":["header:authorization"]}"#).contains("use \"bearer\""));
        assert!(refused(r#"{"session_sources":["header:bad name"]}"#).contains("HTTP header name"));
        assert!(refused(r#"{"request_id_header":"x\r\ny"}"#).contains("field `request_id_header`"));
        assert!(refused(r#"{"role":"downstream","session_from_mcp_header":true}"#).contains("field `session_from_mcp_header`"));
        assert!(refused(r#"{"meta":{"request_id_key":"io.modelcontextprotocol/x"}}"#).contains("reserved by MCP"));
        assert!(refused(r#"{"meta":{"request_id_key":"dev.mcp/x"}}"#).contains("reserved by MCP"));
        assert!(refused(r#"{"meta":{"session_id_key":"session"}}"#).contains("field `meta.session_id_key`"));
        assert!(refused(r#"{"meta":{"session_id_key":"com.example/-x"}}"#).contains("must start and end"));
        assert!(refused(r#"{"own_spans":{"root_sample_ratio":1.5}}"#).contains("field `own_spans.root_sample_ratio`"));
        assert!(refused(r#"{"own_spans":{"cluster":""}}"#).contains("field `own_spans.cluster`"));
        assert!(Config::parse(br#"{"own_spans":{"mode":"off","cluster":""}}"#).is_ok(), "no cluster needed when off");
        assert!(refused(r#"{"own_spans":{"mode":"sometimes"}}"#)
            .contains("unknown variant `sometimes`, expected one of `auto`, `always`, `off`"));
        assert!(refused(r#"{"own_spans":{"enabled":true}}"#).contains("unknown field `enabled`"));
        assert!(refused(r#"{"own_spans":{"max_batch_spans":99999}}"#).contains("field `own_spans.max_batch_spans`"));
        assert!(refused(r#"{"endpoint_paths":["mcp"]}"#).contains("field `endpoint_paths[0]`"));
        assert!(refused(r#"{"tool_metrics":["a b"]}"#).contains("field `tool_metrics[0]`"));
        assert!(refused("[1,2]").contains("invalid"), "{}", refused("[1,2]"));
        assert!(refused("null").contains("invalid type"));
        assert!(refused("{").contains("EOF"));
    }

    /// Rules between fields, and bounds whose overflow would misbehave later.
    #[test]
    fn cross_field_rules_and_bounds_are_checked_at_load() {
        assert!(refused(r#"{"meta":{"request_id_key":"io.x/id","session_id_key":"io.x/id"}}"#)
            .contains("field `meta.session_id_key`: must differ from meta.request_id_key"));
        assert!(
            refused(r#"{"sessions":{"ttl_seconds":18446744073709551615}}"#).contains("field `sessions.ttl_seconds`: must be between 1 and")
        );
        assert!(Config::parse(br#"{"sessions":{"ttl_seconds":2592000}}"#).is_ok(), "30 days");
        assert!(refused(r#"{"own_spans":{"timeout_ms":4294967296}}"#).contains("field `own_spans.timeout_ms`: must be between 1 and 60000"));
        assert!(Config::parse(br#"{"own_spans":{"timeout_ms":60000}}"#).is_ok());
    }

    #[test]
    fn role_decides_the_duties() {
        let d = Role::Standalone.duties();
        assert!(d.identity && d.mcp && !d.sees_envoy_span, "standalone does everything, and sees only the client's context");
        let d = Role::Downstream.duties();
        assert!(d.identity && !d.mcp, "paired, HCM chain: identity only");
        let d = Role::Upstream.duties();
        assert!(!d.identity && d.mcp && d.sees_envoy_span, "paired, router upstream chain: the MCP work, beside Envoy's span");
    }
}
