//! TLS between the socket and the WebSocket core (`wss://`, `https://`):
//! received ciphertext is decrypted before the handshake parser or the
//! frame decoder sees a byte, and everything queued for a connection in a
//! turn is sealed into as few records as possible (16 KiB each) in the
//! flush, one send. The sans-IO session is `crate::tls::TlsSession`; this
//! file drives it from the ring's completions.
//!
//! # Where the state lives
//!
//! A TLS connection's session is in [`TlsConns`], a map beside the
//! connection slab keyed like it, not in `Conn`: a field there would cost
//! every plain connection 8 bytes (an `Option<Box<_>>`), and plain
//! connections are the hundreds of thousands. A lookup (~10-20 ns) is
//! nothing next to the AES-GCM work of the same receive or send.
//!
//! # Frame once, seal per connection
//!
//! Fan-out keeps framing a message once: every subscriber's queue holds the
//! same shared frame. Each TLS connection has its own keys, so sealing is
//! per connection; it happens here, in the flush, over everything the
//! connection has queued, so a burst of 64 small messages costs one or two
//! records, not 64.
//!
//! # Handshake budget
//!
//! A full TLS 1.3 server flight (key share, certificate, an ECDSA P-256
//! signature) costs far more than an HTTP upgrade. A shard computes at
//! most `Config::tls_handshakes_per_turn` flights per loop turn; input of
//! connections past it is kept (ciphertext, in `rx`) for later turns,
//! oldest first, like request heads past `handshakes_per_turn`. A storm of
//! TLS handshakes thus queues, and fan-out keeps its turn. The handshake
//! deadline (`--handshake-timeout`) runs from the accept, so it covers the
//! TLS handshake and the HTTP request together.

use super::app::App;
use super::config::Config;
use super::conn::{Phase, SendOp};
use super::inbound;
use super::mailbox::Mailbox;
use super::shard::Shard;
use super::table::ConnTable;
use super::timer::Ticks;
use crate::metrics::inc;
use crate::sendbuf::SendBuf;
use crate::tls::{TlsError, TlsSession};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Most plaintext sealed into one send: 16 records. A subscriber far
/// behind (up to the broker's 1 MiB) goes out in several sends, each
/// followed by its completion, as plain connections' 512-frame sends do.
const SEAL_MAX: usize = 256 * 1024;

/// The decryption scratch buffer is freed past this once a receive is
/// handled (one receive's plaintext is at most its ciphertext, a receive
/// buffer: 16 KiB by default).
const KEEP_PLAIN: usize = 64 * 1024;

/// Most ciphertext kept for a connection whose handshake waits for a later
/// turn: a ClientHello with every extension a browser sends is under 2 KB
/// (8 KB with a hybrid post-quantum key share), and nothing else may come
/// before our answer to it.
const MAX_DEFERRED: usize = 32 * 1024;

/// One connection's TLS: the session and its ciphertext waiting to go.
pub struct TlsConn {
    pub session: TlsSession,
    /// Ciphertext to send, in the order the session produced it: handshake
    /// flights, tickets, alerts, sealed frames. Empty (no capacity) when
    /// idle: each send takes the buffer.
    out: Vec<u8>,
    /// A fatal error ended the session: nothing more is read or sealed;
    /// `out` holds its alert.
    failed: bool,
    /// Our `close_notify` is queued.
    close_notified: bool,
    /// The peer sent `close_notify`.
    peer_closed: bool,
    /// The handshake completed (counted in the metrics once).
    established: bool,
    /// The first flight was computed (and charged to the turn's budget).
    flight_charged: bool,
}

/// Every TLS connection of a shard, by connection key, and the shard's
/// TLS handshake budget for the current turn.
#[derive(Default)]
pub struct TlsConns {
    conns: FxHashMap<u32, Box<TlsConn>>,
    /// Flights this turn may still compute (`Config::tls_handshakes_per_turn`).
    pub budget: usize,
    /// Decrypted bytes of the receive being handled (reused).
    plain: Vec<u8>,
    /// Frames of the send being sealed (reused).
    frames: Vec<SendBuf>,
}

impl TlsConns {
    pub fn insert(&mut self, key: u32, session: TlsSession) -> &mut TlsConn {
        let t = Box::new(TlsConn {
            session,
            out: Vec::new(),
            failed: false,
            close_notified: false,
            peer_closed: false,
            established: false,
            flight_charged: false,
        });
        self.conns.entry(key).insert_entry(t).into_mut()
    }

    /// The session still runs its handshake (so the connection's `rx`
    /// holds ciphertext).
    pub fn handshaking(&self, key: u32) -> bool {
        self.conns
            .get(&key)
            .is_some_and(|t| !t.failed && t.session.is_handshaking())
    }

    /// Ciphertext waits to be sent.
    pub fn has_out(&self, key: u32) -> bool {
        self.conns.get(&key).is_some_and(|t| !t.out.is_empty())
    }

    /// Forget a released connection's session. Returns whether its
    /// handshake neither completed nor failed (it counts as incomplete);
    /// `None` if it had no session.
    pub fn remove(&mut self, key: u32) -> Option<bool> {
        self.conns.remove(&key).map(|t| !t.established && !t.failed)
    }
}

/// Bytes arrived for TLS connection `key`: decrypt them and hand the
/// plaintext to the plain inbound path. The same contract as
/// `inbound::delivered`: false when nothing was parsed (kept for later).
pub(super) fn delivered<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    data: &[u8],
) -> bool {
    let now = table.now;
    let me = table.me;
    let (Some(c), Some(t)) = (
        table.conns.get_mut(key as usize),
        table.tls.conns.get_mut(&key),
    ) else {
        return false;
    };
    let stats = &table.stats[me];
    let handshaking = t.session.is_handshaking();
    // An answer queued before the handshake ended (a 429 from the
    // per-address limits, decided at the accept) goes out inside TLS once
    // the handshake is done: the handshake goes on for it.
    let answering = c.phase == Phase::Flushing && handshaking && !c.tx.is_empty();
    let reading = matches!(c.phase, Phase::Handshake | Phase::Http | Phase::Open) || answering;
    if !reading || t.failed || t.peer_closed {
        // Closing: input is read only to notice EOF (as on plain ones).
        return true;
    }
    // Only the first flight (the answer to the ClientHello: key share,
    // certificate, signature) is dear and budgeted; what follows it (the
    // client's Finished, answered with tickets) is not held back.
    let dear = handshaking && !c.outbound() && !t.flight_charged;
    if dear && (c.deferred() || table.tls.budget == 0) {
        // This turn's flights are spent: keep the ciphertext (no plaintext
        // exists before the handshake completes) for the next. An honest
        // client sends nothing past its ClientHello before our flight, so
        // more than `MAX_DEFERRED` is an attack: drop it.
        if c.rx.len() + data.len() > MAX_DEFERRED {
            inc(&stats.tls_handshakes_failed, 1);
            t.failed = true;
            c.phase = Phase::Dead;
            c.rx.clear();
            c.tx.clear();
            table.mark(key);
            return false;
        }
        c.rx.extend_from_slice(data);
        if !c.deferred() {
            c.set_deferred(true);
            table.deferred.push(key);
            inc(&stats.tls_handshakes_deferred_total, 1);
        }
        return false;
    }
    // Counted here, not above: deferred bytes come back through here.
    inc(&stats.tls_bytes_received_total, data.len() as u64);
    let mut plain = std::mem::take(&mut table.tls.plain);
    plain.clear();
    let before = t.out.len();
    let fed = t.session.feed(data, &mut plain, &mut t.out);
    if dear && t.out.len() > before {
        t.flight_charged = true;
        table.tls.budget = table.tls.budget.saturating_sub(1);
    }
    let mut parsed = true;
    match fed {
        Err(e) => fail(table, key, e, handshaking, now),
        Ok(f) => {
            if f.handshake_completed {
                t.established = true;
                inc(
                    if t.session.resumed() {
                        &stats.tls_handshakes_resumed
                    } else {
                        &stats.tls_handshakes_full
                    },
                    1,
                );
            }
            if f.peer_closed {
                t.peer_closed = true;
            }
            // Something to send (a flight, a ticket), or, outbound, the
            // upgrade request waiting in the queue for the handshake.
            table.mark(key);
            if !plain.is_empty() {
                parsed = inbound::delivered_plain(app, table, mail, config, key, &mut plain);
            }
            if f.peer_closed {
                // The peer will send nothing more: as an EOF, answer what
                // is queued (then our close_notify), then close. Reading
                // paused: what waits unparsed is answered first, then
                // `resume_read` closes (it sees the EOF).
                if let Some(c) = table.conns.get_mut(key as usize) {
                    if c.read_paused() || c.http_waiting() {
                        c.set_eof(true);
                    } else if matches!(c.phase, Phase::Handshake | Phase::Http | Phase::Open) {
                        c.rx.clear();
                        c.phase = Phase::Flushing;
                        c.since = now;
                    }
                }
                table.mark(key);
            }
        }
    }
    plain.clear();
    if plain.capacity() > KEEP_PLAIN {
        plain = Vec::new();
    }
    table.tls.plain = plain;
    parsed
}

/// The session failed: send its alert, then close. Nothing more is read,
/// and what was queued is dropped (it could not be sealed).
fn fail(table: &mut ConnTable, key: u32, e: TlsError, handshaking: bool, now: Ticks) {
    // Outbound: the application hears why (`connect_failed`), e.g. an
    // untrusted certificate, not just that the connection closed.
    if let Some(o) = table.outbound.get_mut(&key) {
        o.error.get_or_insert_with(|| e.to_string());
    }
    let stats = &table.stats[table.me];
    if let Some(t) = table.tls.conns.get_mut(&key) {
        t.failed = true;
        t.out.extend_from_slice(&e.alert);
    }
    inc(
        if handshaking {
            &stats.tls_handshakes_failed
        } else {
            &stats.tls_errors_total
        },
        1,
    );
    if let Some(c) = table.conns.get_mut(key as usize) {
        c.rx.clear();
        c.tx.clear();
        if matches!(c.phase, Phase::Handshake | Phase::Http | Phase::Open) {
            c.phase = Phase::Flushing;
            c.since = now;
        }
    }
    table.mark(key);
}

impl<M> Shard<M> {
    /// An accepted connection speaks TLS: give it a session.
    pub(super) fn tls_accepted(&mut self, key: u32) {
        let Some(listen) = &self.config.tls else {
            self.kill(key);
            return;
        };
        match TlsSession::new(listen.server.config()) {
            Ok(s) => {
                self.table.tls.insert(key, s);
            }
            Err(e) => {
                // Only a broken configuration fails here (rustls checks
                // it when building the ServerConfig).
                eprintln!("ringfan: tls: {e}");
                self.kill(key);
            }
        }
    }

    /// The session of a released connection goes; one whose handshake
    /// neither completed nor failed is counted as incomplete.
    pub(super) fn tls_released(&mut self, key: u32) {
        if self.table.tls.remove(key) == Some(true) {
            inc(&self.table.my_stats().tls_handshakes_incomplete, 1);
        }
    }

    /// Seal what TLS connection `key` has queued (up to [`SEAL_MAX`]) and
    /// move its ciphertext into `op`, ready to send. Frames wait while the
    /// handshake runs (nothing is sealed before it completes). False if
    /// the session failed sealing (the connection is killed).
    pub(super) fn tls_seal(&mut self, key: u32, op: &mut SendOp) -> bool {
        let (Some(c), Some(t)) = (
            self.table.conns.get_mut(key as usize),
            self.table.tls.conns.get_mut(&key),
        ) else {
            return false;
        };
        if !t.failed && !t.close_notified && !t.session.is_handshaking() && !c.tx.is_empty() {
            let mut frames = std::mem::take(&mut self.table.tls.frames);
            let mut bytes = 0;
            let stats = &self.table.stats[self.table.me];
            while bytes < SEAL_MAX {
                let Some(f) = c.tx.pop() else { break };
                if let Some(at) = f.arrived_ns() {
                    let now = *self
                        .table
                        .send_ns
                        .get_or_insert_with(super::flush::send_clock);
                    stats
                        .publish_to_send_seconds
                        .observe_ns(now.saturating_sub(at));
                }
                bytes += f.len();
                frames.push(f);
            }
            let slices: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            // No reserve: `out` is usually empty with no capacity here (each
            // send takes it), and then an established session's first
            // record becomes the buffer rather than being copied into one.
            let sealed = t.session.seal(&slices, &mut t.out);
            drop(slices);
            inc(
                &self.table.stats[self.table.me].frames_sent_total,
                frames.len() as u64,
            );
            frames.clear();
            self.table.tls.frames = frames;
            if let Err(e) = sealed {
                eprintln!("ringfan: tls seal: {e}");
                self.kill(key);
                return false;
            }
        }
        if !t.out.is_empty() {
            op.push(SendBuf::from(Bytes::from(std::mem::take(&mut t.out))));
        }
        true
    }

    /// A closing TLS connection whose queue is sent: queue `close_notify`
    /// (once). True if there is something to send for it.
    pub(super) fn tls_close_notify(&mut self, key: u32) -> bool {
        let Some(t) = self.table.tls.conns.get_mut(&key) else {
            return false;
        };
        if t.failed || t.close_notified || t.session.is_handshaking() {
            return !t.out.is_empty();
        }
        t.close_notified = true;
        t.session.close_notify(&mut t.out);
        !t.out.is_empty()
    }

    /// An outbound connection's socket connected: give it a client
    /// session, whose ClientHello goes first.
    pub(super) fn tls_dialed(
        &mut self,
        key: u32,
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<(), String> {
        let s = TlsSession::client(config, name).map_err(|e| e.to_string())?;
        let t = self.table.tls.insert(key, s);
        t.session.pending(&mut t.out);
        Ok(())
    }
}
