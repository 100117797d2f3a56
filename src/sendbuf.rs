//! One frame to send, as the runtime's queues hold it and as the broker
//! hands it over: a plain `Bytes`, or a shard-local share of a frame many
//! connections send. Both layers import it, neither owns it; it imports
//! only the WebSocket core (for a share's compressed variant).

use crate::ws::deflate::{self, Agreed};
use crate::ws::frame::{parse_header, server_frame_deflated};
use bytes::{Buf, Bytes};
use std::cell::OnceCell;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

/// The default shortest message compressed for connections that agreed to
/// permessage-deflate (`--deflate-min-size`). Measured on the first n bytes
/// of a market-data `msg` (level 1, 1 KiB window, without the 4-byte
/// tail): 24 and 32 bytes stay 24 and 32, 48 -> 47, 64 -> 63, 80 -> 72,
/// 96 -> 82, 128 -> 104, 147 -> 116. Below 64 bytes a compression
/// (~2.8 us, `benches/deflate.rs`) saves at most a byte. Messages that do
/// not shrink go uncompressed whatever their size.
pub const DEFLATE_MIN: usize = 64;

/// What offering a frame to a connection's queue did (see the broker's
/// `Host::offer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Sent,
    /// Not queued: the backlog is over the limit.
    Full,
    /// Not queued: the connection is gone or closing.
    Gone,
}

/// The cell a message's compressed variant goes in, one per message for
/// the whole process: the owner shard makes it with the frame and it
/// travels with the frame to every shard (in the `Deliver` mail) and
/// stays beside a last value (its snapshot frame). The first shard that
/// has a deflate subscriber to offer the message compresses it; the
/// others find it done (or wait for it: ~3 us, once). Per shard instead,
/// a publish cost one compression per shard with a deflate subscriber,
/// 16 on a 16-shard broker (2.8 us each, `benches/deflate.rs`).
#[derive(Debug, Clone, Default)]
pub struct Packed(Arc<OnceLock<Option<Bytes>>>);

impl Packed {
    /// The compressed frame for `frame` (`None`: it does not pay), made by
    /// the first caller; `compressed` is set for that caller only.
    fn get(&self, frame: &Bytes, min: usize, compressed: &mut bool) -> Option<Bytes> {
        self.0
            .get_or_init(|| {
                *compressed = true;
                deflate_frame(frame, min)
            })
            .clone()
    }

    /// Whether the variant was made (and paid): tests and accounting.
    pub fn is_made(&self) -> bool {
        self.0.get().is_some_and(Option::is_some)
    }
}

/// A frame built once for the whole process, with the cell of its
/// compressed variant (`None`: no connection can agree to deflate).
#[derive(Debug, Clone)]
pub struct Framed {
    pub frame: Bytes,
    pub packed: Option<Packed>,
}

impl Framed {
    /// `frame`, with a cell for its compressed variant when `deflate`.
    pub fn new(frame: Bytes, deflate: bool) -> Self {
        Self {
            frame,
            packed: deflate.then(Packed::default),
        }
    }
}

impl std::ops::Deref for Framed {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.frame
    }
}

/// One frame to send: its own `Bytes`, or a shard-local share of a frame
/// that many of the shard's connections send (a fan-out).
///
/// Why both: a `Bytes` clone per subscriber is an atomic increment, and
/// its drop an atomic decrement; with a shard-local `Rc` around one
/// `Bytes` those become plain ones. Queueing, sending and dropping a frame
/// for 1,000 queues costs 34-42 ns per queue with `Bytes` against 7-8 ns
/// with the `Rc` here (`cargo bench --bench broker -- fanout_queue`); at
/// high batching the atomic was the largest single item in the shard's
/// profile. The frame itself is still built once and shared by every
/// shard; only each shard's many references to it are local.
///
/// The share also carries when the message it frames arrived (see
/// [`Shared::arrived`]), read once per delivery when its send is
/// submitted: the publish-to-send latency histogram.
#[derive(Debug, Clone)]
pub enum SendBuf {
    Own(Bytes),
    Local(Rc<Shared>),
}

/// A frame many of a shard's connections send.
#[derive(Debug)]
pub struct Shared {
    frame: Bytes,
    /// When the published message arrived, in [`crate::metrics::clock`]
    /// nanoseconds; `None` when not known.
    arrived: Option<NonZeroU64>,
    /// The process-wide cell of the compressed variant (`None`: deflate is
    /// off, no connection can have agreed to it).
    packed: Option<Packed>,
    /// The same message compressed (permessage-deflate), taken from
    /// `packed` (made there if no shard did yet) the first time a
    /// connection that agreed to deflate is offered this share, and then
    /// shared by every such connection of the shard: a message is framed
    /// at most twice, not once per subscriber. `None` inside: it does not
    /// pay (too short, or no smaller).
    deflated: OnceCell<Option<Rc<Shared>>>,
}

impl Shared {
    fn new(frame: Bytes, arrived: Option<NonZeroU64>, packed: Option<Packed>) -> Self {
        Self {
            frame,
            arrived,
            packed,
            deflated: OnceCell::new(),
        }
    }
}

impl SendBuf {
    /// A share of `frame` for many of this shard's connections.
    pub fn local(frame: Bytes) -> Self {
        Self::local_at(frame, 0)
    }

    /// A share of `frame`, a message that arrived at `arrived_ns`
    /// ([`crate::metrics::clock`] nanoseconds; 0: not known), with a
    /// compressed-variant cell of its own (benches and tests; the broker
    /// shares a publish's cell across shards with [`SendBuf::framed`]).
    pub fn local_at(frame: Bytes, arrived_ns: u64) -> Self {
        Self::Local(Rc::new(Shared::new(
            frame,
            NonZeroU64::new(arrived_ns),
            Some(Packed::default()),
        )))
    }

    /// A share of a frame built for the whole process (see [`Framed`]): its
    /// compressed variant is made once in the process, not once per shard.
    pub fn framed(framed: &Framed, arrived_ns: u64) -> Self {
        Self::Local(Rc::new(Shared::new(
            framed.frame.clone(),
            NonZeroU64::new(arrived_ns),
            framed.packed.clone(),
        )))
    }

    /// For a connection that agreed to `agreed`: a share's compressed
    /// variant when it pays and fits the connection's window; `None`: send
    /// this frame as it is. `compressed` is set when this call did the
    /// compression (once per share), for the metrics.
    pub fn deflated(&self, agreed: Agreed, min: usize, compressed: &mut bool) -> Option<SendBuf> {
        let Self::Local(rc) = self else {
            return None;
        };
        let variant = rc.deflated.get_or_init(|| {
            let packed = rc.packed.as_ref()?.get(&rc.frame, min, compressed)?;
            Some(Rc::new(Shared::new(packed, rc.arrived, None)))
        });
        match variant {
            // A message no longer than the window obeys it however it was
            // compressed (checked on the whole frame: a little stricter).
            Some(d) if agreed.fits_window(rc.frame.len()) => Some(Self::Local(d.clone())),
            _ => None,
        }
    }

    /// The frame (a cheap, atomic clone of it keeps it beyond the share).
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Own(b) => b,
            Self::Local(rc) => &rc.frame,
        }
    }

    /// When the message this frame carries arrived, if known (a fan-out
    /// share of a live publish).
    #[inline]
    pub fn arrived_ns(&self) -> Option<u64> {
        match self {
            Self::Own(_) => None,
            Self::Local(rc) => rc.arrived.map(NonZeroU64::get),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Drop the first `n` bytes (a short write): the rare case takes its
    /// own `Bytes` view, leaving the share intact for the others.
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Self::Own(b) => b.advance(n),
            // The rest of a frame already submitted: its latency was seen.
            Self::Local(rc) => *self = Self::Own(rc.frame.slice(n..)),
        }
    }
}

/// The compressed frame for a server frame (unmasked, final), or `None`
/// when compressing does not pay (shorter than `min`, or no smaller).
fn deflate_frame(frame: &Bytes, min: usize) -> Option<Bytes> {
    let h = parse_header(frame).ok().flatten()?;
    let payload = frame.get(h.len..)?;
    if payload.len() < min || h.opcode.is_control() || !h.fin {
        return None;
    }
    let mut packed = Vec::new();
    deflate::deflate(payload, &mut packed).then(|| server_frame_deflated(h.opcode, &packed))
}

impl std::ops::Deref for SendBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl From<Bytes> for SendBuf {
    fn from(b: Bytes) -> Self {
        Self::Own(b)
    }
}

impl From<Framed> for SendBuf {
    /// A frame of its own, or (with a variant cell) a share of one, so a
    /// connection that agreed to deflate gets the process's compressed
    /// variant (snapshot frames).
    fn from(f: Framed) -> Self {
        match f.packed {
            Some(packed) => Self::Local(Rc::new(Shared::new(f.frame, None, Some(packed)))),
            None => Self::Own(f.frame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::inflate;
    use crate::ws::frame::{server_frame, RSV1};
    use crate::ws::OpCode;

    const WIDE: Agreed = Agreed {
        server_window_bits: 15,
    };

    fn quote() -> Vec<u8> {
        br#"{"op":"msg","topic":"md.NASDAQ.AAPL","seq":7,"data":{"bid":189.51,"ask":189.52,"venue":"NASDAQ","venue2":"NASDAQ"}}"#.to_vec()
    }

    #[test]
    fn a_share_is_compressed_once_and_shared() {
        let plain = SendBuf::local_at(server_frame(OpCode::Text, &quote()), 5);
        let mut first = false;
        let a = plain.deflated(WIDE, DEFLATE_MIN, &mut first).unwrap();
        let mut second = false;
        let b = plain.deflated(WIDE, DEFLATE_MIN, &mut second).unwrap();
        assert!(first && !second, "compressed by the first call only");
        assert!(
            std::ptr::eq(a.bytes().as_ptr(), b.bytes().as_ptr()),
            "the same bytes"
        );
        assert_eq!(a.arrived_ns(), Some(5), "keeps the arrival time");
        let h = parse_header(a.bytes()).unwrap().unwrap();
        assert_eq!((h.opcode, h.rsv, h.fin), (OpCode::Text, RSV1, true));
        assert!(a.len() < plain.len());
        let mut back = Vec::new();
        inflate(&a.bytes()[h.len..], 1 << 20, &mut back).unwrap();
        assert_eq!(back, quote());
    }

    #[test]
    fn a_framed_message_is_compressed_once_in_the_process() {
        // Two shards' shares of one published frame (as the Deliver mail
        // carries it): the second shard finds the variant made.
        let framed = Framed::new(server_frame(OpCode::Text, &quote()), true);
        let mut made = [false; 2];
        let variants: Vec<Bytes> = std::thread::scope(|s| {
            let a = s.spawn(|| {
                let share = SendBuf::framed(&framed, 1);
                let mut c = false;
                let v = share.deflated(WIDE, DEFLATE_MIN, &mut c).unwrap();
                (c, v.bytes().clone())
            });
            let (c, v) = a.join().unwrap();
            made[0] = c;
            let share = SendBuf::framed(&framed, 1);
            let w = share.deflated(WIDE, DEFLATE_MIN, &mut made[1]).unwrap();
            vec![v, w.bytes().clone()]
        });
        assert_eq!(made, [true, false], "compressed by the first shard only");
        assert!(std::ptr::eq(variants[0].as_ptr(), variants[1].as_ptr()));
        assert!(framed.packed.as_ref().is_some_and(Packed::is_made));
        // A snapshot frame (its own, no arrival time) takes the same path.
        let snap = SendBuf::from(framed.clone());
        let mut c = false;
        let v = snap.deflated(WIDE, DEFLATE_MIN, &mut c).unwrap();
        assert!(!c && std::ptr::eq(v.bytes().as_ptr(), variants[0].as_ptr()));
        // Without a cell (deflate off): a frame of its own, never compressed.
        let plain = SendBuf::from(Framed::new(server_frame(OpCode::Text, &quote()), false));
        assert!(matches!(plain, SendBuf::Own(_)));
        assert!(plain.deflated(WIDE, DEFLATE_MIN, &mut c).is_none());
    }

    #[test]
    fn what_does_not_pay_or_fit_goes_plain() {
        let mut c = false;
        let short = SendBuf::local(server_frame(OpCode::Text, b"{\"op\":\"ack\",\"id\":1}"));
        assert!(short.deflated(WIDE, DEFLATE_MIN, &mut c).is_none());
        let own = SendBuf::Own(server_frame(OpCode::Text, &quote()));
        assert!(own.deflated(WIDE, DEFLATE_MIN, &mut c).is_none());
        let mut rng = fastrand::Rng::with_seed(1);
        let noise: Vec<u8> = (0..500).map(|_| rng.u8(..)).collect();
        let noisy = SendBuf::local(server_frame(OpCode::Binary, &noise));
        assert!(noisy.deflated(WIDE, DEFLATE_MIN, &mut c).is_none());
        // A window smaller than the message: plain for that connection,
        // compressed for one with room.
        let shared = SendBuf::local(server_frame(OpCode::Text, &quote().repeat(3)));
        assert!(shared.len() > 256);
        let narrow = Agreed {
            server_window_bits: 8,
        };
        let mut c = false;
        assert!(shared.deflated(narrow, DEFLATE_MIN, &mut c).is_none());
        let wide = shared.deflated(WIDE, DEFLATE_MIN, &mut c).unwrap();
        assert!(c && wide.len() < shared.len());
    }
}
