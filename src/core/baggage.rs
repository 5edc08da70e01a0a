//! W3C Baggage is caller-controlled: we forward it only when it is well formed and
//! bounded, and never put its contents on a span or in a log line.

/// Envoy's own cap on baggage, and the W3C minimum a platform must propagate.
pub const MAX_BAGGAGE_LEN: usize = 8192;
/// W3C Baggage: at least 64 list members must be propagated; we allow up to 180.
pub const MAX_BAGGAGE_MEMBERS: usize = 180;

/// Returns the value unchanged when it is valid W3C baggage within our bounds.
pub fn validate_baggage(value: &str) -> Option<&str> {
    if value.is_empty() || value.len() > MAX_BAGGAGE_LEN || !value.is_ascii() {
        return None;
    }
    let mut members = 0;
    for member in value.split(',') {
        let key_value = member.split(';').next().unwrap_or("");
        let (key, val) = key_value.split_once('=')?;
        let key = key.trim_matches(|c| c == ' ' || c == '\t');
        let val = val.trim_matches(|c| c == ' ' || c == '\t');
        if key.is_empty() || !key.bytes().all(is_token_char) || !val.bytes().all(is_baggage_octet) {
            return None;
        }
        members += 1;
        if members > MAX_BAGGAGE_MEMBERS {
            return None;
        }
    }
    Some(value)
}

// RFC 7230 token characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// W3C baggage-octet: printable ASCII except space, `"`, `,`, `;`, `\`.
fn is_baggage_octet(b: u8) -> bool {
    (0x21..=0x7E).contains(&b) && !b"\",;\\".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_baggage() {
        assert!(validate_baggage("userId=alice").is_some());
        assert!(validate_baggage("userId=alice, serverNode=DF%2028 ;prop=1,isProduction=false").is_some());
        assert!(validate_baggage("k=").is_some(), "empty value is allowed");
    }

    #[test]
    fn rejects_malformed_or_oversized_baggage() {
        assert!(validate_baggage("").is_none());
        assert!(validate_baggage("novalue").is_none());
        assert!(validate_baggage("=v").is_none());
        assert!(validate_baggage("k=v\r\nx: y").is_none());
        assert!(validate_baggage("k=\"quoted\"").is_none());
        assert!(validate_baggage(&format!("k={}", "v".repeat(MAX_BAGGAGE_LEN))).is_none());
        let many: Vec<String> = (0..=MAX_BAGGAGE_MEMBERS).map(|i| format!("k{i}=v")).collect();
        assert!(validate_baggage(&many.join(",")).is_none());
    }
}
