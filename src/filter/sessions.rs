//! Session memory across requests and workers, in Envoy shared data.
//!
//! Bounded by construction: a client-side key hashes to one of `max_entries` slots, and
//! a newer entry overwrites an older one in its slot. Entries expire `ttl_seconds` after
//! they were written; expiry is checked on read, so nothing needs sweeping.

use proxy_wasm::hostcalls;
use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

pub struct SessionMemory {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

fn now_secs() -> u64 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
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
        let slot = self.slot(key)?;
        let (Some(bytes), _) = hostcalls::get_shared_data(&slot).ok()? else { return None };
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '\n');
        let (stored_key, expiry, session) = (parts.next()?, parts.next()?, parts.next()?);
        (stored_key == key && expiry.parse::<u64>().ok()? > now_secs() && !session.is_empty()).then(|| session.to_string())
    }

    pub fn remember(&self, key: &str, session_id: &str) {
        if let Some(slot) = self.slot(key) {
            let value = format!("{key}\n{}\n{session_id}", now_secs() + self.ttl_seconds);
            let _ = hostcalls::set_shared_data(&slot, Some(value.as_bytes()), None);
        }
    }

    pub fn forget(&self, key: &str) {
        if self.recall(key).is_some() {
            if let Some(slot) = self.slot(key) {
                let _ = hostcalls::set_shared_data(&slot, Some(b""), None);
            }
        }
    }
}
