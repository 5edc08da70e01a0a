//! Session memory across requests and workers, in Envoy shared data.
//!
//! Bounded by construction: a key hashes to one of `max_entries` slots, and a newer
//! entry overwrites an older one in its slot. Entries expire `ttl_seconds` after they
//! were written; expiry is checked on read, so nothing needs sweeping.

use super::abi;
use sha2::{Digest, Sha256};

pub struct SessionMemory {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

fn now_secs() -> u64 {
    abi::now_nanos() / 1_000_000_000
}

impl SessionMemory {
    fn slot(&self, key: &str) -> Option<String> {
        if self.max_entries == 0 {
            return None;
        }
        let digest = Sha256::digest(key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Some(format!("mcp_trace.session.{}", u64::from_le_bytes(first) % self.max_entries as u64))
    }

    pub fn recall(&self, key: &str) -> Option<String> {
        let bytes = abi::get_shared_data(&self.slot(key)?)?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '\n');
        let (stored_key, expiry, session) = (parts.next()?, parts.next()?, parts.next()?);
        (stored_key == key && expiry.parse::<u64>().ok()? > now_secs() && !session.is_empty()).then(|| session.to_string())
    }

    pub fn remember(&self, key: &str, session_id: &str) {
        if let Some(slot) = self.slot(key) {
            let value = format!("{key}\n{}\n{session_id}", now_secs() + self.ttl_seconds);
            let _ = abi::set_shared_data(&slot, value.as_bytes());
        }
    }

    pub fn forget(&self, key: &str) {
        if self.recall(key).is_some() {
            if let Some(slot) = self.slot(key) {
                let _ = abi::set_shared_data(&slot, b"");
            }
        }
    }
}
