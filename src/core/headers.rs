//! Every HTTP header name the filter reads or writes, in one place. Header names are
//! matched case-insensitively by Envoy; we use the lowercase form HTTP/2 requires.

/// MCP session id (Streamable HTTP, 2025-03-26 and later).
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// MCP protocol revision, sent by clients on every request after initialize.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// 2026-07-28: the JSON-RPC method mirrored into a header for intermediaries.
pub const MCP_METHOD: &str = "mcp-method";
/// 2026-07-28: `params.name` or `params.uri` mirrored into a header.
pub const MCP_NAME: &str = "mcp-name";

pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
pub const CONTENT_ENCODING: &str = "content-encoding";
pub const AUTHORIZATION: &str = "authorization";
pub const ACCEPT: &str = "accept";

/// W3C Trace Context and Baggage.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const BAGGAGE: &str = "baggage";

const MAX_PREALLOCATED_HEADERS: usize = 256;

/// A header map as Envoy hands it over: the serialised bytes, kept whole, plus where
/// each name and value lies in them. Reading a request's headers then costs two
/// allocations instead of two per header (every request's headers are read once per
/// instance, on the hot path).
#[derive(Debug, Clone, Default)]
pub struct HeaderList {
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) into `bytes`.
    entries: Vec<(u32, u32, u32, u32)>,
}

impl HeaderList {
    /// Parses the proxy-wasm header map serialisation: a little-endian u32 count, then a
    /// (name length, value length) u32 pair per header, then each name and value
    /// followed by a NUL. Stops at the first entry that does not fit, keeping those before.
    pub fn from_serialized(bytes: Vec<u8>) -> HeaderList {
        let read_u32 = |at: usize| bytes.get(at..at.saturating_add(4)).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes);
        let count = read_u32(0).unwrap_or(0) as usize;
        // The count comes from the host; room for a sane number of headers, no more.
        let mut entries = Vec::with_capacity(count.min(MAX_PREALLOCATED_HEADERS));
        let mut at = count.saturating_mul(8).saturating_add(4);
        for n in 0..count {
            let (Some(name_len), Some(value_len)) = (read_u32(4 + n * 8), read_u32(8 + n * 8)) else { break };
            let name_end = at.saturating_add(name_len as usize);
            let value_start = name_end.saturating_add(1);
            let value_end = value_start.saturating_add(value_len as usize);
            if value_end >= bytes.len() || value_end > u32::MAX as usize {
                break;
            }
            entries.push((at as u32, name_end as u32, value_start as u32, value_end as u32));
            at = value_end + 1;
        }
        HeaderList { bytes, entries }
    }

    /// The serialised bytes, as the host handed them over.
    #[cfg(test)]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Builds the list from pairs, as a host would serialise them.
    #[cfg(test)]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderList {
        let pairs: Vec<_> = pairs.into_iter().collect();
        let mut bytes = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in &pairs {
            bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in &pairs {
            for part in [name, value] {
                bytes.extend_from_slice(part.as_bytes());
                bytes.push(0);
            }
        }
        HeaderList::from_serialized(bytes)
    }

    /// The first value of a header, by lowercase name. A value that is not UTF-8 reads
    /// as absent (not as a later duplicate): no header the filter uses may carry such
    /// bytes.
    pub fn get(&self, name: &str) -> Option<&str> {
        let &(_, _, vs, ve) =
            self.entries.iter().find(|&&(ns, ne, _, _)| self.bytes.get(ns as usize..ne as usize) == Some(name.as_bytes()))?;
        std::str::from_utf8(self.bytes.get(vs as usize..ve as usize)?).ok()
    }

    /// Every value of a header, in order (repeated headers are one list for the W3C
    /// trace headers). Values that are not UTF-8 are skipped.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.entries.iter().filter_map(move |&(ns, ne, vs, ve)| {
            (self.bytes.get(ns as usize..ne as usize) == Some(name.as_bytes()))
                .then(|| self.bytes.get(vs as usize..ve as usize).and_then(|v| std::str::from_utf8(v).ok()))
                .flatten()
        })
    }

    /// How many times a header is present.
    pub fn count(&self, name: &str) -> usize {
        self.entries.iter().filter(|&&(ns, ne, _, _)| self.bytes.get(ns as usize..ne as usize) == Some(name.as_bytes())).count()
    }

    /// All values of a header joined with `,` (RFC 9110's combined field value), borrowed
    /// when it is there once.
    pub fn joined<'s>(&'s self, name: &'s str) -> Option<std::borrow::Cow<'s, str>> {
        let mut values = self.get_all(name);
        let first = values.next()?;
        match values.next() {
            None => Some(std::borrow::Cow::Borrowed(first)),
            Some(second) => {
                let mut all = format!("{first},{second}");
                for more in values {
                    all.push(',');
                    all.push_str(more);
                }
                Some(std::borrow::Cow::Owned(all))
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_proxy_wasm_serialisation() {
        let list = HeaderList::from_pairs([
            (":path", "/mcp?a=1"),
            ("x-empty", ""),
            ("content-type", "application/json"),
            ("x-dup", "1"),
            ("x-dup", "2"),
        ]);
        assert_eq!(list.len(), 5);
        assert_eq!(list.get(":path"), Some("/mcp?a=1"));
        assert_eq!(list.get("x-empty"), Some(""));
        assert_eq!(list.get("content-type"), Some("application/json"));
        assert_eq!(list.get("x-dup"), Some("1"), "the first of repeated headers");
        assert_eq!(list.get_all("x-dup").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(list.count("x-dup"), 2);
        assert_eq!(list.joined("x-dup").as_deref(), Some("1,2"));
        assert_eq!(list.joined(":path").as_deref(), Some("/mcp?a=1"));
        assert_eq!(list.joined("x-missing"), None);
        assert_eq!(list.get("x-missing"), None);
        assert!(HeaderList::from_pairs([]).is_empty());
    }

    #[test]
    fn bad_serialisations_keep_what_fits() {
        let whole = HeaderList::from_pairs([("a", "1"), ("b", "2")]).bytes;
        // Count, two length pairs (20 bytes), then "a\01\0" (ends at 24) and "b\02\0" (28):
        // a header is kept once its value's closing NUL is in.
        assert_eq!(whole.len(), 28);
        for cut in 0..whole.len() {
            let list = HeaderList::from_serialized(whole[..cut].to_vec());
            let kept = usize::from(cut >= 24);
            assert_eq!(list.len(), kept, "cut at {cut}");
            assert_eq!(list.get("a"), (kept == 1).then_some("1"));
            assert_eq!(list.get("b"), None);
        }
        let mut huge_count = whole.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderList::from_serialized(huge_count).is_empty());
        let mut not_utf8 = HeaderList::from_pairs([("x", "ab")]).bytes;
        let at = not_utf8.len() - 3;
        not_utf8[at] = 0xff;
        assert_eq!(HeaderList::from_serialized(not_utf8).get("x"), None);
        let mut first_bad = HeaderList::from_pairs([("x", "ab"), ("x", "cd")]).bytes;
        let at = 4 + 16 + 2; // count, two length pairs, "x\0": the first value
        first_bad[at] = 0xff;
        assert_eq!(HeaderList::from_serialized(first_bad).get("x"), None, "a bad first value is not skipped for a later one");
    }
}
