//! Request IDs, and the random bytes every generated identifier comes from.

use crate::core::text::{is_visible_ascii, to_hex};

/// Longest incoming request id we keep. Envoy's own UUIDs are 36 bytes; 128 leaves room
/// for prefixed or composite ids without letting a client push kilobytes into every span.
pub const MAX_ID_LEN: usize = 128;

/// Fills `buf` from the host's CSPRNG (WASI `random_get` in Envoy). Returns false if the
/// host refused, so callers can fall back instead of panicking.
pub fn random_bytes(buf: &mut [u8]) -> bool {
    getrandom::fill(buf).is_ok()
}

/// A uniform number in [0, 1) for sampling draws (0.0 if the host had no randomness,
/// which keeps rather than silently drops).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if !random_bytes(&mut bytes) {
        return 0.0;
    }
    // 53 random bits: the precision of an f64 mantissa.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A fresh 128-bit id as 32 lowercase hex characters, or None if the host has no
/// randomness to give (never expected in Envoy; the caller then passes traffic untraced).
pub fn generate_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    random_bytes(&mut bytes).then(|| to_hex(&bytes))
}

/// Where the request id of this request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestIdSource {
    /// A valid id the client (or an earlier proxy) sent; kept unchanged.
    Incoming,
    /// Generated here because none, or an invalid one, arrived.
    Generated,
}

/// Keeps a valid incoming request id, otherwise generates one.
/// Returns None only if there was no valid id and no randomness.
pub fn resolve_request_id(incoming: Option<&str>) -> Option<(String, RequestIdSource)> {
    match incoming {
        Some(id) if is_visible_ascii(id, MAX_ID_LEN) => Some((id.to_string(), RequestIdSource::Incoming)),
        _ => generate_id().map(|id| (id, RequestIdSource::Generated)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_valid_incoming_id() {
        let (id, source) = resolve_request_id(Some("req-42")).unwrap();
        assert_eq!(id, "req-42");
        assert_eq!(source, RequestIdSource::Incoming);
    }

    #[test]
    fn replaces_missing_overlong_or_injected_ids() {
        for bad in [None, Some(""), Some("a\r\nx-evil: 1"), Some("has space"), Some("ü")] {
            let (id, source) = resolve_request_id(bad).unwrap();
            assert_eq!(source, RequestIdSource::Generated, "{bad:?}");
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(resolve_request_id(Some(&long)).unwrap().1, RequestIdSource::Generated);
        let max = "x".repeat(MAX_ID_LEN);
        assert_eq!(resolve_request_id(Some(&max)).unwrap().1, RequestIdSource::Incoming);
    }

    #[test]
    fn generated_ids_differ() {
        assert_ne!(generate_id(), generate_id());
    }
}
