//! Log correlation: every line the filter writes starts with `[req=…|session=…]`, the
//! same identifiers the spans carry, so a grep for either finds the whole story.

use crate::core::text::bounded_printable;

/// Longest id, key name or target a log line quotes (they are client-chosen).
pub const MAX_LOGGED_LEN: usize = 64;

/// The prefix for this request's log lines.
pub fn prefix(request_id: Option<&str>, session_id: Option<&str>) -> String {
    format!(
        "[req={}|session={}]",
        request_id.map_or(std::borrow::Cow::Borrowed("-"), |r| bounded_printable(r, MAX_LOGGED_LEN)),
        session_id.map_or(std::borrow::Cow::Borrowed("-"), |s| bounded_printable(s, MAX_LOGGED_LEN))
    )
}

/// Tool-argument key names for a log line: names only, never values.
pub fn argument_keys(keys: &[String]) -> String {
    let names: Vec<_> = keys.iter().map(|k| bounded_printable(k, MAX_LOGGED_LEN)).collect();
    format!("[{}]", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_format() {
        assert_eq!(prefix(Some("r1"), Some("s1")), "[req=r1|session=s1]");
        assert_eq!(prefix(None, None), "[req=-|session=-]");
        assert_eq!(prefix(Some("a\nb"), None), "[req=a\u{FFFD}b|session=-]");
    }

    #[test]
    fn argument_key_names_only() {
        assert_eq!(argument_keys(&["city".into(), "units".into()]), "[city,units]");
    }
}
