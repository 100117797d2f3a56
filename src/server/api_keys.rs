//! API keys for backends publishing over HTTP (`--publish-key-file`).
//!
//! A backend is a service, not a user with a token minted per session:
//! it holds a long-lived secret from a file. One key per line, optionally
//! followed by the topic patterns it may publish to (all topics without
//! any):
//!
//! ```text
//! # feed handlers
//! 6f1c0a3e9b2d4c7a8e5f0b1d2c3a4e5f  md.>
//! 0b1d2c3a4e5f6f1c0a3e9b2d4c7a8e5f  news.*  alerts.>
//! ```
//!
//! Keys are kept only as SHA-256 digests and found by digest: the lookup
//! takes the same time whatever prefix of a key a guess shares (a
//! byte-wise comparison would leak it), and a memory dump holds no key.

use crate::broker::permissions::Permissions;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Shortest key accepted: 16 characters of a random hex or base64 key
/// carry 64 to 96 bits, out of reach of guessing over the network.
pub const MIN_KEY_LEN: usize = 16;

type Digest32 = [u8; 32];

/// The keys of one file, by digest.
#[derive(Default)]
pub struct KeySet {
    keys: FxHashMap<Digest32, Arc<Permissions>>,
}

impl KeySet {
    /// Parse a key file's text; an error names the line and what is
    /// wrong with it (never the key itself: error messages reach logs).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = FxHashMap::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let Some(key) = words.next() else { continue };
            let n = n + 1;
            if key.len() < MIN_KEY_LEN {
                return Err(format!(
                    "line {n}: key shorter than {MIN_KEY_LEN} characters"
                ));
            }
            let patterns: Vec<&str> = words.collect();
            let perms = if patterns.is_empty() {
                Permissions::new(std::iter::empty::<&str>(), [">"])
            } else {
                Permissions::new(std::iter::empty::<&str>(), &patterns)
            }
            .map_err(|(p, e)| format!("line {n}: pattern '{p}': {e}"))?;
            if keys.insert(digest(key), Arc::new(perms)).is_some() {
                return Err(format!("line {n}: the same key appears twice"));
            }
        }
        if keys.is_empty() {
            return Err("no keys in the file".into());
        }
        Ok(Self { keys })
    }

    /// What `key` may publish to, if it is one of ours.
    pub fn get(&self, key: &str) -> Option<Arc<Permissions>> {
        self.keys.get(&digest(key)).cloned()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A credential as kept and compared: its SHA-256 (API keys, the admin
/// token).
pub(super) fn digest(key: &str) -> Digest32 {
    let mut out = [0; 32];
    out.copy_from_slice(&Sha256::digest(key.as_bytes()));
    out
}

/// The key file every shard reads, reloaded on SIGHUP.
pub struct ApiKeys {
    path: PathBuf,
    current: RwLock<Arc<KeySet>>,
}

impl ApiKeys {
    /// Load `path`; an error names the file and the line.
    pub fn load(path: &Path) -> Result<Self, String> {
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(read(path)?)),
        })
    }

    /// Read the file again; on failure the keys in use stay. Returns how
    /// many keys were loaded.
    pub fn reload(&self) -> Result<usize, String> {
        let set = read(&self.path)?;
        let n = set.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(n)
    }

    /// What `key` may publish to, if it is a key in the file.
    pub fn get(&self, key: &str) -> Option<Arc<Permissions>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
    }
}

fn read(path: &Path) -> Result<KeySet, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_and_without_patterns() {
        let set = KeySet::parse(
            "# comment\n\n0123456789abcdef0123  md.>\nfedcba9876543210fedc news.* alerts.>\n",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        let md = set.get("0123456789abcdef0123").unwrap();
        assert!(md.may_publish("md.NASDAQ.AAPL"));
        assert!(!md.may_publish("news.x"));
        let news = set.get("fedcba9876543210fedc").unwrap();
        assert!(news.may_publish("news.x") && news.may_publish("alerts.a.b"));
        assert!(!news.may_publish("news.x.y"));
        assert!(set.get("0123456789abcdef012").is_none());
        assert!(set.get("").is_none());
        let all = KeySet::parse("0123456789abcdef0123\n").unwrap();
        assert!(all
            .get("0123456789abcdef0123")
            .unwrap()
            .may_publish("any.topic"));
    }

    #[test]
    fn bad_files_name_the_line_not_the_key() {
        let short = KeySet::parse("# x\nshortkey\n").err().unwrap();
        assert_eq!(short, "line 2: key shorter than 16 characters");
        let bad = KeySet::parse("0123456789abcdef0123 md..x\n").err().unwrap();
        assert!(bad.starts_with("line 1: pattern 'md..x'"), "{bad}");
        let twice = KeySet::parse("0123456789abcdef0123\n0123456789abcdef0123 a\n")
            .err()
            .unwrap();
        assert_eq!(twice, "line 2: the same key appears twice");
        assert_eq!(
            KeySet::parse("# only\n").err().unwrap(),
            "no keys in the file"
        );
    }

    #[test]
    fn reload_keeps_the_old_keys_on_failure() {
        let dir = std::env::temp_dir().join(format!("ringfan-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let keys = ApiKeys::load(&path).unwrap();
        assert!(keys.get("0123456789abcdef0123").is_some());
        std::fs::write(&path, "short\n").unwrap();
        assert!(keys.reload().unwrap_err().contains("line 1"));
        assert!(keys.get("0123456789abcdef0123").is_some());
        std::fs::write(&path, "fedcba9876543210fedc\n").unwrap();
        assert_eq!(keys.reload(), Ok(1));
        assert!(keys.get("0123456789abcdef0123").is_none());
        assert!(keys.get("fedcba9876543210fedc").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
