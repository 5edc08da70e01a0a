//! Writes trace context and IDs into `params._meta` by splicing bytes.
//!
//! The body is never re-serialised: we compute a handful of edits (insert, replace a
//! value, remove a member) at byte offsets found by [`crate::core::jsonrpc`] and copy the
//! body once around them. Every byte outside the edited members stays as the client sent
//! it (key order, whitespace, number formatting, escapes).

use crate::core::jsonrpc::{Layout, Member, MetaLayout, ParamsLayout};
use std::borrow::Cow;

/// What to do with one `_meta` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrite<'v> {
    /// Set the key to this string (replacing every existing occurrence).
    Set(Cow<'v, str>),
    /// Remove every occurrence (a stale or invalid value).
    Remove,
    /// Leave it as it is.
    Keep,
}

/// The `_meta` edits for one message: a list of (key, action). Keys and values are
/// borrowed where they can be (configured keys, the request's ids): it is built for
/// every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaWrite<'k> {
    pub keys: Vec<(&'k str, KeyWrite<'k>)>,
}

impl<'k> MetaWrite<'k> {
    pub fn set(&mut self, key: &'k str, value: impl Into<Cow<'k, str>>) {
        self.keys.push((key, KeyWrite::Set(value.into())));
    }
    pub fn remove(&mut self, key: &'k str) {
        self.keys.push((key, KeyWrite::Remove));
    }
    fn is_noop(&self) -> bool {
        self.keys.iter().all(|(_, w)| *w == KeyWrite::Keep)
    }
}

/// One byte edit: replace `body[start..end]` with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// Why a message was not spliced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceSkip {
    /// `params` or `params._meta` is not an object (or is ambiguous): left alone.
    Untouchable,
}

/// What the host does with a [`SplicedHead`]: drain `replaces` bytes, prepend the head.
#[cfg(test)]
pub fn apply_head(body: &[u8], head: &SplicedHead) -> Vec<u8> {
    let mut out = head.bytes.clone();
    out.extend_from_slice(body.get(head.replaces..).unwrap_or_default());
    out
}

/// The part of the body that changes: `bytes` replace `body[..replaces]`, and everything
/// after `replaces` stays as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplicedHead {
    pub replaces: usize,
    pub bytes: Vec<u8>,
}

/// Applies `writes[i]` to the message with `layouts[i]`, up to the end of the last edit:
/// the host replaces that prefix in place (Envoy drains it and prepends the new one), so
/// the rest of a large body is neither copied back out of the VM nor rebuilt. None when
/// nothing changed. Messages whose layout cannot take a `_meta` are skipped and counted
/// in the second value.
pub fn splice_head(body: &[u8], targets: &[(&Layout, &MetaWrite)]) -> (Option<SplicedHead>, usize) {
    let mut edits = Vec::new();
    let mut skipped = 0;
    for (layout, write) in targets {
        if write.is_noop() {
            continue;
        }
        if plan(layout, write, &mut edits).is_err() {
            skipped += 1;
        }
    }
    if edits.is_empty() {
        return (None, skipped);
    }
    edits.sort_by_key(|e| (e.start, e.end));
    let extra: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = Vec::with_capacity(edits.last().map_or(0, |e| e.end) + extra);
    let mut at = 0;
    for edit in &edits {
        // Overlapping or out-of-range edits would mean a planning bug: never emit a
        // corrupt body.
        let Some(kept) = body.get(at..edit.start).filter(|_| edit.start <= edit.end && edit.end <= body.len()) else {
            return (None, skipped + 1);
        };
        out.extend_from_slice(kept);
        out.extend_from_slice(edit.text.as_bytes());
        at = edit.end;
    }
    (Some(SplicedHead { replaces: at, bytes: out }), skipped)
}

fn plan(layout: &Layout, write: &MetaWrite, edits: &mut Vec<Edit>) -> Result<(), SpliceSkip> {
    // Where `_meta` is absent, the new object (and `params`, if absent too) around the
    // members; a comma when something follows.
    let (at, before, after) = match &layout.params {
        ParamsLayout::Untouchable => return Err(SpliceSkip::Untouchable),
        ParamsLayout::Absent => (layout.object_open + 1, "\"params\":{\"_meta\":{", if layout.object_empty { "}}" } else { "}}," }),
        ParamsLayout::Object { open, empty, meta } => match meta {
            MetaLayout::Untouchable => return Err(SpliceSkip::Untouchable),
            MetaLayout::Absent => (open + 1, "\"_meta\":{", if *empty { "}" } else { "}," }),
            MetaLayout::Object { open, members } => {
                plan_existing_meta(*open, members, write, edits);
                return Ok(());
            }
        },
    };
    let mut text = String::with_capacity(MEMBERS_CAPACITY);
    text.push_str(before);
    if push_set_members(&mut text, write.keys.iter()) {
        text.push_str(after);
        edits.push(insert(at, text));
    }
    Ok(())
}

fn plan_existing_meta(open: usize, members: &[Member], write: &MetaWrite, edits: &mut Vec<Edit>) {
    let action = |key: &str| write.keys.iter().find(|(k, _)| *k == key).map(|(_, w)| w);
    let removed: Vec<bool> = members.iter().map(|m| action(&m.key) == Some(&KeyWrite::Remove)).collect();
    // Existing keys we set: replace the value in place, keeping the key where it was.
    for m in members {
        if let Some(KeyWrite::Set(v)) = action(&m.key) {
            edits.push(Edit { start: m.value_start, end: m.value_end, text: json_string(v) });
        }
    }
    // Removals, as maximal runs of adjacent removed members so ranges never overlap.
    let is_removed = |i: usize| removed.get(i).copied().unwrap_or(false);
    let mut i = 0;
    while let Some(first) = (i..members.len()).find(|&j| is_removed(j)) {
        let after = (first..members.len()).find(|&j| !is_removed(j)).unwrap_or(members.len());
        let (Some(run_first), Some(run_last)) = (members.get(first), after.checked_sub(1).and_then(|l| members.get(l))) else { break };
        let (start, end) = match (members.get(after), first.checked_sub(1).and_then(|p| members.get(p))) {
            (Some(next), _) => (run_first.key_start, next.key_start), // up to the next kept key
            (None, Some(previous)) => (previous.value_end, run_last.value_end), // from the previous kept value
            (None, None) => (run_first.key_start, run_last.value_end), // everything
        };
        edits.push(Edit { start, end, text: String::new() });
        i = after;
    }
    // Keys we set that are not there yet: insert right after `{`.
    let mut text = String::with_capacity(MEMBERS_CAPACITY);
    if push_set_members(&mut text, write.keys.iter().filter(|(k, _)| !members.iter().any(|m| m.key == *k))) {
        if removed.iter().any(|r| !r) {
            text.push(',');
        }
        edits.push(insert(open + 1, text));
    }
}

/// Room for a traceparent, a tracestate and two ids (and the `params`/`_meta` around
/// them) without growing.
const MEMBERS_CAPACITY: usize = 256;

/// Appends the `Set` writes among `keys` to `out` as `"key":"value"` members,
/// comma-separated. False when there were none.
fn push_set_members<'w, 'k: 'w>(out: &mut String, keys: impl Iterator<Item = &'w (&'k str, KeyWrite<'k>)>) -> bool {
    let mut any = false;
    for (k, w) in keys {
        if let KeyWrite::Set(v) = w {
            if any {
                out.push(',');
            }
            push_json_string(out, k);
            out.push(':');
            push_json_string(out, v);
            any = true;
        }
    }
    any
}

fn insert(at: usize, text: String) -> Edit {
    Edit { start: at, end: at, text }
}

/// A JSON string literal for `s` (quotes and escapes as serde_json writes them).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// Appends `s` as a JSON string literal. Keys and values here are W3C trace context,
/// ids and configured `_meta` keys: plain ASCII, so the common case is a copy.
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::jsonrpc::parse_body;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn write_tp() -> MetaWrite<'static> {
        let mut w = MetaWrite::default();
        w.set("traceparent", TP);
        w
    }

    fn apply(body: &str, write: &MetaWrite) -> String {
        let parsed = parse_body(body.as_bytes()).unwrap();
        let targets: Vec<(&Layout, &MetaWrite)> = parsed.messages().iter().map(|m| (&m.layout, write)).collect();
        let (head, skipped) = splice_head(body.as_bytes(), &targets);
        assert_eq!(skipped, 0);
        let out = String::from_utf8(apply_head(body.as_bytes(), &head.expect("changed"))).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).expect("still valid JSON");
        out
    }

    /// The output minus the inserted text must equal the input exactly.
    fn assert_only_inserted(input: &str, output: &str, inserted: &str) {
        let at = output.find(inserted).expect("inserted text present");
        let mut rebuilt = output[..at].to_string();
        rebuilt.push_str(&output[at + inserted.len()..]);
        assert_eq!(rebuilt, input);
    }

    #[test]
    fn creates_params_and_meta_when_absent() {
        let input = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let out = apply(input, &write_tp());
        let inserted = format!(r#""params":{{"_meta":{{"traceparent":"{TP}"}}}},"#);
        assert_only_inserted(input, &out, &inserted);
    }

    #[test]
    fn creates_meta_in_existing_params() {
        let input = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1.0e10}}}"#;
        let out = apply(input, &write_tp());
        assert_only_inserted(input, &out, &format!(r#""_meta":{{"traceparent":"{TP}"}},"#));
        let empty = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{ }}"#;
        let out = apply(empty, &write_tp());
        assert_only_inserted(empty, &out, &format!(r#""_meta":{{"traceparent":"{TP}"}}"#));
    }

    #[test]
    fn inserts_into_existing_meta_and_keeps_progress_token() {
        let input = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":7},"name":"x"}}"#;
        let out = apply(input, &write_tp());
        assert_only_inserted(input, &out, &format!(r#""traceparent":"{TP}","#));
        let empty_meta = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{}}}"#;
        assert_only_inserted(empty_meta, &apply(empty_meta, &write_tp()), &format!(r#""traceparent":"{TP}""#));
    }

    #[test]
    fn replaces_stale_values_in_place() {
        let input = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"a":1, "traceparent" : "00-old" ,"b":2}}}"#;
        let out = apply(input, &write_tp());
        assert_eq!(out, input.replace("\"00-old\"", &format!("\"{TP}\"")));
    }

    #[test]
    fn removes_stale_members_without_breaking_syntax() {
        let cases = [
            (r#"{"_meta":{"tracestate":"x"}}"#, r#"{"_meta":{}}"#),
            (r#"{"_meta":{"tracestate":"x","a":1}}"#, r#"{"_meta":{"a":1}}"#),
            (r#"{"_meta":{"a":1, "tracestate":"x"}}"#, r#"{"_meta":{"a":1}}"#),
            (r#"{"_meta":{"a":1,"tracestate":"x","b":2}}"#, r#"{"_meta":{"a":1,"b":2}}"#),
            (r#"{"_meta":{"baggage":"y","tracestate":"x","b":2}}"#, r#"{"_meta":{"b":2}}"#),
            (r#"{"_meta":{"a":1,"baggage":"y","tracestate":"x"}}"#, r#"{"_meta":{"a":1}}"#),
            (r#"{"_meta":{"tracestate":"x","a":1,"tracestate":"z"}}"#, r#"{"_meta":{"a":1}}"#),
        ];
        let mut w = MetaWrite::default();
        w.remove("tracestate");
        w.remove("baggage");
        for (params, expected) in cases {
            let input = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{params}}}"#);
            let out = apply(&input, &w);
            assert_eq!(out, format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{expected}}}"#), "{params}");
        }
        // Remove and insert together.
        let mut w = write_tp();
        w.remove("tracestate");
        let input = r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"tracestate":"x"}}}"#;
        assert_eq!(
            apply(input, &w),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"_meta":{{"traceparent":"{TP}"}}}}}}"#)
        );
    }

    #[test]
    fn escapes_values() {
        let mut w = MetaWrite::default();
        w.set("io.github.mcp-trace/request-id", "a\"b\\c");
        let input = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let out = apply(input, &w);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["params"]["_meta"]["io.github.mcp-trace/request-id"], "a\"b\\c");
    }

    #[test]
    fn every_element_of_a_batch_is_spliced() {
        let input = r#"[ {"jsonrpc":"2.0","id":1,"method":"ping"} , {"jsonrpc":"2.0","method":"notifications/x","params":{"k":"v"}} ]"#;
        let out = apply(input, &write_tp());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["params"]["_meta"]["traceparent"], TP);
        assert_eq!(v[1]["params"]["_meta"]["traceparent"], TP);
        assert_eq!(v[1]["params"]["k"], "v");
    }

    #[test]
    fn untouchable_params_are_skipped_not_corrupted() {
        // An array, and `null` params or `_meta`: a second `params` or `_meta` beside the
        // null would be a duplicate key, and most parsers keep the last one.
        for input in [
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":null,"a":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1, "_meta" : null}}"#,
        ] {
            let parsed = parse_body(input.as_bytes()).unwrap();
            let w = write_tp();
            let (head, skipped) = splice_head(input.as_bytes(), &[(&parsed.messages()[0].layout, &w)]);
            assert_eq!((head, skipped), (None, 1), "{input}");
        }
    }

    /// Odd but valid JSON: whatever the client wrote outside the inserted member survives.
    #[test]
    fn byte_preserving_on_a_corpus() {
        let corpus = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":12345678901234567890123,"f":1.50,"e":1E+2}}}"#,
            "{\n  \"jsonrpc\" : \"2.0\" ,\n  \"id\" : \"x\\u00e9\\n\" ,\n  \"method\" : \"tools/call\",\n  \"params\" : {\n    \"arguments\" : {\"s\":\"\\ud83d\\ude00 \u{1F600} \\\"q\\\"\"},\n    \"name\" : \"t\"\n  }\n}\n",
            r#"{"method":"tools/call","params":{"arguments":{},"name":"a/b"},"id":-0,"jsonrpc":"2.0"}"#,
            "\t{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"p","x":[1,{"y":null}]},"name":"t"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{ }}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{},"extra":{"deep":[[[[]]]]}}"#,
        ];
        let tp = format!(r#""traceparent":"{TP}""#);
        for input in corpus {
            let out = apply(input, &write_tp());
            // Drop exactly one inserted fragment (with its comma if any) and compare.
            let candidates = [
                format!(r#""params":{{"_meta":{{{tp}}}}},"#),
                format!(r#""_meta":{{{tp}}},"#),
                format!(r#""_meta":{{{tp}}}"#),
                format!("{tp},"),
                tp.clone(),
            ];
            let matched = candidates
                .iter()
                .any(|frag| out.find(frag.as_str()).is_some_and(|at| format!("{}{}", &out[..at], &out[at + frag.len()..]) == input));
            assert!(matched, "not byte-preserving:\n in: {input}\nout: {out}");
        }
    }
}
