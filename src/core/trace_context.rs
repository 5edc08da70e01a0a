//! W3C Trace Context: parsing and validating `traceparent`/`tracestate`, and minting the
//! span ids this proxy reports.

use crate::core::ids::random_bytes;
use crate::core::text::{is_lower_hex, push_hex};

/// A validated `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` by W3C Trace Context level 1: version 00 is exactly 55
    /// characters of lowercase hex and dashes; a higher version may append fields after
    /// the flags (we keep only the first four); version ff and all-zero ids are invalid.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let bytes = value.as_bytes();
        if bytes.len() < 55 || !value.is_ascii() {
            return None;
        }
        let (version, trace_id, span_id, flags) = (value.get(0..2)?, value.get(3..35)?, value.get(36..52)?, value.get(53..55)?);
        if [2, 35, 52].iter().any(|&at| bytes.get(at) != Some(&b'-')) {
            return None;
        }
        if ![version, trace_id, span_id, flags].iter().all(|p| is_lower_hex(p)) || version == "ff" {
            return None;
        }
        if version == "00" && bytes.len() != 55 {
            return None;
        }
        if bytes.len() > 55 && bytes.get(55) != Some(&b'-') {
            return None;
        }
        let mut parsed = TraceParent { trace_id: [0; 16], span_id: [0; 8], flags: 0 };
        hex::decode_to_slice(trace_id, &mut parsed.trace_id).ok()?;
        hex::decode_to_slice(span_id, &mut parsed.span_id).ok()?;
        let mut flag = [0u8; 1];
        hex::decode_to_slice(flags, &mut flag).ok()?;
        [parsed.flags] = flag;
        if parsed.trace_id == [0; 16] || parsed.span_id == [0; 8] {
            return None;
        }
        Some(parsed)
    }

    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }

    /// The version-00 header value.
    pub fn to_header(self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.span_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }
}

/// A random, non-zero span id, or None if the host had no randomness.
pub fn new_span_id() -> Option<[u8; 8]> {
    let mut id = [0u8; 8];
    (random_bytes(&mut id) && id != [0; 8]).then_some(id)
}

/// A random, non-zero trace id, or None if the host had no randomness.
pub fn new_trace_id() -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    (random_bytes(&mut id) && id != [0; 16]).then_some(id)
}

/// Most list members W3C allows in `tracestate`.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `tracestate` we propagate (W3C: propagate at least 512; Envoy's MCP filter
/// accepts up to 1024). Longer values are dropped whole rather than truncated, because
/// truncating would need member-level priorities we do not know.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Longest `tracestate` key and value (W3C: 256 characters each).
pub const MAX_TRACESTATE_KEY_LEN: usize = 256;
pub const MAX_TRACESTATE_VALUE_LEN: usize = 256;

/// Validates a `tracestate` value: at most 32 members of `key=value`, keys by the W3C
/// Level 2 grammar, values of printable ASCII without `,` or `=`, no duplicate keys, at
/// most 512 characters. Returns the value unchanged (the spec forbids reordering on
/// pass-through) or None.
pub fn validate_tracestate(value: &str) -> Option<&str> {
    if value.len() > MAX_TRACESTATE_LEN || !value.is_ascii() {
        return None;
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue; // empty list members are allowed and ignored
        }
        let (key, val) = member.split_once('=')?;
        if !tracestate_key_ok(key) || !tracestate_value_ok(val) || keys.contains(&key) {
            return None;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return None;
        }
    }
    (!keys.is_empty()).then_some(value)
}

/// W3C Trace Context Level 2: `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, where
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`. (Level 1's separate
/// tenant/system limits are gone: Level 2 keys are one string.)
fn tracestate_key_ok(key: &str) -> bool {
    let Some((&first, rest)) = key.as_bytes().split_first() else { return false };
    (first.is_ascii_lowercase() || first.is_ascii_digit())
        && rest.len() < MAX_TRACESTATE_KEY_LEN
        && rest.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(c))
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in a space.
fn tracestate_value_ok(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() <= MAX_TRACESTATE_VALUE_LEN
        && b.iter().all(|&c| (0x20..=0x7E).contains(&c) && c != b',' && c != b'=')
        && b.last().is_some_and(|&c| c != b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::text::to_hex;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_round_trips_version_00() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(to_hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&tp.span_id), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(tp.to_header(), VALID);
    }

    #[test]
    fn rejects_invalid_traceparents() {
        let cases = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   // short
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 with extra
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // separator
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // non-hex
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ];
        for case in cases {
            assert_eq!(TraceParent::parse(case), None, "{case:?}");
        }
    }

    #[test]
    fn accepts_future_versions_with_more_fields() {
        let tp = TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").unwrap();
        assert_eq!(tp.to_header(), VALID, "re-emitted as version 00");
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
    }

    #[test]
    fn minted_ids_are_random_and_never_zero() {
        let (a, b) = (new_span_id().unwrap(), new_span_id().unwrap());
        assert_ne!(a, b);
        assert_ne!(a, [0; 8]);
        assert_ne!(new_trace_id().unwrap(), [0; 16]);
    }

    /// W3C Trace Context Level 2 keys: a lowercase letter or digit, then up to 255 of
    /// `[a-z0-9_*/@-]`; no separate 14-character cap on a multi-tenant key's system part.
    #[test]
    fn tracestate_keys_follow_level_2() {
        assert!(validate_tracestate("congo=t61,acme@vendor-system-01=2").is_some(), "system part over 14 chars");
        assert!(validate_tracestate("1congo=t61").is_some(), "digit first");
        assert!(validate_tracestate("1tenant@system=v").is_some());
        let longest = format!("a{}=v", "b".repeat(255));
        assert!(validate_tracestate(&longest).is_some(), "256-character key");
        assert!(validate_tracestate(&format!("a{}=v", "b".repeat(256))).is_none(), "257-character key");
        for bad in ["_a=v", "@a=v", "A=v", "a b=v", "a\u{e9}=v"] {
            assert!(validate_tracestate(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn tracestate_rules() {
        assert_eq!(validate_tracestate("congo=t61rcWkgMzE"), Some("congo=t61rcWkgMzE"));
        assert!(validate_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").is_some());
        assert!(validate_tracestate("tenant@vendor=v, a=b").is_some());
        assert!(validate_tracestate("").is_none());
        assert!(validate_tracestate("Upper=x").is_none());
        assert!(validate_tracestate("a=b,a=c").is_none(), "duplicate keys");
        assert!(validate_tracestate("a=b=c").is_none());
        assert!(validate_tracestate("a=").is_none());
        assert!(validate_tracestate("a=b\r\nx").is_none());
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(validate_tracestate(&members.join(",")).is_none(), "33 members");
        assert!(validate_tracestate(&members[..32].join(",")).is_some(), "32 members");
        let long = format!("a={}", "x".repeat(MAX_TRACESTATE_LEN));
        assert!(validate_tracestate(&long).is_none());
    }
}
