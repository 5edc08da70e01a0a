//! Small text rules shared by IDs, headers, log lines and span attributes.

/// True when `value` is non-empty, at most `max_len` bytes, and every byte is visible
/// ASCII (0x21..=0x7E). This is the MCP rule for `Mcp-Session-Id`, and we apply it to
/// every identifier we accept from a client: it rules out CR/LF injection, spaces and
/// non-ASCII look-alikes in one check.
pub fn is_visible_ascii(value: &str, max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && value.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// Copies at most `max_len` bytes of `value` (cut on a char boundary), with control
/// characters replaced, so client-chosen strings (tool names, error messages) can go
/// into log lines and span attributes without forging lines or bloating spans.
pub fn bounded_printable(value: &str, max_len: usize) -> String {
    let mut end = value.len().min(max_len);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let head = value.get(..end).unwrap_or("");
    // Printable ASCII, the common case (tool names, methods, ids): one copy.
    if head.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return head.to_string();
    }
    let mut out = String::with_capacity(head.len());
    out.extend(head.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }));
    out
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// True when every byte is a lowercase hex digit.
pub fn is_lower_hex(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

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
