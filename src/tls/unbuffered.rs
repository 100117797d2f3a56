//! The server side of [`super::TlsSession`] during the handshake, on
//! rustls' unbuffered API (`UnbufferedServerConnection`): the session owns
//! no input or output buffer between calls. Once the handshake is over and
//! rustls holds nothing more ([`UnbufferedServer::ready_to_establish`]),
//! the session moves to `established.rs`; everything below still holds
//! until then (and for a `ServerConfig` without secret extraction).
//!
//! # Input
//!
//! rustls decrypts records in place, so it needs the ciphertext in a
//! mutable buffer, and it keeps the fragments of a handshake message split
//! across records in that buffer (at the front) until the message is whole.
//! `feed` therefore copies its input once, into a per-thread scratch
//! buffer when the session holds nothing (the common case), or after the
//! session's own bytes when it does. Each record is decrypted there once;
//! what rustls still needs after the call (an incomplete record, and any
//! pending handshake fragments before it) is copied into `held`, sized to
//! fit, and `held` is freed (capacity 0) as soon as rustls lets go of it.
//!
//! A peer cannot make a session hold more than [`MAX_HELD`] bytes (one
//! maximum-size record, 16,645 B): a header announcing a longer record is
//! refused as soon as it arrives, without waiting for the body, and a
//! handshake message spread over records that would need more is refused
//! too (no client handshake message to this server comes near that: a
//! ClientHello is 0.3-2 KB).
//!
//! # Output
//!
//! Handshake records, tickets and alerts go straight into the caller's
//! `out` (rustls' `EncodeTlsData` chunks); `seal` gathers the caller's
//! slices into 16 KiB chunks in a per-thread buffer (rustls'
//! `WriteTraffic::encrypt` takes one slice, and a record per slice would
//! fragment the stream) and has rustls encrypt each chunk into `out`.
//!
//! # SNI
//!
//! `UnbufferedServerConnection` has no `server_name()` (rustls 0.23.46
//! keeps the name in crate-private connection data). rustls hands the same
//! value, already validated and lower-cased, to the certificate resolver,
//! which it calls synchronously for every ClientHello (full, resumed and
//! after a HelloRetryRequest). [`super::resolver::SniResolver`] notes it
//! in a thread-local ([`note_client_hello_sni`]) and the session picks it
//! up after each `process_tls_records` call during the handshake. A
//! session made from a `ServerConfig` with some other resolver reports no
//! SNI.

use std::cell::Cell;
use std::mem;
use std::sync::Arc;
use std::thread::LocalKey;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{InvalidMessage, ServerConfig};

use super::established::Handover;
use super::session::{plaintext_fatal_alert, Feed, HandshakeKind, TlsError};

/// TLS record header: type, version, length.
const HEADER: usize = 5;

/// The longest record body TLS allows: 2^14 bytes of plaintext plus 256 of
/// expansion (RFC 8446 section 5.2). TLS 1.2 allows 2,048 of expansion on
/// paper, but its AEAD suites (the only ones rustls has) add 24 at most,
/// and its plaintext records carry at most 2^14.
const MAX_RECORD_BODY: usize = 16_384 + 256;

/// The most input a session holds between calls: one maximum-size record
/// with its header, 16,645 B.
pub(super) const MAX_HELD: usize = HEADER + MAX_RECORD_BODY;

/// Plaintext per record: rustls' default `max_fragment_size`, which
/// `TlsServer`'s config keeps. `seal` hands rustls chunks of this size so
/// every record but the last is full.
const RECORD_PLAINTEXT: usize = 16_384;

/// Bytes a record adds to its plaintext, at most: the header (5) plus the
/// AEAD expansion (TLS 1.2 AES-GCM: 8-byte explicit nonce and 16-byte tag,
/// 24; TLS 1.3: content type and tag, 17), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// Room for records rustls may have queued ahead of ours (a KeyUpdate is
/// 27 B on the wire, a close_notify 24-31 B).
const QUEUED_SLACK: usize = 64;

/// A scratch buffer bigger than this after use is given back rather than
/// kept for the thread: 16 of the runtime's 16 KiB receive buffers
/// (`recv_buffer_size`), in case it feeds several at once.
const SCRATCH_KEEP: usize = 256 << 10;

/// A plaintext warning `close_notify` alert (type 21, version 3.3, length
/// 2, level warning (1), description 0), for closing before rustls can
/// encrypt anything.
const PLAINTEXT_CLOSE_NOTIFY: [u8; 7] = [21, 3, 3, 0, 2, 1, 0];

thread_local! {
    /// The input copy rustls decrypts in, when the session holds nothing:
    /// per thread, so idle sessions own none.
    static INPUT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// Where `seal` gathers small slices into full records.
    static GATHER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    /// The SNI of the ClientHello rustls last resolved a certificate for on
    /// this thread (see the module docs).
    static HELLO_SNI: Cell<Option<Box<str>>> = const { Cell::new(None) };
}

/// Called by the certificate resolver with the ClientHello's SNI, inside
/// `process_tls_records` on the session's thread.
pub(super) fn note_client_hello_sni(name: Option<&str>) {
    // `try_with`: during thread teardown there is no session to tell.
    let _ = HELLO_SNI.try_with(|sni| sni.set(name.map(Box::from)));
}

fn take_client_hello_sni() -> Option<Box<str>> {
    HELLO_SNI.try_with(Cell::take).ok().flatten()
}

/// Runs `f` with the thread's scratch buffer, emptied (a fresh one if it
/// is in use or the thread is being torn down, neither of which happens on
/// the runtime's paths).
fn with_scratch<R>(key: &'static LocalKey<Cell<Vec<u8>>>, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = key.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    if buf.capacity() <= SCRATCH_KEEP {
        let _ = key.try_with(|cell| cell.set(buf));
    }
    r
}

/// Runs `f` with the thread's input scratch buffer, emptied: where
/// `established` decrypts whole records in place too.
pub(super) fn with_input_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    with_scratch(&INPUT, f)
}

/// Appends every decrypted record `$records` (a `ReadTraffic` or
/// `ReadEarlyData`) has to `$plaintext`; evaluates to the error that
/// stopped it, if any. A macro because the two types share no trait and
/// each record borrows from its reader.
macro_rules! drain_records {
    ($records:ident, $discard:ident, $plaintext:ident, $feed:ident) => {{
        let mut error = None;
        while let Some(record) = $records.next_record() {
            match record {
                Ok(record) => {
                    $discard += record.discard;
                    $plaintext.extend_from_slice(record.payload);
                    $feed.plaintext += record.payload.len();
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        error
    }};
}

pub(super) struct UnbufferedServer {
    conn: UnbufferedServerConnection,
    /// Input rustls still needs between calls: pending handshake fragments
    /// followed by an incomplete record. Capacity 0 when empty.
    held: Vec<u8>,
    /// How many bytes at the end of `held` are the incomplete record.
    tail: usize,
    /// Plaintext sealed before rustls can encrypt (a TLS 1.2 handshake in
    /// progress), sent as soon as it can. Capacity 0 when empty.
    early: Vec<u8>,
    sni: Option<Box<str>>,
    /// The error that ended the session; boxed so a live session pays 8 B.
    failed: Option<Box<rustls::Error>>,
    reported_handshake: bool,
    peer_closed: bool,
    sent_close: bool,
    /// The config lets rustls hand the secrets over (`established`).
    can_establish: bool,
}

impl UnbufferedServer {
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        let can_establish = config.enable_secret_extraction;
        Ok(Self {
            conn: UnbufferedServerConnection::new(config)?,
            held: Vec::new(),
            tail: 0,
            early: Vec::new(),
            sni: None,
            failed: None,
            reported_handshake: false,
            peer_closed: false,
            sent_close: false,
            can_establish,
        })
    }

    /// The handshake is over and nothing is left in rustls' hands: no
    /// record queued to send, no handshake fragment held (an incomplete
    /// record is fine: rustls has not read it, so its sequence numbers
    /// still fit), no early plaintext, no close either way.
    pub(super) fn ready_to_establish(&self) -> bool {
        self.can_establish
            && self.failed.is_none()
            && !self.conn.is_handshaking()
            && !self.conn.wants_write()
            && self.tail == self.held.len()
            && self.early.is_empty()
            && !self.peer_closed
            && !self.sent_close
    }

    /// Hands the connection's secrets over (after
    /// [`UnbufferedServer::ready_to_establish`]).
    pub(super) fn establish(self) -> Result<Handover, rustls::Error> {
        let kind = self.conn.handshake_kind().unwrap_or(HandshakeKind::Full);
        let alpn = self.conn.alpn_protocol().map(Box::from);
        let (secrets, kernel) = self.conn.dangerous_into_kernel_connection()?;
        Ok(Handover {
            kernel,
            secrets,
            held: self.held,
            sni: self.sni,
            alpn,
            kind,
        })
    }

    pub(super) fn pending(&mut self, out: &mut Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        while self.conn.wants_write() {
            match self.conn.process_tls_records(&mut self.held).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out),
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
    }

    pub(super) fn feed(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Feed, TlsError> {
        if let Some(error) = &self.failed {
            let error = (**error).clone();
            return Err(self.refail(error));
        }
        let mut feed = Feed {
            peer_closed: self.peer_closed,
            ..Feed::default()
        };
        if self.peer_closed || ciphertext.is_empty() {
            // Nothing after close_notify counts (RFC 8446 section 6.1).
            return Ok(feed);
        }
        let watch_sni = self.sni.is_none() && self.conn.is_handshaking();
        if watch_sni {
            take_client_hello_sni();
        }
        let held = mem::take(&mut self.held);
        let result = if held.is_empty() {
            with_scratch(&INPUT, |buf| {
                buf.extend_from_slice(ciphertext);
                let keep = self.run(buf, 0, plaintext, out, &mut feed)?;
                // Sized to fit (an empty slice allocates nothing).
                self.held = buf[keep..].to_vec();
                Ok(())
            })
        } else {
            // Appending to what the session holds and keeping the same
            // `Vec` makes a record that arrives a byte at a time cost
            // amortised O(1) per byte, not a copy of the record per byte.
            let mut buf = held;
            let record_start = buf.len() - self.tail;
            buf.extend_from_slice(ciphertext);
            self.run(&mut buf, record_start, plaintext, out, &mut feed)
                .map(|keep| {
                    buf.drain(..keep);
                    if buf.is_empty() {
                        buf = Vec::new();
                    } else if buf.capacity() > MAX_HELD {
                        // Grown by a long input that rustls consumed:
                        // back to what is left, at most one record.
                        buf.shrink_to_fit();
                    }
                    self.held = buf;
                })
        };
        if watch_sni {
            self.sni = take_client_hello_sni();
        }
        result?;
        if !self.reported_handshake && !self.conn.is_handshaking() {
            self.reported_handshake = true;
            feed.handshake_completed = true;
        }
        Ok(feed)
    }

    /// Has rustls process `buf`, whose records from `record_start` on have
    /// not been seen yet; returns where what rustls still needs begins.
    fn run(
        &mut self,
        buf: &mut [u8],
        record_start: usize,
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
        feed: &mut Feed,
    ) -> Result<usize, TlsError> {
        let incomplete = check_records(buf, record_start);
        let mut done = 0;
        let mut read_error = None;
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut buf[done..]);
            match state {
                Err(error) => return Err(self.fail(error)),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    read_error = drain_records!(records, discard, plaintext, feed);
                }
                // Only reached if a config enables 0-RTT (TlsServer's does
                // not: `max_early_data_size` stays 0). The records must be
                // drained or rustls stops here; they are the start of the
                // stream, so they go where the rest of it goes.
                Ok(ConnectionState::ReadEarlyData(mut records)) => {
                    read_error = drain_records!(records, discard, plaintext, feed);
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, out),
                // Everything encoded is in `out` already; the caller sends it.
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    done += discard;
                    if !self.early.is_empty() {
                        let early = mem::take(&mut self.early);
                        if let Err(e) = seal_stream(&mut traffic, [&early[..]], out) {
                            return Err(self.fail(encrypt_error(e)));
                        }
                    }
                    break;
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    done += discard;
                    break;
                }
                // rustls ignores whatever follows close_notify; so do we.
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                    self.peer_closed = true;
                    feed.peer_closed = true;
                    done = buf.len();
                    break;
                }
                Ok(other) => {
                    let error = rustls::Error::General(format!("unexpected TLS state {other:?}"));
                    return Err(self.fail(error));
                }
            }
            done += discard;
            if let Some(error) = read_error {
                return Err(self.fail(error));
            }
        }
        let keep = done.min(buf.len());
        let left = buf.len() - keep;
        if left > MAX_HELD {
            // Only a handshake message split over records gets here: an
            // incomplete record alone is at most MAX_HELD.
            return Err(self.fail(rustls::Error::InvalidMessage(
                InvalidMessage::HandshakePayloadTooLarge,
            )));
        }
        self.tail = (buf.len() - incomplete).min(left);
        Ok(keep)
    }

    pub(super) fn seal(&mut self, plaintext: &[&[u8]], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            let error = (**error).clone();
            return Err(self.refail(error));
        }
        if plaintext.iter().all(|s| s.is_empty()) {
            return Ok(());
        }
        if self.sent_close {
            return Err(self.fail(rustls::Error::General(
                "connection no longer accepts data".into(),
            )));
        }
        loop {
            // `held` holds nothing rustls has not processed but an
            // incomplete record, so this call reads no input; passing it
            // keeps rustls' offsets into pending handshake fragments valid.
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut self.held);
            let step = match state {
                Err(error) => Err(error),
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode(&mut e, out);
                    Ok(false)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    Ok(false)
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    Ok(false)
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let early = mem::take(&mut self.early);
                    let stream = std::iter::once(&early[..]).chain(plaintext.iter().copied());
                    seal_stream(&mut traffic, stream, out)
                        .map(|()| true)
                        .map_err(encrypt_error)
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    // What the buffered connection did too: keep it until
                    // the handshake lets rustls encrypt (`feed` sends it).
                    for s in plaintext {
                        self.early.extend_from_slice(s);
                    }
                    Ok(true)
                }
                Ok(other) => Err(rustls::Error::General(format!(
                    "cannot seal in unbuffered TLS state {other:?}"
                ))),
            };
            self.discard_held(discard);
            match step {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => return Err(self.fail(error)),
            }
        }
    }

    pub(super) fn close_notify(&mut self, out: &mut Vec<u8>) {
        if self.sent_close || self.failed.is_some() {
            return;
        }
        self.sent_close = true;
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process_tls_records(&mut self.held);
            let finished = match state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    encode(&mut e, out);
                    false
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    false
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    false
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let early = mem::take(&mut self.early);
                    // Data sealed before the handshake ended goes first; if
                    // it cannot be encrypted the close_notify still goes.
                    let _ = seal_stream(&mut traffic, [&early[..]], out);
                    let _ = write_into(out, QUEUED_SLACK, |buf| traffic.queue_close_notify(buf));
                    true
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    // Nothing we send is encrypted yet: rustls only blocks
                    // a server before its TLS 1.2 Finished or its TLS 1.3
                    // ServerHello, so a plaintext alert is the right one.
                    out.extend_from_slice(&PLAINTEXT_CLOSE_NOTIFY);
                    true
                }
                _ => true,
            };
            self.discard_held(discard);
            if finished {
                return;
            }
        }
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub(super) fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    pub(super) fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    pub(super) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    pub(super) fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Capacity of the input the session holds between calls (tests).
    #[cfg(test)]
    pub(super) fn held_capacity(&self) -> usize {
        self.held.capacity()
    }

    fn discard_held(&mut self, discard: usize) {
        if discard > 0 {
            self.held.drain(..discard.min(self.held.len()));
            self.tail = self.tail.min(self.held.len());
            if self.held.is_empty() {
                self.held = Vec::new();
            }
        }
    }

    /// Ends the session: what rustls queued (its alert) goes into the
    /// error; during the handshake a plaintext fatal alert stands in when
    /// rustls queued none (as the buffered version's `fail` does).
    fn fail(&mut self, error: rustls::Error) -> TlsError {
        self.held = Vec::new();
        self.tail = 0;
        self.early = Vec::new();
        let mut alert = Vec::new();
        // `wants_write` means rustls has records queued, and while it has,
        // `process_tls_records` hands them out before it reads any input,
        // so the empty buffer is never looked at.
        while self.conn.wants_write() {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut e)) => encode(&mut e, &mut alert),
                _ => break,
            }
        }
        self.failed = Some(Box::new(error.clone()));
        self.refail_with(error, alert)
    }

    /// The session already failed: the same error again, and during the
    /// handshake the plaintext alert again (the error's own alert went out
    /// with the first failure).
    fn refail(&mut self, error: rustls::Error) -> TlsError {
        self.refail_with(error, Vec::new())
    }

    fn refail_with(&mut self, error: rustls::Error, mut alert: Vec<u8>) -> TlsError {
        if alert.is_empty() && self.conn.is_handshaking() {
            alert.extend_from_slice(&plaintext_fatal_alert(&error));
        }
        TlsError { error, alert }
    }
}

/// Walks record headers from `at` (the start of a record) and returns
/// where the incomplete record at the end of `buf` starts (`buf.len()` if
/// every record is complete). A header announcing a body over
/// [`MAX_RECORD_BODY`] has its length raised to 0xFFFF, which rustls
/// refuses from the header alone (its own limit is 18,431) with a
/// decode_error alert, encrypted once the handshake has keys; otherwise
/// rustls would wait for up to 18,436 bytes before refusing it.
fn check_records(buf: &mut [u8], mut at: usize) -> usize {
    while let Some(header) = buf.get_mut(at..at + HEADER) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len > MAX_RECORD_BODY {
            header[3] = 0xff;
            header[4] = 0xff;
            return at;
        }
        if buf.len() - at < HEADER + len {
            return at;
        }
        at += HEADER + len;
    }
    at
}

/// Moves one queued handshake/alert record into `out`.
fn encode(e: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) {
    // rustls tells the size only by refusing a buffer too small; asking
    // with an empty one first costs a call and wastes no space (these are
    // handshake flights, tickets and alerts: a few per connection).
    let need = match e.encode(&mut []) {
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
        // An empty chunk, or one already taken: nothing to add.
        Ok(_) | Err(_) => return,
    };
    let start = out.len();
    out.resize(start + need, 0);
    match e.encode(&mut out[start..]) {
        Ok(n) => out.truncate(start + n),
        Err(_) => out.truncate(start),
    }
}

/// Appends what `f` writes to `out`, giving it `guess` bytes first and
/// exactly what rustls asks for if that was too few.
fn write_into(
    out: &mut Vec<u8>,
    guess: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let start = out.len();
    out.resize(start + guess, 0);
    let written = match f(&mut out[start..]) {
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            out.resize(start + required_size, 0);
            f(&mut out[start..])
        }
        other => other,
    };
    match written {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn encrypt(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncryptError> {
    let records = data.len().div_ceil(RECORD_PLAINTEXT);
    let guess = data.len() + records * RECORD_OVERHEAD + QUEUED_SLACK;
    write_into(out, guess, |buf| traffic.encrypt(data, buf))
}

/// Encrypts the slices as one stream: full 16 KiB records whatever the
/// split. A lone slice, and whole records' worth of a long one, go to
/// rustls as they are; short slices are gathered first.
fn seal_stream<'a>(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    slices: impl IntoIterator<Item = &'a [u8]> + Clone,
    out: &mut Vec<u8>,
) -> Result<(), EncryptError> {
    let mut non_empty = slices.clone().into_iter().filter(|s| !s.is_empty());
    let first = non_empty.next();
    if let (Some(only), None) = (first, non_empty.next()) {
        return encrypt(traffic, only, out);
    }
    if first.is_none() {
        return Ok(());
    }
    with_scratch(&GATHER, |gather| {
        for mut s in slices {
            while !s.is_empty() {
                if gather.is_empty() && s.len() >= RECORD_PLAINTEXT {
                    let whole = s.len() - s.len() % RECORD_PLAINTEXT;
                    encrypt(traffic, &s[..whole], out)?;
                    s = &s[whole..];
                    continue;
                }
                let take = (RECORD_PLAINTEXT - gather.len()).min(s.len());
                gather.extend_from_slice(&s[..take]);
                s = &s[take..];
                if gather.len() == RECORD_PLAINTEXT {
                    encrypt(traffic, gather, out)?;
                    gather.clear();
                }
            }
        }
        if gather.is_empty() {
            Ok(())
        } else {
            encrypt(traffic, gather, out)
        }
    })
}

fn encrypt_error(e: EncryptError) -> rustls::Error {
    rustls::Error::General(format!("sealing: {e}"))
}
