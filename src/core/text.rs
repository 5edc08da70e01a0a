//! Small text rules shared by IDs, headers, log lines and span attributes.

use std::borrow::Cow;

/// True when `value` is non-empty, at most `max_len` bytes, and every byte is visible
/// ASCII (0x21..=0x7E). This is the MCP rule for `Mcp-Session-Id`, and we apply it to
/// every identifier we accept from a client: it rules out CR/LF injection, spaces and
/// non-ASCII look-alikes in one check.
pub fn is_visible_ascii(value: &str, max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && value.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// At most `max_len` bytes of `value` (cut on a char boundary), with control characters
/// replaced, so client-chosen strings (tool names, error messages) can go into log lines
/// and span attributes without forging lines or bloating spans. Borrowed in the common
/// case (printable ASCII): no copy.
pub fn bounded_printable(value: &str, max_len: usize) -> Cow<'_, str> {
    let mut end = value.len().min(max_len);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let head = value.get(..end).unwrap_or("");
    if head.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Cow::Borrowed(head);
    }
    Cow::Owned(head.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect())
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends the lowercase hex of `bytes` to `out`, without an intermediate String
/// (`hex::encode` builds one through a char iterator: slow for ids made per request).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(buf.len() / 2) {
        let Some(hex) = buf.get_mut(..chunk.len() * 2) else { return };
        if hex::encode_to_slice(chunk, hex).is_ok() {
            out.push_str(std::str::from_utf8(hex).unwrap_or_default());
        }
    }
}

/// True when every byte is a lowercase hex digit.
pub fn is_lower_hex(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_whole_for_any_length() {
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        let long: Vec<u8> = (0..=255).collect();
        assert_eq!(to_hex(&long), hex::encode(&long));
    }

    #[test]
    fn visible_ascii_rejects_controls_spaces_and_unicode() {
        assert!(is_visible_ascii("abc-123_~", 64));
        assert!(!is_visible_ascii("", 64));
        assert!(!is_visible_ascii("a b", 64));
        assert!(!is_visible_ascii("a\r\nb", 64));
        assert!(!is_visible_ascii("a\tb", 64));
        assert!(!is_visible_ascii("é", 64));
        assert!(!is_visible_ascii("abcd", 3));
    }

    #[test]
    fn bounded_printable_cuts_on_char_boundary_and_masks_controls() {
        assert_eq!(bounded_printable("héllo", 2), "h");
        assert_eq!(bounded_printable("a\nb", 10), "a\u{FFFD}b");
        assert_eq!(bounded_printable("abc", 10), "abc");
    }
}
