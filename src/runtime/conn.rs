//! One connection's state in a shard, and its outgoing queue.
//!
//! Kept small on purpose: an idle connection is this struct and nothing
//! else (no receive buffer, no send buffer), which is what lets a shard
//! hold hundreds of thousands of them.

use crate::sendbuf::SendBuf;
use crate::ws::keepalive::Keepalive;
use crate::ws::{Connection, Role};
use bytes::Bytes;
use std::collections::VecDeque;

use super::close_reason::Reason;
#[cfg(doc)]
use super::config::MAX_BACKLOG_LIMIT;
use super::peer::Peer;
use super::timer::Ticks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Outbound: the socket is set up and a connect is in flight (or, with
    /// no slot yet, about to be submitted).
    Connecting,
    /// Reading the HTTP request head (or, outbound, the response head).
    Handshake,
    /// An HTTP keep-alive connection: it was answered (or waits for the
    /// application's answer, `Conn::http_waiting`) and may send another
    /// request. Not a handshake: not shed, and its deadline is
    /// `Config::http_keepalive`.
    Http,
    /// WebSocket frames flow.
    Open,
    /// Our last bytes are queued; once they are sent, shut down.
    Flushing,
    /// Write side shut; waiting for the peer's EOF (or the linger
    /// deadline) so that a close with unread input does not become a RST.
    Lingering,
    /// The transport is gone; waiting for in-flight operations to finish
    /// before the slot can be closed and reused.
    Dead,
    /// The close of the slot is submitted; the entry goes when it completes.
    Releasing,
}

/// What one queued frame costs beyond its bytes, counted in every backlog
/// (`Conn::backlog`): its `SendBuf` slot in the queue (32 bytes, up to
/// twice that while a `VecDeque` has doubled), and the frame's own
/// allocation (a 2-byte pong still takes a 16-byte block and, once shared,
/// a `Bytes` header). Measured: one million queued pongs of 2 bytes took
/// 66 MiB, ~69 bytes each; 64 is that less the frame.
pub const FRAME_OVERHEAD: usize = 64;

/// A queued frame's cost in a backlog: its bytes and [`FRAME_OVERHEAD`].
pub fn cost(len: usize) -> usize {
    len + FRAME_OVERHEAD
}

/// A connection's unfinished input, boxed: most connections have none
/// most of the time, and an empty `Vec` in every `Conn` cost 24 bytes
/// where this costs 8. The box stays while the buffer keeps capacity, so
/// a connection that often holds a partial frame does not allocate it
/// again each time.
///
/// The box also keeps the minimum receive rate's holding period
/// (`recv_rate`): a connection only holds one while it holds a large
/// unfinished message, in this buffer or in the WebSocket core's
/// assembled message, so idle connections need not pay 8 bytes for it.
/// The box stays while a period runs, whatever the buffer holds, and
/// [`Rx::take`] leaves it (and the period) in place.
#[derive(Debug, Default)]
pub struct Rx(Option<Box<RxBuf>>);

#[derive(Debug)]
struct RxBuf {
    bytes: Vec<u8>,
    /// Since when more than `Config::min_recv_rate_pending` bytes of an
    /// unfinished message are held ([`NOT_HOLDING`] if not), and the
    /// bytes received since then.
    hold_since: Ticks,
    hold_bytes: u32,
}

impl RxBuf {
    fn new(bytes: Vec<u8>) -> Box<Self> {
        Box::new(Self {
            bytes,
            hold_since: NOT_HOLDING,
            hold_bytes: 0,
        })
    }

    fn holding(&self) -> bool {
        self.hold_since != NOT_HOLDING
    }
}

impl Rx {
    /// The bytes, detached (so the caller may hand out slices of them
    /// while the connection table is borrowed again); give them back with
    /// [`Rx::put`]. The holding period stays.
    pub fn take(&mut self) -> Vec<u8> {
        self.0
            .as_mut()
            .map(|b| std::mem::take(&mut b.bytes))
            .unwrap_or_default()
    }

    /// Keep `v` (its capacity too; with none, and no holding period, the
    /// box goes).
    pub fn put(&mut self, v: Vec<u8>) {
        match &mut self.0 {
            Some(b) if v.capacity() != 0 || b.holding() => b.bytes = v,
            Some(_) => self.0 = None,
            None if v.capacity() != 0 => self.0 = Some(RxBuf::new(v)),
            None => {}
        }
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.0
            .get_or_insert_with(|| RxBuf::new(Vec::new()))
            .bytes
            .extend_from_slice(data);
    }

    /// Drop the bytes and their memory (not the holding period).
    pub fn clear(&mut self) {
        self.put(Vec::new());
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.bytes.len())
    }

    pub fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.bytes.capacity())
    }

    /// When the holding period began ([`NOT_HOLDING`]: none runs).
    pub fn hold_since(&self) -> Ticks {
        self.0.as_ref().map_or(NOT_HOLDING, |b| b.hold_since)
    }

    /// Bytes received since the holding period began (0: none runs).
    pub fn hold_bytes(&self) -> u32 {
        self.0.as_ref().map_or(0, |b| b.hold_bytes)
    }

    /// Begin a holding period at `now`, no bytes counted yet.
    pub fn start_hold(&mut self, now: Ticks) {
        let b = self.0.get_or_insert_with(|| RxBuf::new(Vec::new()));
        b.hold_since = now;
        b.hold_bytes = 0;
    }

    /// Count `n` more bytes received in the holding period, if one runs.
    pub fn add_hold(&mut self, n: u32) {
        if let Some(b) = self.0.as_mut().filter(|b| b.holding()) {
            b.hold_bytes = b.hold_bytes.saturating_add(n);
        }
    }

    /// No holding period runs (the box goes if it keeps nothing else).
    pub fn end_hold(&mut self) {
        if let Some(b) = &mut self.0 {
            b.hold_since = NOT_HOLDING;
            b.hold_bytes = 0;
            if b.bytes.capacity() == 0 {
                self.0 = None;
            }
        }
    }
}

/// `bytes` plus `cost`, clamped to a `u32` (one add in `usize` and one
/// clamp: this runs per queued frame).
#[inline(always)]
fn add32(bytes: u32, cost: usize) -> u32 {
    (bytes as usize + cost).min(u32::MAX as usize) as u32
}

/// `bytes` less `cost`, never below 0.
#[inline(always)]
fn sub32(bytes: u32, cost: usize) -> u32 {
    (bytes as usize).saturating_sub(cost) as u32
}

/// Frames waiting to be sent. Control frames (pong, close) go ahead of
/// queued data, never behind it.
#[derive(Debug, Default)]
pub struct SendQueue {
    frames: VecDeque<SendBuf>,
    /// How many frames at the front are control frames.
    control: u32,
    /// Bytes queued, each frame counted with [`FRAME_OVERHEAD`]. A `u32`
    /// (a `usize` cost every connection 8 bytes more, with padding):
    /// a queue is bounded by `Config::max_backlog` plus one frame, and
    /// the configured backlog limits are capped at [`MAX_BACKLOG_LIMIT`],
    /// far below 4 GiB. The sums saturate all the same: past 4 GiB the
    /// count would read low, never wrap.
    bytes: u32,
}

impl SendQueue {
    pub fn push(&mut self, frame: impl Into<SendBuf>) {
        let frame = frame.into();
        self.bytes = add32(self.bytes, cost(frame.len()));
        self.frames.push_back(frame);
    }

    /// The newest frame queued is a fan-out share (it carries its
    /// publish's arrival time): the connection belongs in the flush's
    /// first line (`ConnTable::first`).
    pub fn newest_is_fanout(&self) -> bool {
        self.frames.back().is_some_and(|f| f.arrived_ns().is_some())
    }

    /// Queue ahead of data, after earlier control frames.
    pub fn push_control(&mut self, frame: Bytes) {
        self.bytes = add32(self.bytes, cost(frame.len()));
        self.frames.insert(self.control as usize, frame.into());
        self.control += 1;
    }

    /// Queue a close frame that ends the connection now: data frames still
    /// queued are dropped (nothing may follow a close), control frames
    /// already queued still go first.
    pub fn push_close_now(&mut self, frame: Bytes) {
        let keep = self.control as usize;
        for f in self.frames.drain(keep..) {
            self.bytes = sub32(self.bytes, cost(f.len()));
        }
        self.push_control(frame);
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// A control frame (pong, close) waits: it must not be held back.
    pub fn has_control(&self) -> bool {
        self.control > 0
    }

    /// Bytes queued and not yet handed to the kernel, each frame counted
    /// with [`FRAME_OVERHEAD`].
    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    pub fn pop(&mut self) -> Option<SendBuf> {
        let f = self.frames.pop_front()?;
        self.control = self.control.saturating_sub(1);
        self.bytes = sub32(self.bytes, cost(f.len()));
        Some(f)
    }

    /// Free the queue's buffer when it is empty (idle connections hold
    /// none).
    pub fn release(&mut self) {
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The buffers of one `sendmsg` in flight. Boxed and pooled per shard: the
/// kernel reads `hdr` and `iov` until the completion arrives, so their
/// addresses must not move.
pub struct SendOp {
    pub hdr: libc::msghdr,
    pub iov: Vec<libc::iovec>,
    pub bufs: VecDeque<SendBuf>,
    /// What `bufs` cost in a backlog, kept as they come and go: the
    /// backlog is read per inbound frame (backpressure), and summing up to
    /// 512 buffers each time would not do.
    cost: usize,
}

impl SendOp {
    pub fn new() -> Box<Self> {
        Box::new(Self {
            // SAFETY: msghdr is plain old data; all-zero is a valid value.
            hdr: unsafe { std::mem::zeroed() },
            iov: Vec::new(),
            bufs: VecDeque::new(),
            cost: 0,
        })
    }

    /// What the frames still to send cost in a backlog (bytes plus
    /// [`FRAME_OVERHEAD`] each).
    pub fn cost(&self) -> usize {
        self.cost
    }

    pub fn push(&mut self, frame: SendBuf) {
        self.cost += cost(frame.len());
        self.bufs.push_back(frame);
    }

    pub fn clear(&mut self) {
        self.bufs.clear();
        self.cost = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Point the header at the current buffers.
    pub fn prepare(&mut self) {
        self.iov.clear();
        self.iov.extend(self.bufs.iter().map(|b| libc::iovec {
            iov_base: b.bytes().as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = self.iov.len();
    }

    /// `n` bytes were sent: drop what went out, keep a partly sent frame.
    /// Returns the number of whole frames completed.
    pub fn advance(&mut self, mut n: usize) -> usize {
        let mut done = 0;
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.cost -= cost(front.len());
                self.bufs.pop_front();
                done += 1;
            } else {
                front.advance(n);
                self.cost -= n;
                n = 0;
            }
        }
        done
    }
}

pub struct Conn {
    /// Direct descriptor index in the ring's file table.
    pub slot: u32,
    pub gen: u32,
    pub phase: Phase,
    pub ws: Connection,
    /// Bytes of an unfinished request head or frame (see the buffer
    /// contract in `ws::connection`), and the minimum receive rate's
    /// holding period. Nothing at all when idle.
    pub rx: Rx,
    pub tx: SendQueue,
    pub sending: Option<Box<SendOp>>,
    /// The protocol's idle-ping and pong timers (`ws::keepalive`).
    pub keepalive: Keepalive,
    /// When the phase's deadline started (handshake, close, linger).
    pub since: Ticks,
    /// When it was accepted (or dialed): its age, for the admin view. In
    /// what was padding: `Conn` stays 144 bytes.
    pub opened: Ticks,
    /// The earliest tick this connection is scheduled in the wheel.
    pub wheel_at: Ticks,
    /// The application asked to close with this code (0: it did not) and
    /// reason. Two fields, not an `Option` of a pair: the code fits in
    /// padding (see `close_req`). The reason is interned to a byte
    /// (`close_reason`): a `&'static str` cost every connection 16.
    close_req_code: u16,
    close_req_reason: Reason,
    /// The close code the peer sent, or the one we failed the connection
    /// with; 0 for none (the TCP connection just ended).
    pub close_code: u16,
    /// The yes/no state below (`recv_armed`, `dirty`...), a bit each:
    /// seventeen yes/no states (two share bit 13) cost every connection 2
    /// bytes, not 17.
    flags: u16,
    /// Who is on the other end (accepted connections; see `peer.rs`).
    pub peer: Peer,
}

/// A getter and a setter on `Conn` for each bit of `Conn::flags`.
macro_rules! flags {
    ($($(#[$doc:meta])* $bit:literal: $get:ident, $set:ident;)*) => {
        impl Conn {
            $(
                $(#[$doc])*
                #[inline(always)]
                pub fn $get(&self) -> bool {
                    self.flags & (1 << $bit) != 0
                }

                #[inline(always)]
                pub fn $set(&mut self, on: bool) {
                    self.flags = (self.flags & !(1 << $bit)) | (u16::from(on) << $bit);
                }
            )*
        }
    };
}

flags! {
    /// The multishot receive is armed.
    0: recv_armed, set_recv_armed;
    /// Queued in the shard's list of connections to flush this turn.
    1: dirty, set_dirty;
    /// In the write delay's list of connections whose data waits
    /// (`Config::write_delay`).
    2: delayed, set_delayed;
    /// The application was told of this connection (and must be told
    /// when it closes).
    3: opened, set_opened;
    /// A shutdown(SHUT_RDWR) was submitted to end in-flight operations.
    4: shut, set_shut;
    /// The peer sent EOF: never re-arm the receive.
    5: eof, set_eof;
    /// A shutdown is in flight. The slot must not be closed before it
    /// completes: shutdown runs in an io-wq worker that resolves the
    /// direct descriptor only when it runs, and by then a closed slot may
    /// hold the next connection.
    6: shutting, set_shutting;
    /// Outbound and not yet open: the application still has to hear
    /// `connected` or `connect_failed`.
    7: dialing, set_dialing;
    /// A connect is in flight (an operation the slot must outlive).
    8: connecting, set_connecting;
    /// Reading stopped: the backlog is over `Config::max_backlog_read`.
    /// `rx` may then hold whole frames not yet parsed.
    9: read_paused, set_read_paused;
    /// A cancel of the multishot receive is in flight (its ECANCELED end
    /// is expected, not a transport error).
    10: recv_cancelling, set_recv_cancelling;
    /// Its request head waits in `rx` for a later turn (`ConnTable::deferred`).
    11: deferred, set_deferred;
    /// It speaks TLS: its session is in `ConnTable::tls` (`runtime::tls`),
    /// and `rx` holds ciphertext while the TLS handshake runs.
    12: tls, set_tls;
    /// Its peer is a trusted proxy: the request head's forwarded header
    /// names the client, who is counted then (`runtime::proxied`).
    14: await_forwarded, set_await_forwarded;
    /// Accepted on the admin listener (`Config::admin`): the application
    /// serves it the admin API, and nothing else.
    15: admin, set_admin;
    /// Bit 13, read through `awaiting_proxy` and `http_waiting` below: it
    /// means one thing per phase. Both states are short-lived and no phase
    /// has both, and a sixteenth bit would cost `Conn` 8 bytes (u32
    /// flags: 146 bytes, aligned to 152).
    13: phase_bit, set_phase_bit;
}

impl Conn {
    /// Accepted under `--proxy-protocol`, its PROXY header not read yet:
    /// `rx` holds the header's first bytes (`runtime::proxied`). Only in
    /// `Phase::Handshake` (bit 13).
    #[inline(always)]
    pub fn awaiting_proxy(&self) -> bool {
        self.phase == Phase::Handshake && self.phase_bit()
    }

    #[inline(always)]
    pub fn set_awaiting_proxy(&mut self, on: bool) {
        debug_assert!(self.phase == Phase::Handshake || !on);
        self.set_phase_bit(on);
    }

    /// An HTTP request waits for the application's answer
    /// (`HttpReply::Later`); later requests wait unread in `rx`. Only in
    /// `Phase::Http` (bit 13).
    #[inline(always)]
    pub fn http_waiting(&self) -> bool {
        self.phase == Phase::Http && self.phase_bit()
    }

    #[inline(always)]
    pub fn set_http_waiting(&mut self, on: bool) {
        debug_assert!(self.phase == Phase::Http || !on);
        self.set_phase_bit(on);
    }
}

/// `Rx::hold_since` when the connection holds no large unfinished message.
pub const NOT_HOLDING: Ticks = Ticks::MAX;

/// A slot number for a connection that has none yet (outbound, before its
/// socket exists).
pub const NO_SLOT: u32 = u32::MAX;

impl Conn {
    pub fn new(slot: u32, gen: u32, now: Ticks) -> Self {
        Self {
            slot,
            gen,
            phase: Phase::Handshake,
            ws: Connection::server(),
            rx: Rx::default(),
            tx: SendQueue::default(),
            sending: None,
            keepalive: Keepalive::new(now),
            since: now,
            opened: now,
            wheel_at: now,
            close_req_code: 0,
            close_req_reason: Reason::NONE,
            close_code: 0,
            flags: 0,
            peer: Peer::default(),
        }
    }

    /// The close the application asked for, if any.
    pub fn close_req(&self) -> Option<(u16, &'static str)> {
        if self.close_req_code == 0 {
            return None;
        }
        Some((self.close_req_code, self.close_req_reason.as_str()))
    }

    /// A close was asked for (what `close_req().is_some()` says, without
    /// looking the reason up: the send path asks it per frame).
    #[inline]
    pub fn has_close_req(&self) -> bool {
        self.close_req_code != 0
    }

    /// Ask to close with `code` (a WebSocket close code, never 0). False
    /// if `reason` found the reason table full and the close goes with an
    /// empty reason (see `close_reason`); the runtime's own reasons always
    /// fit.
    pub fn set_close_req(&mut self, code: u16, reason: &'static str) -> bool {
        let (reason, fit) = match Reason::intern(reason) {
            Ok(r) => (r, true),
            Err(r) => (r, false),
        };
        self.close_req_code = code.max(1);
        self.close_req_reason = reason;
        fit
    }

    pub fn take_close_req(&mut self) -> Option<(u16, &'static str)> {
        let r = self.close_req();
        self.close_req_code = 0;
        self.close_req_reason = Reason::NONE;
        r
    }

    /// Outbound: we are the WebSocket client (the protocol state's role,
    /// which stays right while it is detached; see `inbound::received`).
    pub fn outbound(&self) -> bool {
        self.ws.role() == Role::Client
    }

    /// Bytes queued or in flight, each frame counted with
    /// [`FRAME_OVERHEAD`].
    pub fn backlog(&self) -> usize {
        self.tx.bytes() + self.sending.as_ref().map_or(0, |s| s.cost())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_jump_data_but_keep_their_order() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"d1"));
        q.push(Bytes::from_static(b"d2"));
        q.push_control(Bytes::from_static(b"c1"));
        q.push_control(Bytes::from_static(b"c2"));
        q.push(Bytes::from_static(b"d3"));
        assert_eq!(q.bytes(), 10 + 5 * FRAME_OVERHEAD);
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|f| f.bytes().clone())).collect();
        assert_eq!(
            order,
            ["c1", "c2", "d1", "d2", "d3"].map(|s| Bytes::from_static(s.as_bytes()))
        );
        assert_eq!(q.bytes(), 0);
        // After the control frames drained, new control goes first again.
        q.push(Bytes::from_static(b"d4"));
        q.push_control(Bytes::from_static(b"c3"));
        assert_eq!(q.pop().as_deref(), Some(&b"c3"[..]));
    }

    #[test]
    fn close_now_drops_data_keeps_control() {
        let mut q = SendQueue::default();
        q.push(Bytes::from_static(b"data"));
        q.push_control(Bytes::from_static(b"pong"));
        q.push(Bytes::from_static(b"more"));
        q.push_close_now(Bytes::from_static(b"close"));
        let order: Vec<_> = std::iter::from_fn(|| q.pop().map(|f| f.bytes().clone())).collect();
        assert_eq!(
            order,
            ["pong", "close"].map(|s| Bytes::from_static(s.as_bytes()))
        );
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn the_holding_period_survives_take_and_put() {
        let mut rx = Rx::default();
        assert_eq!(rx.hold_since(), NOT_HOLDING);
        // A period with no bytes buffered (they may be in the WebSocket
        // core's assembled message) keeps the box.
        rx.start_hold(7);
        let v = rx.take();
        rx.add_hold(10);
        rx.put(v);
        assert_eq!((rx.hold_since(), rx.hold_bytes()), (7, 10));
        // Bytes come and go around it.
        rx.extend_from_slice(b"abc");
        let mut v = rx.take();
        assert_eq!((rx.hold_since(), rx.len()), (7, 0));
        v.extend_from_slice(b"d");
        rx.add_hold(1);
        rx.put(v);
        assert_eq!((rx.len(), rx.hold_bytes()), (4, 11));
        rx.clear();
        assert_eq!((rx.capacity(), rx.hold_since()), (0, 7));
        // Ended with nothing buffered: nothing left at all.
        rx.end_hold();
        assert!(rx.0.is_none());
        assert_eq!((rx.hold_since(), rx.hold_bytes()), (NOT_HOLDING, 0));
        rx.add_hold(5);
        assert!(rx.0.is_none());
        // A period begun while the bytes are detached stays once they
        // are back; ended then, the buffer stays.
        rx.extend_from_slice(b"xy");
        let v = rx.take();
        rx.start_hold(9);
        rx.put(v);
        assert_eq!((rx.len(), rx.hold_since()), (2, 9));
        rx.end_hold();
        assert_eq!((rx.len(), rx.hold_since()), (2, NOT_HOLDING));
        rx.put(Vec::new());
        assert!(rx.0.is_none());
    }

    #[test]
    fn idle_connection_is_small() {
        // What every idle connection costs in user space, before the
        // application's own state. Guard it: it is multiplied by 10^5.
        let size = std::mem::size_of::<Conn>();
        // 232 before the WebSocket state shrank, the receive buffer was
        // boxed and the close request split (issue #11's budget is 300
        // bytes for everything an idle subscriber costs). Then 184 -> 144
        // (fields 181 -> 140 bytes): the close reason became a 1-byte
        // index (16 -> 1), twelve bools bits of one u16 (12 -> 2), the
        // send queue's byte count a u32 (SendQueue 48 -> 40), and the
        // receive-rate hold (since, bytes: 8) moved into the boxed
        // receive buffer, which exists while a large message is held.
        // Left: ws 32 (7 of it its own padding), tx 40, peer 20, rx,
        // sending and keepalive 8 each, slot, gen, since, wheel_at 4
        // each, three u16s, phase and the reason byte. Then `opened` (4)
        // took the last 4 bytes of padding.
        assert!(size <= 144, "Conn grew to {size} bytes");
    }

    #[test]
    fn short_writes_resume_mid_frame() {
        let mut op = SendOp::new();
        // A fan-out share in the middle: the short write must not cut it
        // for the other connections that hold it.
        let shared = SendBuf::local(Bytes::from_static(b"defg"));
        op.push(Bytes::from_static(b"abc").into());
        op.push(shared.clone());
        op.push(Bytes::from_static(b"h").into());
        assert_eq!(op.cost(), 8 + 3 * FRAME_OVERHEAD);
        op.prepare();
        assert_eq!(op.hdr.msg_iovlen, 3);
        assert_eq!(op.advance(5), 1);
        assert_eq!(op.bufs.front().map(|b| &b[..]), Some(&b"fg"[..]));
        assert_eq!(&shared[..], b"defg");
        op.prepare();
        assert_eq!(op.iov[0].iov_len, 2);
        assert_eq!(op.cost(), 3 + 2 * FRAME_OVERHEAD);
        assert_eq!(op.advance(3), 2);
        assert!(op.is_empty());
        assert_eq!(op.cost(), 0);
    }
}
