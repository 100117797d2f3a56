//! Revoked token ids (`jti`): a token whose `jti` is listed is refused
//! even though its signature and times are good. The caller reloads the
//! file on SIGHUP and swaps the `Arc` the verifier holds.
//!
//! Format: one jti per line; surrounding whitespace is trimmed; blank
//! lines and lines whose first non-blank character is `#` are ignored (a
//! `#` later in a line is part of the jti).

use std::collections::HashSet;
use std::path::Path;

use super::file::read_capped;

/// Big enough for a long revocation list, small enough that a wrong path
/// fails the load.
const MAX_DENYLIST_FILE: usize = 64 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denylist {
    ids: HashSet<String>,
}

impl Denylist {
    /// Read and parse `path`; errors name the file.
    pub fn load(path: &Path) -> Result<Denylist, String> {
        let bytes = read_capped(path, MAX_DENYLIST_FILE)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{}: not UTF-8: {e}", path.display()))?;
        Ok(Self::parse(text))
    }

    pub fn parse(text: &str) -> Denylist {
        let ids = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        Denylist { ids }
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.ids.contains(jti)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
