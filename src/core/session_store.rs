//! Memory of sessions across requests and workers, kept in the host's shared data
//! (Envoy's, shared by every VM with the same `vm_id`, and kept when a VM is replaced).
//!
//! Two kinds of entries:
//! - a server-assigned session id maps to itself, with the client-side ids that lead to
//!   it ("aliases"): a 404 on an id found here is the server expiring a session it gave;
//! - an alias (an `X-Session-ID`, a bearer token's hash…) maps to the server's session id.
//!
//! Bounded by construction: a key hashes to one of `max_entries` slots, and a newer entry
//! overwrites an older one in its slot. Entries expire `ttl_seconds` after they were
//! written; expiry is checked on read, so nothing needs sweeping.

use sha2::{Digest, Sha256};

/// A shared key-value store with compare-and-swap, as proxy-wasm's shared data.
pub trait SharedData {
    /// The value and its CAS token, or None when the key was never set.
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets the value if `cas` is 0 or still the key's token.
    fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch>;
}

/// Another writer changed the entry since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasMismatch;

/// How many client-side ids one session remembers (each needs forgetting with it).
pub const MAX_ALIASES: usize = 8;
/// Attempts at a read-modify-write that another worker keeps winning.
const CAS_ATTEMPTS: usize = 4;
const SLOT_PREFIX: &str = "mcp_trace.session.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStore {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

/// One slot's content: `key\nexpiry\nsession[\nalias…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    expires_at: u64,
    session: String,
    aliases: Vec<String>,
}

impl Entry {
    fn parse(bytes: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let key = lines.next()?.to_string();
        let expires_at = lines.next()?.parse().ok()?;
        let session = lines.next().filter(|s| !s.is_empty())?.to_string();
        Some(Entry { key, expires_at, session, aliases: lines.map(str::to_string).collect() })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{}\n{}\n{}", self.key, self.expires_at, self.session);
        for alias in &self.aliases {
            out.push('\n');
            out.push_str(alias);
        }
        out.into_bytes()
    }
}

impl SessionStore {
    fn slot(&self, key: &str) -> Option<String> {
        let slots = u64::try_from(self.max_entries).ok().filter(|&n| n > 0)?;
        let digest = Sha256::digest(key.as_bytes());
        let first = <[u8; 8]>::try_from(digest.get(..8)?).ok()?;
        Some(format!("{SLOT_PREFIX}{}", u64::from_le_bytes(first) % slots))
    }

    /// The live entry for `key` and its CAS token.
    fn read(&self, data: &impl SharedData, now: u64, key: &str) -> Option<(Entry, u32)> {
        let (bytes, cas) = data.get_shared(&self.slot(key)?)?;
        let entry = Entry::parse(&bytes).filter(|e| e.key == key && e.expires_at > now)?;
        Some((entry, cas))
    }

    /// The session `key` leads to: a server id leads to itself, an alias to its session.
    pub fn recall(&self, data: &impl SharedData, now: u64, key: &str) -> Option<String> {
        self.read(data, now, key).map(|(entry, _)| entry.session)
    }

    /// Whether `session` is one a server assigned (as opposed to an alias or nothing).
    pub fn is_server_session(&self, data: &impl SharedData, now: u64, session: &str) -> bool {
        self.recall(data, now, session).as_deref() == Some(session)
    }

    /// The server assigned `session`; `alias`, the client-side id the request carried, now
    /// leads to it (replacing whatever session it led to before).
    pub fn learn(&self, data: &mut impl SharedData, now: u64, session: &str, alias: Option<&str>) {
        let expires_at = now.saturating_add(self.ttl_seconds);
        let alias = alias.filter(|a| *a != session);
        for _ in 0..CAS_ATTEMPTS {
            let (mut entry, cas) = match self.read(data, now, session) {
                Some(found) => found,
                None => (Entry { key: session.into(), expires_at, session: session.into(), aliases: Vec::new() }, 0),
            };
            entry.expires_at = expires_at;
            if let Some(alias) = alias.filter(|a| !entry.aliases.iter().any(|known| known == a)) {
                if entry.aliases.len() == MAX_ALIASES {
                    entry.aliases.remove(0);
                }
                entry.aliases.push(alias.to_string());
            }
            if self.write(data, &entry, cas).is_ok() {
                break;
            }
        }
        if let Some(alias) = alias {
            let entry = Entry { key: alias.into(), expires_at, session: session.into(), aliases: Vec::new() };
            let _ = self.write(data, &entry, 0);
        }
    }

    /// The session ended (DELETE, or the server's 404): forget it and every client-side
    /// id that still leads to it.
    pub fn forget(&self, data: &mut impl SharedData, now: u64, session: &str) {
        let Some((entry, cas)) = self.read(data, now, session) else { return };
        for alias in &entry.aliases {
            if let Some((aliased, alias_cas)) = self.read(data, now, alias).filter(|(e, _)| e.session == session) {
                let _ = self.clear(data, &aliased.key, alias_cas);
            }
        }
        let _ = self.clear(data, session, cas);
    }

    fn write(&self, data: &mut impl SharedData, entry: &Entry, cas: u32) -> Result<(), CasMismatch> {
        match self.slot(&entry.key) {
            Some(slot) => data.set_shared(&slot, &entry.encode(), cas),
            None => Ok(()),
        }
    }

    fn clear(&self, data: &mut impl SharedData, key: &str, cas: u32) -> Result<(), CasMismatch> {
        match self.slot(key) {
            Some(slot) => data.set_shared(&slot, b"", cas),
            None => Ok(()),
        }
    }
}

/// An in-memory [`SharedData`] with Envoy's CAS rules, for tests.
#[cfg(test)]
#[derive(Debug, Default, Clone)]
pub struct MemoryData {
    pub entries: std::collections::HashMap<String, (Vec<u8>, u32)>,
    /// Makes the next this many CAS writes fail, as a racing worker would.
    pub lose_races: usize,
}

#[cfg(test)]
impl SharedData for MemoryData {
    fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).cloned()
    }

    fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), CasMismatch> {
        let current = self.entries.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && self.lose_races > 0 {
            self.lose_races -= 1;
            return Err(CasMismatch);
        }
        if cas != 0 && cas != current {
            return Err(CasMismatch);
        }
        self.entries.insert(key.to_string(), (value.to_vec(), current + 1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SessionStore {
        SessionStore { max_entries: 1000, ttl_seconds: 60 }
    }

    #[test]
    fn a_server_session_and_its_alias_are_recalled_until_they_expire() {
        let (s, mut data) = (store(), MemoryData::default());
        s.learn(&mut data, 100, "srv-1", Some("agent-7"));
        assert_eq!(s.recall(&data, 100, "agent-7").as_deref(), Some("srv-1"));
        assert!(s.is_server_session(&data, 100, "srv-1"));
        assert!(!s.is_server_session(&data, 100, "agent-7"), "an alias is not a server session");
        assert_eq!(s.recall(&data, 159, "agent-7").as_deref(), Some("srv-1"));
        assert_eq!(s.recall(&data, 160, "agent-7"), None, "expired after ttl_seconds");
        assert_eq!(s.recall(&data, 160, "srv-1"), None);
    }

    #[test]
    fn the_newest_session_wins_the_alias_and_forgetting_takes_the_aliases() {
        let (s, mut data) = (store(), MemoryData::default());
        s.learn(&mut data, 0, "srv-1", Some("token"));
        s.learn(&mut data, 1, "srv-2", Some("token"));
        assert_eq!(s.recall(&data, 2, "token").as_deref(), Some("srv-2"));
        // Forgetting srv-1 leaves the alias alone: it leads to srv-2 now.
        s.forget(&mut data, 2, "srv-1");
        assert_eq!(s.recall(&data, 2, "token").as_deref(), Some("srv-2"));
        assert_eq!(s.recall(&data, 2, "srv-1"), None);
        s.forget(&mut data, 2, "srv-2");
        assert_eq!(s.recall(&data, 2, "token"), None);
        assert_eq!(s.recall(&data, 2, "srv-2"), None);
    }

    #[test]
    fn aliases_per_session_are_bounded() {
        let (s, mut data) = (store(), MemoryData::default());
        for i in 0..MAX_ALIASES + 3 {
            s.learn(&mut data, 0, "srv", Some(&format!("alias-{i}")));
        }
        let (entry, _) = s.read(&data, 0, "srv").unwrap();
        assert_eq!(entry.aliases.len(), MAX_ALIASES);
        assert_eq!(entry.aliases.first().map(String::as_str), Some("alias-3"), "the oldest go first");
        s.learn(&mut data, 0, "srv", Some("alias-5"));
        assert_eq!(s.read(&data, 0, "srv").unwrap().0.aliases.len(), MAX_ALIASES, "no duplicates");
    }

    #[test]
    fn a_lost_cas_race_is_retried() {
        let (s, mut data) = (store(), MemoryData::default());
        s.learn(&mut data, 0, "srv", Some("a"));
        data.lose_races = 2;
        s.learn(&mut data, 0, "srv", Some("b"));
        assert_eq!(s.read(&data, 0, "srv").unwrap().0.aliases, ["a", "b"]);
        data.lose_races = CAS_ATTEMPTS;
        s.learn(&mut data, 0, "srv", Some("c"));
        assert_eq!(s.read(&data, 0, "srv").unwrap().0.aliases, ["a", "b"], "gave up after CAS_ATTEMPTS");
        assert_eq!(s.recall(&data, 0, "c").as_deref(), Some("srv"), "the alias itself is still written");
    }

    #[test]
    fn slots_are_reused_and_a_colliding_key_is_not_confused() {
        let s = SessionStore { max_entries: 1, ttl_seconds: 60 };
        let mut data = MemoryData::default();
        s.learn(&mut data, 0, "srv-1", None);
        s.learn(&mut data, 0, "srv-2", None);
        assert_eq!(data.entries.len(), 1, "one slot");
        assert_eq!(s.recall(&data, 0, "srv-1"), None, "overwritten, never mistaken for srv-2");
        assert_eq!(s.recall(&data, 0, "srv-2").as_deref(), Some("srv-2"));
        let none = SessionStore { max_entries: 0, ttl_seconds: 60 };
        none.learn(&mut data, 0, "srv-3", Some("x"));
        assert_eq!(none.recall(&data, 0, "srv-3"), None, "max_entries 0 remembers nothing");
    }

    #[test]
    fn the_longest_ttl_does_not_wrap() {
        let s = SessionStore { max_entries: 10, ttl_seconds: u64::MAX };
        let mut data = MemoryData::default();
        s.learn(&mut data, u64::MAX - 5, "srv", None);
        assert_eq!(s.recall(&data, u64::MAX - 5, "srv").as_deref(), Some("srv"));
    }

    #[test]
    fn damaged_entries_read_as_absent() {
        let s = store();
        let mut data = MemoryData::default();
        s.learn(&mut data, 0, "srv", None);
        let slot = s.slot("srv").unwrap();
        for bad in [&b""[..], b"srv", b"srv\nsoon\nsrv", b"srv\n99\n", b"\xff\n99\nsrv"] {
            data.entries.insert(slot.clone(), (bad.to_vec(), 9));
            assert_eq!(s.recall(&data, 0, "srv"), None, "{bad:?}");
        }
    }
}
