//! Subscription requests on both sides: the owner answers each, serving a
//! snapshot in steps of at most `BrokerConfig::snapshot_step` topics
//! across loop turns, and the subscriber's shard takes the steps in.
//!
//! A wildcard snapshot of 200,000 topics took one ~400 ms turn (the shard
//! and its `/healthz` stalled); now each turn does one step. The exactness
//! argument is `owner::Scan`'s: the subscription is in force on the owner
//! before its scan starts, the owner's first step marks the start on the
//! FIFO ring, live messages after it go through (`Subscriber::started`),
//! and later steps leave out topics published since.
//!
//! What paces a scan: the client reading it. A local subscriber's scan goes
//! on when the subscriber's queue has drained (`Broker::writable`), or at
//! the next tick (`Broker::tick`, 100 ms) if nothing was sent: the runtime
//! has no mail to oneself to wake the shard on the next turn. A remote
//! subscriber's shard asks for the next step (`Mail::SnapMore`) the same
//! way: at once if the step queued nothing, else once the queue drained or
//! at a tick that finds it empty, so at most one step per scan is in the
//! mail or in the queue. Asking as soon as a step was taken in let a
//! 200,000-topic scan outrun its reader: closed as a slow consumer after
//! ~12,000 messages (1 MiB), where a local one got all. Either way a client
//! whose queue does not drain for [`STUCK_TICKS`] gets the next step anyway,
//! and a close or an unsubscribe tells the owner to stop at once.
//!
//! An owner serves one request of a connection at a time: later ones
//! (a `sub` without snapshot too) wait until its scan is done, so a scan
//! never runs beside another of the same connection on the same owner,
//! each sees the earlier ones in force, and their replies keep the order
//! of the requests.

use std::collections::VecDeque;

use super::engine::{live, Broker};
use super::host::{Client, Host};
use super::mail::Mail;
use super::owner::Scan;
use super::wire::TopicAt;
use crate::metrics::inc;
use crate::sendbuf::{Framed, SendBuf};

/// A subscribing connection, as its owners know it: its shard and id.
pub(super) type ConnKey = (usize, Client);

/// What an owner serves one connection.
#[derive(Default)]
pub(super) struct Served {
    /// The request whose snapshot is being scanned, if any.
    active: Option<Active>,
    /// Requests that came after it, in order.
    queued: VecDeque<SubAsk>,
    /// Cluster mode: the request whose snapshot waits for reads of the
    /// stream before its scan starts (`cluster_snapshot.rs`).
    pub(super) reading: Option<Reading>,
}

/// A snapshot request waiting for `left` snapshot reads.
pub(super) struct Reading {
    pub(super) req: u32,
    pub(super) patterns: Vec<Box<str>>,
    pub(super) left: usize,
}

struct Active {
    req: u32,
    scan: Scan,
    /// Local subscriber: the next step waits for its queue to drain or
    /// the tick.
    ready: bool,
    /// Ticks it has waited so (see `Broker::tick`).
    ticks: u32,
}

/// Ticks (100 ms) a scan waits for a subscriber whose queue does not
/// drain before it goes on anyway (a local one sends the next step, a
/// remote subscriber's shard asks for it): a client that never
/// reads must not hold its snapshot slot (64 per shard) for ever; the
/// steps then meet its slow-consumer policy, as a one-go snapshot did.
const STUCK_TICKS: u32 = 10;

/// On the subscriber's shard: a remote scan's step taken in, the next one
/// not asked for yet (see the module doc).
pub(super) struct Parked {
    owner: usize,
    req: u32,
    /// Ticks it has waited so.
    ticks: u32,
}

/// A subscription request as its owner takes it (see `Mail::SubRequest`).
pub(super) struct SubAsk {
    pub(super) req: u32,
    pub(super) patterns: Vec<Box<str>>,
    pub(super) snapshot: bool,
    pub(super) new_interest: bool,
}

impl Broker {
    /// On the owner: `conn` of shard `from` subscribed `patterns` under
    /// request `req` (its interest is known here already).
    pub(super) fn owner_request<H: Host>(
        &mut self,
        io: &mut H,
        from: usize,
        conn: Client,
        ask: SubAsk,
    ) {
        let key = (from, conn);
        if let Some(s) = self.served.get_mut(&key) {
            s.queued.push_back(ask);
            return;
        }
        self.serve(
            io,
            key,
            ask.req,
            &ask.patterns,
            ask.snapshot,
            ask.new_interest,
        );
    }

    /// Answer a request now: at once without snapshot, else the scan's
    /// first step.
    fn serve<H: Host>(
        &mut self,
        io: &mut H,
        key: ConnKey,
        req: u32,
        patterns: &[Box<str>],
        snapshot: bool,
        new_interest: bool,
    ) {
        if !snapshot {
            return self.owner_reply(io, key, req, Vec::new(), false);
        }
        if self.snapshot_reads(io, key, req, patterns, new_interest) {
            return; // the scan starts once the stream answered
        }
        self.start_scan(io, key, req, patterns);
    }

    /// The first step of a snapshot's scan.
    pub(super) fn start_scan<H: Host>(
        &mut self,
        io: &mut H,
        key: ConnKey,
        req: u32,
        patterns: &[Box<str>],
    ) {
        let scan = self.owned.scan(patterns);
        self.served.entry(key).or_default().active = Some(Active {
            req,
            scan,
            ready: false,
            ticks: 0,
        });
        self.scan_step(io, key);
    }

    /// The next step of `key`'s scan.
    fn scan_step<H: Host>(&mut self, io: &mut H, key: ConnKey) {
        let step = self.step_topics(io.shards());
        let Some(a) = self.served.get_mut(&key).and_then(|s| s.active.as_mut()) else {
            return;
        };
        a.ready = false;
        a.ticks = 0;
        let entries = self.owned.scan_step(&mut a.scan, step);
        let (req, done) = (a.req, a.scan.done());
        self.count_forgotten(io);
        if done {
            self.owner_reply(io, key, req, entries, false);
            self.next_request(io, key);
        } else {
            self.owner_reply(io, key, req, entries, true);
        }
    }

    /// Topics in one step: at most `BrokerConfig::snapshot_step`, and few
    /// enough that one step from every owner fits in half the
    /// subscriber's queue limit, so a client that reads is never closed
    /// as a slow consumer for its snapshot alone (two owners' first steps
    /// of 4,096 topics, ~530 KB each, closed a `t.*` snapshot at the
    /// default 1 MiB). The size of an entry is estimated from this owner's
    /// retained values (their average, plus 128 bytes of envelope and
    /// queue overhead).
    fn step_topics(&self, shards: usize) -> usize {
        let held = self.owned.topics().max(1);
        let entry = self.owned.lvc_bytes() / held + 128;
        let fit = self.config.max_queued / (2 * shards.max(1) * entry);
        fit.max(16).min(self.config.snapshot_step.max(1))
    }

    /// `key`'s scan is over: serve what waited behind it.
    fn next_request<H: Host>(&mut self, io: &mut H, key: ConnKey) {
        loop {
            let Some(s) = self.served.get_mut(&key) else {
                return;
            };
            s.active = None;
            let Some(q) = s.queued.pop_front() else {
                self.served.remove(&key);
                return;
            };
            if q.snapshot {
                // Its first step now; the rest wait their turn.
                return self.serve(io, key, q.req, &q.patterns, true, q.new_interest);
            }
            self.owner_reply(io, key, q.req, Vec::new(), false);
        }
    }

    /// Send a step (`more`) or the answer to the subscriber's shard.
    fn owner_reply<H: Host>(
        &mut self,
        io: &mut H,
        (from, conn): ConnKey,
        req: u32,
        entries: Vec<(Framed, TopicAt)>,
        more: bool,
    ) {
        let me = io.shard();
        if from != me {
            return io.post(
                from,
                Mail::SubReply {
                    conn,
                    req,
                    entries,
                    more,
                },
            );
        }
        let go = self.sub_reply(io, me, conn, req, entries, more);
        if more {
            match self
                .served
                .get_mut(&(me, conn))
                .and_then(|s| s.active.as_mut())
            {
                Some(a) if go => a.ready = true,
                _ => self.scan_more(io, (me, conn), req, false),
            }
        }
    }

    /// The subscriber's shard took a step of `req` in: go on (`go`), or
    /// stop there (no pattern of it is still wanted, or the connection
    /// is gone), answering at once so that its ack and slot are released.
    pub(super) fn scan_more<H: Host>(&mut self, io: &mut H, key: ConnKey, req: u32, go: bool) {
        let Some(a) = self.served.get(&key).and_then(|s| s.active.as_ref()) else {
            return;
        };
        if a.req != req {
            return;
        }
        if go {
            return self.scan_step(io, key);
        }
        self.owner_reply(io, key, req, Vec::new(), false);
        self.next_request(io, key);
    }

    /// Local scans waiting on `conn`'s queue: it drained, go on.
    pub(super) fn local_scan_writable<H: Host>(&mut self, io: &mut H, conn: Client) {
        let key = (io.shard(), conn);
        let ready = self
            .served
            .get(&key)
            .and_then(|s| s.active.as_ref())
            .is_some_and(|a| a.ready);
        if ready {
            self.scan_step(io, key);
        }
    }

    /// On the timer tick: a local scan waiting with nothing queued for
    /// its subscriber (its last step sent nothing: no `writable` follows)
    /// goes on, and so does one whose subscriber has not drained its
    /// queue for [`STUCK_TICKS`].
    pub(super) fn scan_tick<H: Host>(&mut self, io: &mut H) {
        self.remote_scan_tick(io);
        let me = io.shard();
        let mut ready: Vec<ConnKey> = Vec::new();
        for (k, s) in self.served.iter_mut() {
            let Some(a) = s.active.as_mut().filter(|a| k.0 == me && a.ready) else {
                continue;
            };
            a.ticks += 1;
            if a.ticks >= STUCK_TICKS || io.backlog(k.1).is_none_or(|b| b == 0) {
                ready.push(*k);
            }
        }
        for key in ready {
            self.scan_step(io, key);
        }
    }

    /// Do scans wait for a tick or their subscriber's queue (local ones
    /// here as the owner, remote ones as the subscriber's shard)?
    pub fn scans_waiting(&self) -> bool {
        !self.parked.is_empty()
            || self
                .served
                .values()
                .any(|s| s.active.as_ref().is_some_and(|a| a.ready))
    }

    /// `conn` closed: what this shard serves it, as its owner, is dropped,
    /// and owners it waits on for the next step are told to stop.
    pub(super) fn forget_served<H: Host>(&mut self, io: &mut H, conn: Client) {
        self.served.remove(&(io.shard(), conn));
        for p in self.parked.remove(&conn).unwrap_or_default() {
            io.post(
                p.owner,
                Mail::SnapMore {
                    conn,
                    req: p.req,
                    go: false,
                },
            );
        }
    }

    /// On the subscriber's shard: `conn` took in a step of `owner`'s scan
    /// for `req`. Ask for the next now if it is not wanted (`go` false) or
    /// the step queued nothing (no `writable` would follow), else once the
    /// queue drains.
    pub(super) fn step_taken<H: Host>(
        &mut self,
        io: &mut H,
        owner: usize,
        conn: Client,
        req: u32,
        go: bool,
    ) {
        if go && io.backlog(conn).is_some_and(|b| b > 0) {
            let p = Parked {
                owner,
                req,
                ticks: 0,
            };
            return self.parked.entry(conn).or_default().push(p);
        }
        io.post(owner, Mail::SnapMore { conn, req, go });
    }

    /// Ask `owner` for the next step of `req`, or to stop if none of it
    /// is wanted any more.
    fn ask_more<H: Host>(&mut self, io: &mut H, conn: Client, p: Parked) {
        let go = self.state(conn).is_some_and(|st| st.wants(p.req, p.owner));
        let req = p.req;
        io.post(p.owner, Mail::SnapMore { conn, req, go });
    }

    /// `conn`'s queue drained: the remote scans it paces go on.
    pub(super) fn remote_scan_writable<H: Host>(&mut self, io: &mut H, conn: Client) {
        if self.parked.is_empty() {
            return;
        }
        for p in self.parked.remove(&conn).unwrap_or_default() {
            self.ask_more(io, conn, p);
        }
    }

    /// `conn` unsubscribed: owners whose steps none of its patterns want
    /// any more stop now, not at its next drained queue.
    pub(super) fn remote_scan_unsub<H: Host>(&mut self, io: &mut H, conn: Client) {
        let Some(mut ps) = self.parked.remove(&conn) else {
            return;
        };
        let st = live(&mut self.conns, conn);
        let (keep, stop): (Vec<Parked>, Vec<Parked>) = ps
            .drain(..)
            .partition(|p| st.as_ref().is_some_and(|s| s.wants(p.req, p.owner)));
        if !keep.is_empty() {
            self.parked.insert(conn, keep);
        }
        for p in stop {
            self.ask_more(io, conn, p);
        }
    }

    /// On the timer tick: as for local scans, a remote step waits no more
    /// once its subscriber's queue is empty (nothing to wake `writable`),
    /// nor after [`STUCK_TICKS`].
    fn remote_scan_tick<H: Host>(&mut self, io: &mut H) {
        if self.parked.is_empty() {
            return;
        }
        let mut ready: Vec<(Client, Parked)> = Vec::new();
        self.parked.retain(|&conn, ps| {
            let drained = io.backlog(conn).is_none_or(|b| b == 0);
            for mut p in std::mem::take(ps) {
                p.ticks += 1;
                if drained || p.ticks >= STUCK_TICKS {
                    ready.push((conn, p));
                } else {
                    ps.push(p);
                }
            }
            !ps.is_empty()
        });
        for (conn, p) in ready {
            self.ask_more(io, conn, p);
        }
    }

    /// `owner` sent a step (`more`) or its answer to request `req` of
    /// `conn`, with the snapshot entries if asked. Everything that owner
    /// published for these topics before its first step came ahead of it
    /// (FIFO) and was held back by `deliver`; everything after comes
    /// behind it and goes through, and later steps leave those topics out.
    /// So a snapshot's seq is followed by exactly the next one: no gap, no
    /// duplicate. Returns whether the owner should go on.
    pub(super) fn sub_reply<H: Host>(
        &mut self,
        io: &mut H,
        owner: usize,
        conn: Client,
        req: u32,
        entries: Vec<(Framed, TopicAt)>,
        more: bool,
    ) -> bool {
        let me = io.shard();
        let Some(st) = self.state(conn) else {
            return false;
        };
        let send: Vec<(Framed, TopicAt)> = entries
            .into_iter()
            .filter(|(f, at)| st.snapshot_wanted(req, owner, at.get(f)))
            .collect();
        let (replies, done, go) = if more {
            st.started(req, owner);
            (Vec::new(), false, st.wants(req, owner))
        } else {
            let (r, d) = st.answered(req, owner);
            (r, d, false)
        };
        if done {
            self.snapshots_done(io, 1);
        }
        let sent = send.len() as u64;
        for (f, at) in send {
            self.offer(io, conn, &SendBuf::from(f), at);
        }
        inc(&self.stats[me].snapshots_total, sent);
        for f in replies {
            io.send(conn, f);
        }
        go
    }
}
