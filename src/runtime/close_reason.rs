//! Close reasons, interned to one byte.
//!
//! A close the application (or the runtime) asks for carries a
//! `&'static str` reason until the close frame is built. Kept as such in
//! every `Conn` it cost 16 bytes of each idle connection; the reasons are
//! a handful of literals, so each `Conn` keeps a 1-byte index into a
//! process-wide table instead.
//!
//! The table is bounded (255 reasons besides the empty one). A reason that
//! finds it full is sent as the empty reason (the close code still says
//! why; RFC 6455 makes the reason optional), and [`Reason::intern`] says
//! so, for the caller to count it.

use std::sync::OnceLock;

/// The runtime's own reasons, known up front so that they never find the
/// table full. Index 0 is the empty reason.
const FIXED: [&str; 3] = ["", SEND_QUEUE_OVERFLOW, super::recv_rate::TOO_SLOW];

pub const SEND_QUEUE_OVERFLOW: &str = "send queue overflow";

/// The application's reasons, in slots filled in order, never emptied.
static TABLE: Table<{ 256 - FIXED.len() }> = Table::new();

struct Table<const N: usize>([OnceLock<&'static str>; N]);

impl<const N: usize> Table<N> {
    const fn new() -> Self {
        Self([const { OnceLock::new() }; N])
    }

    /// `reason`'s index among the fixed ones and then this table's.
    fn intern(&self, reason: &'static str) -> Result<Reason, Reason> {
        if let Some(i) = FIXED.iter().position(|f| same(f, reason)) {
            return Ok(Reason(i as u8));
        }
        for (i, slot) in self.0.iter().enumerate() {
            // A racing shard may fill this slot first: then it is compared
            // like any other, and ours goes to a later one.
            let _ = slot.set(reason);
            match slot.get() {
                Some(s) if same(s, reason) => return Ok(Reason((FIXED.len() + i) as u8)),
                _ => continue,
            }
        }
        Err(Reason::NONE)
    }

    fn get(&self, r: Reason) -> &'static str {
        let i = usize::from(r.0);
        match FIXED.get(i) {
            Some(s) => s,
            None => self
                .0
                .get(i - FIXED.len())
                .and_then(|s| s.get())
                .copied()
                .unwrap_or(""),
        }
    }
}

/// An interned close reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reason(u8);

fn same(a: &'static str, b: &str) -> bool {
    // The same literal is usually the same pointer: no bytes compared.
    std::ptr::eq(a, b) || a == b
}

impl Reason {
    /// The empty reason.
    pub const NONE: Reason = Reason(0);

    /// `reason`'s index, adding it to the table if it is new. `Err` with
    /// the empty reason if the table is full. A close is rare next to the
    /// frames a connection sends: a linear look-up over the few reasons
    /// seen so far is cheap enough, and needs no lock.
    pub fn intern(reason: &'static str) -> Result<Reason, Reason> {
        TABLE.intern(reason)
    }

    pub fn as_str(self) -> &'static str {
        TABLE.get(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_repeat_to_the_same_index() {
        let t = Table::<4>::new();
        let a = t.intern("going away").unwrap();
        let b = t.intern(String::from("another").leak()).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.get(a), "going away");
        assert_eq!(t.get(b), "another");
        // Equal text at another address is the same reason.
        assert_eq!(t.intern(String::from("going away").leak()), Ok(a));
        assert_eq!(t.intern(""), Ok(Reason::NONE));
        let own = t.intern(SEND_QUEUE_OVERFLOW).unwrap();
        assert_eq!(t.get(own), SEND_QUEUE_OVERFLOW);
        // The global table works the same way.
        let g = Reason::intern("a test's reason").unwrap();
        assert_eq!(g.as_str(), "a test's reason");
    }

    #[test]
    fn a_full_table_falls_back_to_the_empty_reason() {
        let t = Table::<2>::new();
        assert!(t.intern("one").is_ok());
        assert!(t.intern("two").is_ok());
        assert_eq!(t.intern("three"), Err(Reason::NONE));
        assert_eq!(t.get(Reason::NONE), "");
        // What is in the table still resolves, the runtime's own included.
        assert_eq!(t.intern("two").map(|r| t.get(r)), Ok("two"));
        assert_eq!(
            t.intern(super::super::recv_rate::TOO_SLOW)
                .map(|r| t.get(r)),
            Ok(super::super::recv_rate::TOO_SLOW)
        );
    }
}
