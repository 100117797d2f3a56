//! A shard's connection table: the slab of connections, the line of those
//! with something to flush, and the shard facts the application may read
//! through [`super::io::Io`].

use super::app::ConnId;
use super::conn::{Conn, Phase};
use super::dial::Outbound;
use super::peer::PeerLimits;
use super::stats::ShardStats;
use super::timer::Ticks;
use super::tls::TlsConns;
use super::token;
use rustc_hash::FxHashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::sync::Arc;

/// The connection in slot `key` if it is still generation `gen` (a late
/// completion for a closed connection finds nothing). A function of the
/// slab alone, so callers keep the rest of the shard borrowable.
pub fn live(conns: &mut Slab<Conn>, key: u32, gen: u32) -> Option<&mut Conn> {
    conns.get_mut(key as usize).filter(|c| c.gen == gen)
}

/// The admin listener's request heads a turn parses even when its
/// `handshake_budget` is spent (`inbound::delivered_plain`,
/// `Shard::run_deferred`); past them they wait like any other. Probes and
/// scrapers send a few a second; the cap keeps a flood of them, from
/// whoever reaches the listener, from taking a storm's turns and the
/// flush's first line (`ConnTable::queue`) without bound.
pub const ADMIN_HEADS_PER_TURN: usize = 16;

/// Connection state the application may touch through [`super::io::Io`].
pub struct ConnTable {
    pub me: usize,
    pub conns: Slab<Conn>,
    /// Connections with something for the flush step, in the order they
    /// got it: the flush serves them first come, first served.
    pub dirty: VecDeque<u32>,
    /// Connections whose next step an established peer waits on: a
    /// fan-out frame to send, a receive to re-arm (`mark_first`). The
    /// flush serves this line ahead of `dirty`, so a subscriber's delivery
    /// or a publisher's next read never waits behind a storm's handshake,
    /// snapshot and close replies (issue #11).
    pub first: VecDeque<u32>,
    pub now: Ticks,
    /// `metrics::clock` nanoseconds at the top of this loop turn: when
    /// what the turn reads arrived (`Io::now_ns`).
    pub turn_ns: u64,
    /// The same clock read again for this turn's send submissions, once,
    /// when the first frame with an arrival time is submitted
    /// (`flush::send_clock`); cleared at the top of each turn and flush.
    pub send_ns: Option<u64>,
    pub stats: Arc<[ShardStats]>,
    pub draining: bool,
    /// The process-wide shutdown flag this shard's tick turns into
    /// `draining`; read directly by `Io::draining`, so a health check on
    /// a shard whose tick has not come yet already says so.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Most bytes one connection may have queued (see `Config`).
    pub max_backlog: usize,
    /// Past this backlog a connection's input is no longer parsed (see
    /// `Config::max_backlog_read`).
    pub max_backlog_read: usize,
    /// permessage-deflate's smallest compressed message (see `Config`).
    pub deflate_min: usize,
    /// Connections upgraded to WebSocket only while fewer than this many
    /// are open: the rest of the descriptor table is kept for plain HTTP.
    pub max_upgraded: usize,
    /// Outbound connections waiting for their socket (made in the flush
    /// step, where the ring is at hand).
    pub dials: Vec<u32>,
    /// The last generation handed out.
    pub gen: u32,
    /// Outbound connections until they open: where to, and the handshake
    /// to verify the answer with.
    pub outbound: FxHashMap<u32, Box<Outbound>>,
    /// Request heads this turn may still parse (`Config::handshakes_per_turn`).
    pub handshake_budget: usize,
    /// The admin listener's request heads this turn may still parse past
    /// `handshake_budget` ([`ADMIN_HEADS_PER_TURN`]).
    pub admin_budget: usize,
    /// Connections whose request head waits, in `rx`, for a later turn's
    /// budget, in arrival order (TLS ones also for their handshake's).
    pub deferred: Vec<u32>,
    /// TLS connections' sessions (`runtime::tls`).
    pub tls: TlsConns,
    /// The per-address counts, shared by every shard (`peer.rs`); here so
    /// that the request head, behind a trusted proxy, can count its client.
    pub peers: Arc<PeerLimits>,
}

impl ConnTable {
    pub fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        live(&mut self.conns, id.key, id.gen)
    }

    /// Queue a close frame behind what is already queued (the drain's
    /// 1001; an `err` and then the close): the peer has the close timeout
    /// to answer from now. False if the connection is not open, or
    /// already closing.
    pub fn close_after_queued(&mut self, key: u32, status: u16, reason: &str) -> bool {
        let now = self.now;
        let Some(c) = self.conns.get_mut(key as usize) else {
            return false;
        };
        if c.phase != Phase::Open || c.has_close_req() {
            return false;
        }
        let Some(f) = c.ws.close(status, reason) else {
            return false;
        };
        c.tx.push(f);
        c.since = now;
        self.mark(key);
        true
    }

    /// Whether a request head goes past a spent `handshake_budget`: the
    /// admin listener's do while `admin_budget` lasts
    /// ([`ADMIN_HEADS_PER_TURN`] a turn), so that a storm's heads cannot
    /// keep a probe waiting (see `queue`). Takes the budget, not `self`,
    /// so callers holding a connection borrowed from `conns` can ask.
    pub fn head_skips_budget(admin: bool, admin_budget: usize) -> bool {
        admin && admin_budget > 0
    }

    /// A request head was parsed: count it in the budget it drew on.
    pub fn spend_head(&mut self, admin: bool) {
        let budget = if Self::head_skips_budget(admin, self.admin_budget) {
            &mut self.admin_budget
        } else {
            &mut self.handshake_budget
        };
        *budget = budget.saturating_sub(1);
    }

    pub fn mark(&mut self, key: u32) {
        self.queue(key, false);
    }

    /// `mark`, into the first line (see `first`), unless the connection
    /// already waits in either line.
    pub fn mark_first(&mut self, key: u32) {
        self.queue(key, true);
    }

    /// Put a connection in line for the flush once (`Conn::dirty` says it
    /// waits in one of the two). The admin listener's connections always
    /// take the first line: probes and scrapes there are what an operator
    /// (or a load balancer's health check) sees of a storm, and in the
    /// regular line they waited behind its replies, 16 a turn: `/healthz`
    /// answered 1.0-1.9 s late through the storm on this VM
    /// (docs/benchmarks.md, "Probes during a storm"). The listener is the
    /// operator's own (loopback or a private network), so nobody can
    /// crowd deliveries out through it.
    fn queue(&mut self, key: u32, first: bool) {
        if let Some(c) = self.conns.get_mut(key as usize) {
            if !c.dirty() {
                c.set_dirty(true);
                let line = if first || c.admin() {
                    &mut self.first
                } else {
                    &mut self.dirty
                };
                line.push_back(key);
            }
        }
    }

    /// Nothing waits for the flush step.
    pub fn clean(&self) -> bool {
        self.dirty.is_empty() && self.first.is_empty()
    }

    pub fn my_stats(&self) -> &ShardStats {
        &self.stats[self.me]
    }

    pub fn next_gen(&mut self) -> u32 {
        self.gen = self.gen.wrapping_add(1) & token::GEN_MASK;
        self.gen
    }
}
