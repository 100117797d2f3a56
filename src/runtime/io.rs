//! The application's handle on its shard during a callback ([`Io`]):
//! queue frames, close, dial, post mail to other shards.

use super::app::ConnId;
use super::close_reason::SEND_QUEUE_OVERFLOW;
use super::conn::{Conn, Phase, NO_SLOT};
use super::dial::{Dial, Outbound};
use super::mailbox::Mailbox;
use super::stats::ShardStats;
use super::table::ConnTable;
use crate::metrics::inc;
use crate::sendbuf::{Offered, SendBuf};
use crate::ws::close::code;
use crate::ws::{Connection, OpCode, Role, State};
use bytes::Bytes;
use std::sync::Arc;

/// A connection as the admin view shows it ([`Io::conn_info`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address, once known.
    pub peer: Option<std::net::SocketAddr>,
    /// Bytes queued for it, each frame with its overhead (`Conn::backlog`).
    pub queued_bytes: usize,
    /// Since it was accepted, to the shard's 100 ms tick.
    pub age_ms: u64,
    pub tls: bool,
}

/// The application's handle on its shard during a callback.
pub struct Io<'a, M> {
    pub(super) table: &'a mut ConnTable,
    pub(super) mail: &'a mut Mailbox<M>,
}

impl<M> Io<'_, M> {
    /// Queue a frame (built once, shared by reference count) on a
    /// connection. False if the connection is no longer open.
    pub fn send(&mut self, id: ConnId, frame: Bytes) -> bool {
        self.offer(id, &SendBuf::Own(frame), usize::MAX) == Offered::Sent
    }

    /// Queue `frame` only if the connection's backlog is empty or stays
    /// within `limit` bytes with it: one lookup for the check and the push,
    /// and the frame is cloned only when it is queued. For fan-out under a
    /// slow-consumer policy, with a [`SendBuf::local`] share of the frame.
    pub fn offer(&mut self, id: ConnId, frame: &SendBuf, limit: usize) -> Offered {
        let cap = self.table.max_backlog;
        let deflate_min = self.table.deflate_min;
        let Some(c) = self.table.conn(id) else {
            return Offered::Gone;
        };
        if c.phase != Phase::Open || c.ws.state() != State::Open || c.has_close_req() {
            return Offered::Gone;
        }
        let backlog = c.backlog();
        // Data held by the write delay is not a slow consumer's backlog:
        // only what is in flight counts against the app's limit then.
        let behind = if c.delayed() {
            c.sending.as_ref().map_or(0, |s| s.cost())
        } else {
            backlog
        };
        let frame_cost = super::conn::cost(frame.len());
        // One frame always fits an empty queue (a message up to the
        // route's own limit, 16 MiB on /echo): the cap bounds the pile-up.
        if backlog != 0 && backlog + frame_cost > cap {
            // A peer that sends but never reads must not grow our memory
            // without bound (echo replies, acks, errors...).
            c.set_close_req(code::POLICY_VIOLATION, SEND_QUEUE_OVERFLOW);
            self.table.mark(id.key);
            return Offered::Gone;
        }
        if behind != 0 && behind + frame_cost > limit {
            return Offered::Full;
        }
        // permessage-deflate: the share's compressed variant, made once per
        // share (`SendBuf::deflated`), when it pays and fits.
        let mut compressed = false;
        let deflated =
            c.ws.deflate()
                .and_then(|a| frame.deflated(a, deflate_min, &mut compressed));
        let was_deflated = deflated.is_some();
        c.tx.push(deflated.unwrap_or_else(|| frame.clone()));
        if compressed || was_deflated {
            let stats = &self.table.stats[self.table.me];
            inc(&stats.deflate_compressions_total, u64::from(compressed));
            inc(&stats.deflate_frames_total, u64::from(was_deflated));
        }
        if frame.arrived_ns().is_some() {
            self.table.mark_first(id.key);
        } else {
            self.table.mark(id.key);
        }
        Offered::Sent
    }

    /// The client's address (accepted connections, once known: it is
    /// asked for on accept and known before the request head is read).
    /// Behind a proxy it is the real client's (`proxied.rs`): the PROXY
    /// header's source, or what a trusted proxy's `X-Forwarded-For`
    /// names, from the `upgrade` callback on.
    pub fn peer(&mut self, id: ConnId) -> Option<std::net::SocketAddr> {
        self.table.conn(id).and_then(|c| c.peer.addr())
    }

    /// Open an outbound WebSocket connection. The application hears
    /// [`App::connected`](super::App::connected) once the handshake succeeds, or
    /// [`App::connect_failed`](super::App::connect_failed); until then the id accepts no sends.
    pub fn connect(&mut self, dial: Dial) -> ConnId {
        let table = &mut *self.table;
        let mut conn = Conn::new(NO_SLOT, 0, table.now);
        conn.set_dialing(true);
        conn.phase = Phase::Connecting;
        conn.ws = Connection::new(Role::Client, 0);
        let key = table.conns.insert(conn) as u32;
        inc(&table.stats[table.me].connections_open, 1);
        let gen = table.next_gen();
        if let Some(c) = table.conns.get_mut(key as usize) {
            c.gen = gen;
        }
        table.outbound.insert(
            key,
            Box::new(Outbound {
                addr: dial.to.into(),
                dial,
                handshake: None,
                error: None,
            }),
        );
        table.dials.push(key);
        ConnId { key, gen }
    }

    /// What permessage-deflate the connection agreed, if any: the
    /// application may send it compressed frames
    /// (`ws::frame::server_frame_deflated`).
    pub fn deflate(&mut self, id: ConnId) -> Option<crate::ws::deflate::Agreed> {
        self.table.conn(id).and_then(|c| c.ws.deflate())
    }

    /// Queue one text message, framed for this connection's role (masked
    /// when we are the client). False if the connection is not open.
    pub fn send_text(&mut self, id: ConnId, payload: &[u8]) -> bool {
        let frame = match self.table.conn(id) {
            Some(c) if c.phase == Phase::Open => c.ws.encode(OpCode::Text, payload),
            _ => return false,
        };
        self.send(id, frame)
    }

    /// The close code the peer sent (or we failed the connection with),
    /// for [`App::closed`]; None if the connection just ended.
    pub fn close_code(&self, id: ConnId) -> Option<u16> {
        self.table
            .conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen && c.close_code != 0)
            .map(|c| c.close_code)
    }

    /// Close with a WebSocket close frame now; queued data is dropped.
    /// True if this call asked for it (false: gone, or already closing).
    pub fn close(&mut self, id: ConnId, status: u16, reason: &'static str) -> bool {
        match self.table.conn(id) {
            Some(c) if !c.has_close_req() && c.phase == Phase::Open => {
                if !c.set_close_req(status, reason) {
                    inc(&self.table.my_stats().close_reasons_dropped_total, 1);
                }
                self.table.mark(id.key);
                true
            }
            _ => false,
        }
    }

    /// Close with a WebSocket close frame after what is already queued
    /// (an error message that says why goes first). True if this call
    /// asked for it.
    pub fn close_after(&mut self, id: ConnId, status: u16, reason: &str) -> bool {
        if self.table.conn(id).is_none() {
            return false;
        }
        self.table.close_after_queued(id.key, status, reason)
    }

    /// Bytes queued for the connection and not yet acknowledged by the
    /// kernel's send.
    pub fn backlog(&self, id: ConnId) -> Option<usize> {
        self.table
            .conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen)
            .map(Conn::backlog)
    }

    /// Mail for shard `to`, queued whatever its backlog: for messages that
    /// must not be lost (each is bounded by a client's own request).
    pub fn post(&mut self, to: usize, mail: M) {
        self.mail.post(to, mail);
    }

    /// Mail for shard `to` only if its ring has room now; the mail comes
    /// back otherwise, for the app to refuse or shed. This is what bounds
    /// the memory a shard that has fallen behind can make others hold.
    pub fn try_post(&mut self, to: usize, mail: M) -> Result<(), M> {
        self.mail.try_post(to, mail)
    }

    /// Milliseconds since the shard started, as of this loop turn (the
    /// deadline wheel's clock: 100 ms resolution).
    /// What the admin view shows of a connection, if it is still open.
    pub fn conn_info(&self, id: ConnId) -> Option<ConnInfo> {
        let c = self.table.conns.get(id.key as usize)?;
        if c.gen != id.gen {
            return None;
        }
        let tick = super::timer::TICK.as_millis() as u64;
        Some(ConnInfo {
            peer: c.peer.addr(),
            queued_bytes: c.backlog(),
            age_ms: u64::from(self.table.now.saturating_sub(c.opened)) * tick,
            tls: c.tls(),
        })
    }

    /// Was the connection accepted on the admin listener?
    pub fn is_admin(&self, id: ConnId) -> bool {
        self.table
            .conns
            .get(id.key as usize)
            .is_some_and(|c| c.gen == id.gen && c.admin())
    }

    pub fn now_ms(&self) -> u64 {
        self.table.now as u64 * super::timer::TICK.as_millis() as u64
    }

    /// Monotonic nanoseconds since the process-wide epoch
    /// ([`crate::metrics::clock`]), as of the top of this loop turn.
    pub fn now_ns(&self) -> u64 {
        self.table.turn_ns
    }

    /// Does mail for shard `to` wait in the backlog behind a full ring?
    /// The app refuses work that would add to it (see `post`).
    pub fn mail_waiting(&self, to: usize) -> bool {
        self.mail.backlogged(to)
    }

    pub fn shard(&self) -> usize {
        self.table.me
    }

    pub fn shards(&self) -> usize {
        self.mail.shards()
    }

    /// Whether [`App::mail`]'s `from` is the outside: mail through the
    /// shard's external inbox ([`super::external`]) comes `from ==
    /// shards()`, one past the last shard.
    ///
    /// [`App::mail`]: super::App::mail
    pub fn is_external(&self, from: usize) -> bool {
        from == self.shards()
    }

    /// Every shard's runtime counters.
    pub fn stats(&self) -> &Arc<[ShardStats]> {
        &self.table.stats
    }

    /// The server is shutting down (health checks should fail).
    pub fn draining(&self) -> bool {
        self.table.draining
            || self
                .table
                .stopping
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}
