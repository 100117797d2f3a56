//! `user_data` encoding: which operation a completion belongs to, and for
//! connection operations the slab key plus a generation, so that a late
//! completion for a closed connection can never touch the connection that
//! reused its slab slot.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Shutdown = 4,
    Close = 5,
    Tick = 6,
    Doorbell = 7,
    Connect = 8,
    /// The cancel of a connection's receive (backpressure); its own
    /// completion needs nothing.
    Cancel = 9,
    /// An accepted connection's peer address (`peer.rs`); the key is the
    /// request's index in the shard's table of them.
    Peer = 10,
    /// The multishot poll on the shard's external inbox eventfd
    /// (`external.rs`); no key.
    External = 11,
}

impl Op {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Accept,
            2 => Self::Recv,
            3 => Self::Send,
            4 => Self::Shutdown,
            5 => Self::Close,
            6 => Self::Tick,
            7 => Self::Doorbell,
            8 => Self::Connect,
            9 => Self::Cancel,
            10 => Self::Peer,
            11 => Self::External,
            _ => return None,
        })
    }
}

/// Generations wrap at 24 bits; a slot is reused only after every
/// operation of its previous owner completed, so wrapping is harmless.
pub const GEN_MASK: u32 = 0xff_ffff;

#[inline]
pub fn encode(op: Op, key: u32, gen: u32) -> u64 {
    ((op as u64) << 56) | (((gen & GEN_MASK) as u64) << 32) | key as u64
}

#[inline]
pub fn decode(user_data: u64) -> Option<(Op, u32, u32)> {
    let op = Op::from_u8((user_data >> 56) as u8)?;
    Some((op, user_data as u32, (user_data >> 32) as u32 & GEN_MASK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Shutdown,
            Op::Close,
            Op::Tick,
            Op::Doorbell,
            Op::Connect,
            Op::Cancel,
            Op::Peer,
            Op::External,
        ] {
            for (key, gen) in [(0, 0), (u32::MAX, GEN_MASK), (12345, 77)] {
                assert_eq!(decode(encode(op, key, gen)), Some((op, key, gen)));
            }
        }
        // Generations wrap into 24 bits.
        assert_eq!(
            decode(encode(Op::Recv, 1, GEN_MASK + 1)),
            Some((Op::Recv, 1, 0))
        );
        assert_eq!(decode(0), None);
    }
}
