//! Randomised robustness tests: mutated and random inputs through every parser the
//! filter runs on traffic. Nothing may panic (a panic kills the VM), and a splice of a
//! valid body must stay valid JSON. Deterministic (fixed seeds), so failures reproduce.

#![cfg(test)]

use crate::core::config::Config;
use crate::core::json_scan::JsonScanner;
use crate::core::jsonrpc::{parse_body, skim_agrees_with_serde};
use crate::core::meta_splice::{apply_head, splice_head, MetaWrite};
use crate::core::propagation::{plan, HeaderContext, ParentMode};
use crate::core::sse::SseReader;
use crate::core::trace_context::{validate_tracestate, TraceParent};

/// xorshift64*: tiny, deterministic, good enough to mutate bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"},"_meta":{"progressToken":1,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=b","baggage":"k=v"}}}"#,
    r#"[{"jsonrpc":"2.0","id":"x","method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}]"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///\u00e9\"x\"","_meta":{}}}"#,
    r#"{"jsonrpc":"2.0","id":3,"result":{"content":[],"isError":true}}"#,
];

/// Byte-level mutations biased towards JSON's structural characters.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let specials = b"{}[]\":,\\ \n\t\r\x00\xff\xc3u0123456789-+eE.tfn";
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                out.remove(at.min(out.len() - 1));
            }
            1 => out.insert(at, specials[rng.below(specials.len())]),
            2 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] = specials[rng.below(specials.len())];
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn write() -> MetaWrite<'static> {
    let mut w = MetaWrite::default();
    w.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01");
    w.remove("tracestate");
    w.set("io.github.mcp-trace/request-id", "r\"1");
    w
}

#[test]
fn request_bodies_never_panic_and_splices_stay_valid() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let header = HeaderContext::from_headers(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), None);
    for i in 0..30_000 {
        let seed = SEEDS[i % SEEDS.len()].as_bytes();
        let body = mutate(&mut rng, seed);
        let Ok(parsed) = parse_body(&body) else { continue };
        let w = write();
        let planned: Vec<MetaWrite> =
            parsed.messages().iter().map(|m| plan(ParentMode::OwnSpan, &header, &m.meta_context, true).meta).collect();
        // serde_json::Value keeps the last of duplicate keys, so "valid JSON" alone would
        // pass a splice that added a second `_meta` or `traceparent`: check keys too.
        let unique_before = has_unique_keys(&body);
        for writes in [vec![w; parsed.messages().len()], planned] {
            let targets: Vec<_> = parsed.messages().iter().zip(writes.iter()).map(|(m, w)| (&m.layout, w)).collect();
            if let (Some(head), _) = splice_head(&body, &targets) {
                let out = apply_head(&body, &head);
                let show = || format!("\n in: {}\nout: {}", String::from_utf8_lossy(&body), String::from_utf8_lossy(&out));
                assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "splice broke a valid body:{}", show());
                assert!(!unique_before || has_unique_keys(&out), "splice duplicated a key:{}", show());
            }
        }
    }
}

/// The fast read of `params` (skimming an object serde_json validated) must agree with
/// serde_json on every valid object; on invalid bytes (never handed to it by the
/// filter) it must still return, not panic.
#[test]
fn params_skim_agrees_with_serde_on_mutated_objects() {
    const PARAMS: &[&str] = &[
        r#"{"name":"get_weather","arguments":{"city":"Pa\"ris","list":[1,{"k":"}]"},null]},"_meta":{"progressToken":1}}"#,
        r#"{ "uri" : "file:///x" , "_meta" : null, "protocolVersion":"2025-11-25" }"#,
        r#"{"arguments":{},"name":"n","name2":"\\","x":[[],{}],"y":-0.5e-2}"#,
        "{\t\"na\\u006de\" :\r\n\"t\", \"_meta\":{\"a\":null},\"_meta\":null}",
    ];
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    let (mut valid, mut skimmed) = (0, 0);
    for i in 0..40_000 {
        let text = mutate(&mut rng, PARAMS[i % PARAMS.len()].as_bytes());
        let Ok(text) = std::str::from_utf8(&text) else { continue };
        if !text.starts_with('{') || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
            let _ = skim_agrees_with_serde(text);
            continue;
        }
        valid += 1;
        match skim_agrees_with_serde(text) {
            Ok(read) => skimmed += usize::from(read),
            Err(()) => panic!("skim and serde_json disagree on {text}"),
        }
    }
    assert!(valid > 1_000 && skimmed * 10 > valid * 8, "{valid} mutated objects were valid JSON, {skimmed} skimmed");
}

/// Any bytes, however cut into chunks, read as they would whole: the scanners never
/// panic, and what they report does not depend on where the network cut the stream.
#[test]
fn response_scanners_read_any_bytes_the_same_however_they_are_cut() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for i in 0..20_000 {
        let seed = SEEDS[i % SEEDS.len()].as_bytes();
        let body = mutate(&mut rng, seed);
        let json = |cuts: &mut dyn Iterator<Item = &[u8]>| {
            let (mut scanner, mut out) = (JsonScanner::new(), Vec::new());
            cuts.for_each(|chunk| scanner.feed(chunk, &mut out));
            (out, scanner.failed())
        };
        let cuts = random_cuts(&mut rng, &body);
        assert_eq!(json(&mut cuts.iter().copied()), json(&mut std::iter::once(&body[..])), "{}", String::from_utf8_lossy(&body));

        let mut stream = if i % 3 == 0 { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        stream.extend_from_slice(b"event: message\r\ndata: ");
        stream.extend_from_slice(&body);
        stream.extend_from_slice(b"\n\n: c\rdata\r\n\r\nevent: x\n\ndata: {\"id\":1,\"result\":{}}\r");
        let sse = |cuts: &mut dyn Iterator<Item = &[u8]>| {
            let (mut reader, mut events) = (SseReader::new(), Vec::new());
            cuts.for_each(|chunk| reader.feed(chunk, &mut events));
            events
        };
        let cuts = random_cuts(&mut rng, &stream);
        assert_eq!(sse(&mut cuts.iter().copied()), sse(&mut std::iter::once(&stream[..])), "{}", String::from_utf8_lossy(&stream));
    }
}

/// `input` cut at random places (empty chunks included, as a network may deliver).
fn random_cuts<'a>(rng: &mut Rng, input: &'a [u8]) -> Vec<&'a [u8]> {
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let end = (at + rng.below(12)).min(input.len());
        cuts.push(&input[at..end]);
        at = end;
    }
    cuts
}

/// True when no JSON object in `bytes` has a key twice (and it parses at all).
fn has_unique_keys(bytes: &[u8]) -> bool {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }
    struct UniqueVisitor;
    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut keys = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
    }
    serde_json::from_slice::<Unique>(bytes).is_ok()
}

#[test]
fn the_duplicate_key_oracle_can_fail() {
    assert!(has_unique_keys(br#"{"a":{"b":1,"c":[{"d":2}]},"e":null}"#));
    assert!(!has_unique_keys(br#"{"params":{"_meta":{"traceparent":"x","traceparent":"y"}}}"#));
    assert!(!has_unique_keys(br#"[{"params":{}},{"params":{},"params":{}}]"#));
}

#[test]
fn header_and_config_parsers_never_panic() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let tp = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let config = br#"{"role":"upstream","max_body_bytes":1024,"session_sources":["bearer","query:q"],"meta":{"request_id_key":"com.example/r"},"own_spans":{"mode":"always"}}"#;
    for _ in 0..20_000 {
        let v = mutate(&mut rng, tp);
        let text = String::from_utf8_lossy(&v);
        let _ = TraceParent::parse(&text);
        let _ = validate_tracestate(&text);
        let _ = crate::core::baggage::validate_baggage(&text);
        let _ = crate::core::session::query_param(&text, "session_id");
        let _ = Config::parse(&mutate(&mut rng, config));
    }
}

#[test]
fn header_maps_from_the_host_never_panic() {
    let mut rng = Rng(0x5851_F42D_4C95_7F2D);
    let serialized = {
        let mut b = 3u32.to_le_bytes().to_vec();
        for (n, v) in [(":path", "/mcp"), ("content-type", "application/json"), ("x-request-id", "r1")] {
            b.extend_from_slice(&(n.len() as u32).to_le_bytes());
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for part in [":path", "/mcp", "content-type", "application/json", "x-request-id", "r1"] {
            b.extend_from_slice(part.as_bytes());
            b.push(0);
        }
        b
    };
    assert_eq!(crate::core::headers::HeaderList::from_serialized(serialized.clone()).get("content-type"), Some("application/json"));
    for _ in 0..20_000 {
        let list = crate::core::headers::HeaderList::from_serialized(mutate(&mut rng, &serialized));
        for name in [":path", "content-type", "x-request-id", ""] {
            let _ = list.get(name);
        }
    }
}
