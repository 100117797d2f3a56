//! The patterns this shard's connections hold, each stored once.
//!
//! 250,000 connections subscribed to the same pattern held 250,000 copies
//! of its name (a `Box<str>`: 16 bytes inline and a 16-byte heap block
//! each) plus a count per pattern in a map beside them. Now each
//! connection holds a [`Shared`]: one 8-byte pointer to the single copy,
//! whose reference count is the number of local holders (issue #11's
//! budget is 300 bytes for everything an idle subscriber costs).

use rustc_hash::FxHashSet;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::rc::Rc;

/// A pattern some local connection holds: a thin pointer to the shard's
/// one copy of its name. `Rc`, not `Arc`: a broker lives on its shard's
/// thread, and counting happens only on subscribe and unsubscribe.
#[derive(Debug, Clone)]
pub(super) struct Shared(Rc<Box<str>>);

impl Shared {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same copy (cheaper than comparing names).
    pub fn same(&self, other: &Shared) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl Deref for Shared {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

// Hashed and compared by name, so a set of them is looked up by `&str`.
impl Hash for Shared {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Shared {}

impl Borrow<str> for Shared {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Every pattern held by a local connection, with the number of holders
/// kept by the reference count (the set's own reference is not one).
#[derive(Debug, Default)]
pub(super) struct Patterns {
    held: FxHashSet<Shared>,
}

impl Patterns {
    /// The shared copy of `pattern` for one more holder, and whether it
    /// is the first (the owners must then hear of the shard's interest).
    pub fn hold(&mut self, pattern: &str) -> (Shared, bool) {
        if let Some(p) = self.held.get(pattern) {
            return (p.clone(), false);
        }
        let p = Shared(Rc::new(pattern.into()));
        self.held.insert(p.clone());
        (p, true)
    }

    /// A holder lets `pattern` go (and drops it after this call); true if
    /// it was the last.
    pub fn release(&mut self, pattern: &Shared) -> bool {
        // Two references left: the set's and the one being let go.
        let last = Rc::strong_count(&pattern.0) == 2;
        if last {
            self.held.remove(pattern.as_str());
        }
        last
    }

    /// Local holders of `pattern`.
    #[cfg(test)]
    pub fn holders(&self, pattern: &str) -> usize {
        self.held
            .get(pattern)
            .map_or(0, |p| Rc::strong_count(&p.0) - 1)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_counted_by_its_holders() {
        let mut ps = Patterns::default();
        let (a, first) = ps.hold("md.>");
        assert!(first);
        let (b, first) = ps.hold("md.>");
        assert!(!first);
        assert!(a.same(&b));
        assert_eq!(ps.holders("md.>"), 2);
        let (c, _) = ps.hold("x");
        assert!(!a.same(&c));
        assert_eq!(ps.len(), 2);
        assert!(!ps.release(&a));
        drop(a);
        assert_eq!(ps.holders("md.>"), 1);
        assert!(ps.release(&b));
        drop(b);
        assert_eq!(ps.holders("md.>"), 0);
        assert_eq!(ps.len(), 1);
        // Held again after the last went: a fresh first holder.
        let (_d, first) = ps.hold("md.>");
        assert!(first);
    }

    #[test]
    fn a_holder_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Shared>(), 8);
    }
}
