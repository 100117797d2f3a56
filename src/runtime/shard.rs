//! One shard: a thread, a ring, its listeners, and the connections it accepted.
//!
//! Each loop turn: reap completions, act on them (this is where bytes are
//! decoded and the application runs), read cross-shard mail, then flush:
//! connections with something to do, first come first served, get at most
//! one send, one re-armed receive, or one step of their teardown, until
//! the turn's budget of sends and teardown steps is spent (the rest wait
//! for the next turn). One `io_uring_enter` submits it all, completes
//! what arrived meanwhile, and waits for the next completion only when
//! nothing is left to do.

use super::accept::Listening;
use super::app::{App, ConnId};
use super::bufring::BufRing;
use super::config::{Config, StartError};
use super::conn::{Phase, SendOp, NO_SLOT};
use super::deadlines::Periods;
use super::external::ExternalInbox;
use super::inbound;
use super::io::Io;
use super::mailbox::Mailbox;
use super::peer::{PeerLimits, PeerOp};
use super::stats::ShardStats;
use super::table::{live, ConnTable};
use super::timer::{self, ticks, Ticks, Wheel};
use super::token::{self, Op};
use super::uring;
use super::write_delay::WriteDelay;
use crate::metrics::{dec, inc};
use io_uring::types::{Fd, Fixed, TimeoutFlags, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use rustc_hash::FxHashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Send buffers kept for reuse.
const SENDOP_POOL: usize = 1024;
const BGID: u16 = 0;
/// Descriptor slots a listening shard keeps from WebSocket upgrades, so
/// that `/healthz` and `/metrics` still get in, and a client that finds the
/// shard full is told so (503) instead of waiting unanswered in the
/// listen backlog: 16, or a quarter of a small table.
pub(super) fn http_reserve(table: u32) -> usize {
    16.min(table as usize / 4)
}

/// How long a shard with backlogged mail sleeps before retrying.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(1);
/// After the drain deadline, how long killed connections get to release.
const TICK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// From the kernel's uapi; the io-uring crate keeps its copy private.
const IORING_ENTER_GETEVENTS: u32 = 1;

/// One shard's loop state. Its methods are spread by concept: the loop and
/// completions here, the flush in `flush.rs`, deadlines in `deadlines.rs`,
/// the dialer in `dial.rs`; the application reaches connections through
/// [`Io`] over `table`.
pub struct Shard<M> {
    pub(super) ring: IoUring,
    pub(super) bufs: BufRing,
    /// The listening sockets (none for a client-only runtime), each with
    /// its accept's state (`accept.rs`).
    pub(super) listeners: Vec<Listening>,
    pub(super) table: ConnTable,
    /// Direct descriptor slots never used yet (outbound connections pick
    /// their own slots; accepted ones get the kernel's).
    pub(super) next_slot: u32,
    pub(super) free_slots: Vec<u32>,
    /// Size of the direct descriptor table.
    pub(super) table_size: u32,
    pub(super) mail: Mailbox<M>,
    /// Mail from a thread that is not a shard (`external.rs`), if the
    /// server was started with inboxes.
    pub(super) external: Option<ExternalInbox<M>>,
    pub(super) config: Arc<Config>,
    pub(super) draining_flag: Arc<AtomicBool>,
    pub(super) drain_deadline: Option<Ticks>,
    /// Draining: the 1001s still to be sent once the application is
    /// settled (`App::settled`).
    pub(super) drain_closes_owed: bool,
    /// Accepting stopped: the descriptor table is full.
    pub(super) accept_paused: bool,
    /// Which listener `arm_accept` serves first (rotates).
    pub(super) accept_turn: usize,
    tick: Box<Timespec>,
    pub(super) wheel: Wheel,
    pub(super) due: Vec<timer::Entry>,
    cqes: Vec<(u64, i32, u32)>,
    inbox: Vec<(usize, M)>,
    // Boxed: a SendOp's address is handed to the kernel, and pooling the
    // boxes keeps that allocation for the next send.
    #[allow(clippy::vec_box)]
    pub(super) pool: Vec<Box<SendOp>>,
    pub(super) start: Instant,
    /// `start.elapsed()` at the top of this turn (the write delay's clock).
    pub(super) elapsed: std::time::Duration,
    pub(super) write_delay: WriteDelay,
    /// The timeouts in ticks (see `Periods`).
    pub(super) periods: Periods,
    grew_this_turn: bool,
    /// When the receive buffers last grew, and when input last arrived
    /// (the tick shrinks the pool and hands back idle buffers' memory).
    pub(super) last_grow: Ticks,
    pub(super) last_input: Ticks,
    /// The most receive buffers one loop turn took lately, and since when
    /// that is the figure (see `tend_buffers`).
    pub(super) buffers_peak: u16,
    pub(super) buffers_peak_at: Ticks,
    /// What one connect has cost lately, in ns (`dial.rs` budgets by it).
    pub(super) dial_cost_ns: u64,
    /// Accepted connections in their HTTP handshake, oldest first, with
    /// when they were accepted (`handshakes.rs`); some may have ended.
    pub(super) handshakes: VecDeque<(timer::Entry, Ticks)>,
    /// `SO_PEERNAME` requests in flight (`peer.rs`).
    pub(super) peer_ops: Slab<PeerOp>,
    /// The stripe of `table.peers` the next tick sweeps.
    pub(super) peer_sweep: usize,
    /// Reading a peer address failed once already (said so).
    pub(super) peer_warned: bool,
    /// The tick completed this turn; it runs after the rest (`run`).
    tick_due: bool,
}

/// What every shard of a server shares: counters, the drain flag, the
/// per-address counts.
#[derive(Clone)]
pub struct Shared {
    pub stats: Arc<[ShardStats]>,
    pub draining: Arc<AtomicBool>,
    pub peers: Arc<PeerLimits>,
}

impl<M> Shard<M> {
    pub fn new(
        me: usize,
        config: &Arc<Config>,
        table_size: u32,
        listeners: Vec<Listening>,
        mail: Mailbox<M>,
        shared: Shared,
    ) -> Result<Self, StartError> {
        let Shared {
            stats,
            draining,
            peers,
        } = shared;
        let ring = uring::new(config.ring_entries)?;
        // Before any turn: every shard's arrival times count from it.
        crate::metrics::clock::epoch();
        stats[me]
            .direct_descriptor_slots
            .store(u64::from(table_size), std::sync::atomic::Ordering::Relaxed);
        ring.submitter()
            .register_files_sparse(table_size)
            .map_err(|e| {
                StartError(format!(
                    "cannot register a direct descriptor table of {table_size}: {e}"
                ))
            })?;
        let entries = config
            .recv_buffers_max
            .max(config.recv_buffers)
            .next_power_of_two();
        let bufs = BufRing::new(
            &ring.submitter(),
            BGID,
            entries,
            config.recv_buffers,
            config.recv_buffer_size,
        )
        .map_err(|e| {
            StartError(format!(
                "cannot register a provided buffer ring (needs Linux 5.19+): {e}"
            ))
        })?;
        mail.peers()[me]
            .ring_fd
            .store(ring.as_raw_fd(), Ordering::SeqCst);
        let span = [
            config.handshake_timeout,
            config.idle_ping,
            config.pong_timeout,
            config.close_timeout,
        ]
        .into_iter()
        .map(ticks)
        .max()
        .unwrap_or(1)
            // Room for every deadline from a wheel lagging the clock, so no
            // entry is ever clamped into an early slot.
            * 2
            + 64;
        Ok(Self {
            ring,
            bufs,
            listeners,
            next_slot: 0,
            free_slots: Vec::new(),
            table_size,
            table: ConnTable {
                me,
                // Reserved up front (address space, touched as used):
                // doubling a slab leaves the outgrown blocks resident.
                conns: Slab::with_capacity(table_size as usize),
                dirty: VecDeque::new(),
                first: VecDeque::new(),
                now: 0,
                turn_ns: 0,
                send_ns: None,
                stats,
                draining: false,
                stopping: draining.clone(),
                max_backlog: config.max_backlog,
                max_backlog_read: config.max_backlog_read,
                deflate_min: config.deflate_min,
                max_upgraded: table_size as usize - http_reserve(table_size),
                dials: Vec::new(),
                gen: 0,
                outbound: FxHashMap::default(),
                handshake_budget: config.handshakes_per_turn,
                admin_budget: super::table::ADMIN_HEADS_PER_TURN,
                deferred: Vec::new(),
                tls: Default::default(),
                peers,
            },
            mail,
            external: None,
            config: config.clone(),
            draining_flag: draining,
            drain_deadline: None,
            drain_closes_owed: false,
            accept_paused: false,
            accept_turn: 0,
            tick: Box::new(Timespec::from(config.tick)),
            wheel: Wheel::new(span),
            due: Vec::new(),
            cqes: Vec::with_capacity(1024),
            inbox: Vec::new(),
            pool: Vec::new(),
            start: Instant::now(),
            elapsed: std::time::Duration::ZERO,
            write_delay: WriteDelay::new(config.write_delay),
            periods: Periods::new(config),
            grew_this_turn: false,
            last_grow: 0,
            last_input: 0,
            buffers_peak: 0,
            buffers_peak_at: 0,
            dial_cost_ns: super::dial::DIAL_COST_START_NS,
            handshakes: VecDeque::new(),
            peer_ops: Slab::new(),
            peer_sweep: me,
            peer_warned: false,
            tick_due: false,
        })
    }

    pub(super) fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every entry's buffers (msghdr, iovecs, a SEND's one
            // buffer in its SendOp, timespec) live in boxes owned by this
            // shard until their completion arrives.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel and try again.
            if let Err(err) = self.ring.submit() {
                if err.raw_os_error() != Some(libc::EBUSY) {
                    log_error("submit", &err);
                }
            }
        }
    }

    fn arm_tick(&mut self) {
        let e = opcode::Timeout::new(&*self.tick as *const Timespec)
            .count(0)
            .flags(TimeoutFlags::MULTISHOT)
            .build()
            .user_data(token::encode(Op::Tick, 0, 0));
        self.push(e);
    }
}

impl<M> Shard<M> {
    pub fn run<A: App<Mail = M>>(&mut self, mut app: A) {
        self.arm_tick();
        self.arm_accept();
        self.arm_external();
        loop {
            // One clock read per turn: the deadline wheel's, the write
            // delay's and the arrival time of what this turn reads.
            let now = Instant::now();
            self.elapsed = now.saturating_duration_since(self.start);
            self.table.now = timer::now(self.elapsed);
            self.table.turn_ns = crate::metrics::clock::nanos(now);
            self.table.send_ns = None;
            self.grew_this_turn = false;
            self.bufs.end_turn();
            self.table.handshake_budget = self.config.handshakes_per_turn.max(1);
            self.table.admin_budget = super::table::ADMIN_HEADS_PER_TURN;
            self.table.tls.budget = self.config.tls_handshakes_per_turn.max(1);
            // Heads left over from earlier turns go first.
            if !self.table.deferred.is_empty() {
                self.run_deferred(&mut app);
            }
            self.drain_deferred();
            self.complete_all(&mut app);
            if self.tick_due {
                // Deadlines judge what peers sent: after a long turn (a
                // big broadcast, a stalled machine) the tick completes in
                // the same batch as the input that arrived meanwhile, or
                // before it is even posted (DEFER_TASKRUN posts receives
                // only when asked). So the tick runs last, after one more
                // look for input: a pong that arrived in time is seen
                // before its deadline closes the connection.
                self.tick_due = false;
                self.reap_now(&mut app);
                self.on_tick(&mut app);
            }
            self.read_mail(&mut app);
            self.flush(&mut app);
            self.table
                .my_stats()
                .loop_turn_seconds
                .observe_ns(now.elapsed().as_nanos() as u64);
            if self.finished() {
                break;
            }
            self.wait();
        }
        crate::logs::drain_ended(self.table.me);
        self.stop_accepting();
        self.bufs.unregister(&self.ring.submitter());
        // Sends still in flight (the drain deadline passed) may be read by
        // the kernel until the ring's teardown cancels them: leak their
        // buffers rather than free memory the kernel may still read.
        for (_, c) in self.table.conns.iter_mut() {
            if let Some(op) = c.sending.take() {
                Box::leak(op);
            }
        }
    }

    /// Act on every completion in the queue, in order.
    fn complete_all<A: App<Mail = M>>(&mut self, app: &mut A) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            self.complete(app, ud, res, flags);
        }
        self.cqes = cqes;
    }

    /// One enter that submits what is queued and, since DEFER_TASKRUN runs
    /// completion work only when events are asked for, GETEVENTS without
    /// waiting: completions of work that arrived meanwhile are posted.
    pub(super) fn submit_and_poll(&mut self) -> std::io::Result<usize> {
        let pending = self.ring.submission().len() as u32;
        // SAFETY: no argument struct is passed; every queued entry's
        // buffers stay alive until its completion (see `push`).
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(pending, 0, IORING_ENTER_GETEVENTS, None)
        }
    }

    /// Submit what is queued, run the kernel's deferred completion work
    /// without waiting, and act on what it completed.
    fn reap_now<A: App<Mail = M>>(&mut self, app: &mut A) {
        if let Err(e) = self.submit_and_poll() {
            if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
                log_error("io_uring_enter", &e);
            }
        }
        self.complete_all(app);
    }

    pub(super) fn io(&mut self) -> Io<'_, M> {
        Io {
            table: &mut self.table,
            mail: &mut self.mail,
        }
    }

    fn read_mail<A: App<Mail = M>>(&mut self, app: &mut A) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let n = self.mail.drain(|from, m| inbox.push((from, m)));
        inc(&self.table.my_stats().mail_received_total, n as u64);
        for (from, m) in inbox.drain(..) {
            app.mail(&mut self.io(), from, m);
        }
        self.inbox = inbox;
        self.mail.retry_backlog();
        self.read_external(app);
    }

    /// Submit this turn's work and sleep until a completion arrives, unless
    /// there is already more to do.
    fn wait(&mut self) {
        // Backlogged mail first, so that what it moves into rings is rung
        // for below (a sleeping target would otherwise miss it).
        let backlog = self.mail.retry_backlog();
        let mut bells = Vec::new();
        self.mail.bells(|to, fd| bells.push((to, fd)));
        inc(
            &self.table.my_stats().doorbells_rung_total,
            bells.len() as u64,
        );
        for (_, fd) in bells {
            // The target's CQE wakes it; ours is suppressed on success.
            let e = opcode::MsgRingData::new(Fd(fd), 0, token::encode(Op::Doorbell, 0, 0), None)
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(token::encode(Op::Doorbell, 0, 0));
            self.push(e);
        }
        // Dials left over from the turn's budget (`DIALS_PER_TURN`) keep
        // the loop awake, as dirty connections do.
        let sleep = self.table.clean()
            && self.table.dials.is_empty()
            && self.table.deferred.is_empty()
            && self.mail.prepare_sleep();
        let r = if !sleep {
            // Input that arrived while this turn's sends ran inline is
            // completed by the same enter, for the next turn.
            self.submit_and_poll()
        } else if backlog || self.write_delay.wake_at().is_some() {
            // Mail waits for room in a full ring: sleep, but only briefly,
            // rather than spin on a slow (or exited) shard. Held data waits
            // for its release.
            let mut wake = if backlog {
                BACKLOG_RETRY
            } else {
                std::time::Duration::MAX
            };
            if let Some(t) = self.write_delay.wake_at() {
                wake = wake.min(t.saturating_sub(self.start.elapsed()));
            }
            let ts = Timespec::from(wake);
            let args = io_uring::types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submit_and_wait(1)
        };
        if sleep {
            self.mail.woke();
        }
        if let Err(e) = r {
            if !matches!(
                e.raw_os_error(),
                Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
            ) {
                log_error("io_uring_enter", &e);
            }
        }
    }

    /// Draining ends when no shard has a connection left (a shard that
    /// stopped early would reset connections the kernel hashed to its
    /// listener, health checks included), or at the deadline.
    fn finished(&self) -> bool {
        match self.drain_deadline {
            None => false,
            Some(deadline) => {
                let open: u64 = self
                    .table
                    .stats
                    .iter()
                    .map(|s| s.connections_open.load(Ordering::Relaxed))
                    .sum();
                open == 0 || self.table.now > deadline + ticks(TICK_GRACE)
            }
        }
    }

    fn complete<A: App<Mail = M>>(&mut self, app: &mut A, ud: u64, res: i32, flags: u32) {
        let Some((op, key, gen)) = token::decode(ud) else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(key, res, flags),
            Op::Recv => self.on_recv(app, key, gen, res, flags),
            Op::Send => {
                if self.on_send(key, gen, res) {
                    app.writable(&mut self.io(), ConnId { key, gen });
                }
            }
            Op::Shutdown => {
                if let Some(c) = live(&mut self.table.conns, key, gen) {
                    c.set_shutting(false);
                    self.table.mark(key);
                }
            }
            Op::Close => self.on_close(key, gen),
            Op::Tick => {
                if !cqueue::more(flags) {
                    self.arm_tick();
                }
                // Run after everything else that completed (see `run`).
                self.tick_due = true;
            }
            Op::Doorbell => inc(&self.table.my_stats().doorbells_received_total, 1),
            Op::Connect => self.on_connect(key, gen, res),
            Op::Cancel => self.on_cancel(key, gen, res),
            Op::Peer => self.on_peer(key, res),
            Op::External => self.on_external(app, res, flags),
        }
    }

    pub(super) fn arm_recv(&mut self, key: u32) {
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        if c.recv_armed() {
            return;
        }
        c.set_recv_armed(true);
        let e = opcode::RecvMulti::new(Fixed(c.slot), self.bufs.bgid())
            .build()
            .user_data(token::encode(Op::Recv, key, c.gen));
        self.push(e);
    }

    fn on_recv<A: App<Mail = M>>(&mut self, app: &mut A, key: u32, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = live(&mut self.table.conns, key, gen) else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        let cancelled = c.recv_cancelling();
        if !cqueue::more(flags) {
            c.set_recv_armed(false);
            c.set_recv_cancelling(false);
        }
        if res <= 0 {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            if res == -libc::ENOBUFS {
                // Every buffer is in use: offer more (up to the cap) and
                // re-arm in the flush step, after this turn returned some.
                inc(&self.table.stats[self.table.me].recv_enobufs_total, 1);
                // At most once a turn: a burst of ENOBUFS in one batch is
                // one shortage, not many (the pool never shrinks).
                if !self.grew_this_turn {
                    self.grew_this_turn = true;
                    self.last_grow = self.table.now;
                    let n = self.bufs.offered().max(16);
                    self.bufs.grow(n);
                }
                // A receive to re-arm: the first line (a publisher's next
                // message waits on it).
                self.table.mark_first(key);
                return;
            }
            if res == -libc::ECANCELED && (c.recv_armed() || cancelled) {
                // Our own cancel (backpressure): the flush re-arms it once
                // the backlog drains.
                self.table.mark(key);
                return;
            }
            if res == 0 && c.read_paused() && c.phase == Phase::Open {
                // EOF while what came before it waits unparsed: keep it;
                // `resume_read` answers it and then closes.
                c.set_eof(true);
                return;
            }
            if res == 0 && c.phase != Phase::Dead && c.phase != Phase::Releasing {
                // EOF: the peer is done sending, maybe not done reading
                // (a half-close after its last request). Answer what is
                // queued, then close. A frame it left unfinished dies here.
                c.set_eof(true);
                c.rx.clear();
                if c.tls() && self.table.tls.handshaking(key) {
                    // What waits for the TLS handshake to end (a 429, an
                    // outbound request) can never go: close now, not at
                    // the close timeout.
                    c.tx.clear();
                }
                if matches!(c.phase, Phase::Handshake | Phase::Open)
                    || (c.phase == Phase::Http && !c.http_waiting())
                {
                    // (An HTTP request still waiting for its answer gets
                    // it first: `http::answered` closes after it.)
                    c.phase = Phase::Flushing;
                    c.since = self.table.now;
                }
                self.table.mark(key);
                return;
            }
            // A transport error: the peer is gone.
            self.kill(key);
            return;
        }
        let Some(bid) = bid else {
            self.kill(key);
            return;
        };
        if c.keepalive.awaiting_pong() {
            // The answer to our ping: the next one is due `idle_ping` from
            // now. The timer still waits for the pong deadline, which is
            // later when --pong-timeout is over --idle-ping: with 1 s and
            // 10 s a silent client was pinged every 10 s, and a proxy that
            // cuts connections idle for 2 s cut it.
            let at = self.table.now + self.periods.keepalive.idle_ping;
            if at < c.wheel_at {
                c.wheel_at = at;
                self.wheel.schedule(at, timer::Entry { key, gen });
            }
        }
        c.keepalive.received(self.table.now);
        self.bufs.filled();
        self.last_input = self.table.now;
        inc(
            &self.table.stats[self.table.me].bytes_received_total,
            res as u64,
        );
        let was_handshake = c.phase == Phase::Handshake;
        let data = self.bufs.buf(bid, res as usize);
        let (table, mail) = (&mut self.table, &mut self.mail);
        let parsed = inbound::delivered(app, table, mail, &self.config, key, data);
        self.bufs.recycle(bid);
        if !parsed {
            // Reading is paused (or the head deferred): kept for later.
            return;
        }
        self.after_input(key, was_handshake);
        self.track_hold(key, res as usize);
    }

    /// Input for `key` was parsed: an upgrade starts the idle-ping clock
    /// (no longer the handshake deadline), a receive that stopped is
    /// re-armed by the flush, and the backlog is checked.
    pub(super) fn after_input(&mut self, key: u32, was_handshake: bool) {
        let Some(c) = self.table.conns.get(key as usize) else {
            return;
        };
        let (opened, rearm) = (c.phase == Phase::Open, !c.recv_armed());
        if c.phase == Phase::Http {
            // Kept alive: its deadline is now the idle one (shorter or
            // longer than the handshake's; `reschedule` only moves it
            // earlier, a later one is found when the earlier fires).
            let at = c.since + self.periods.http_keepalive;
            self.reschedule(key, at);
        } else if was_handshake && opened {
            let at = self.table.now + self.periods.keepalive.idle_ping;
            self.reschedule(key, at);
        }
        if rearm {
            self.table.mark_first(key);
        }
        self.check_backpressure(key);
    }

    /// A send completed. True when the connection's queue is now empty
    /// and it is still open (the application may want to send more).
    fn on_send(&mut self, key: u32, gen: u32, res: i32) -> bool {
        let me = self.table.me;
        let Some(c) = live(&mut self.table.conns, key, gen) else {
            return false;
        };
        let Some(mut op) = c.sending.take() else {
            return false;
        };
        if res < 0 {
            self.pool_return(op);
            self.kill(key);
            return false;
        }
        let frames = op.advance(res as usize);
        let s = &self.table.stats[me];
        inc(&s.bytes_sent_total, res as u64);
        if c.tls() {
            // Its frames were counted as they were sealed; these are
            // ciphertext buffers.
            inc(&s.tls_bytes_sent_total, res as u64);
        } else {
            inc(&s.frames_sent_total, frames as u64);
        }
        if op.is_empty() || c.phase == Phase::Dead {
            let drained = c.tx.is_empty() && c.phase == Phase::Open && c.opened();
            if c.tx.is_empty() {
                // Idle again: hold no send buffer at all.
                c.tx.release();
            }
            // An open connection with nothing queued, reading, and nothing
            // asked of it has no step for the flush: leave it out of the
            // lines, so that a fan-out frame queued next puts it in the
            // first line (a mark here would have left it behind a storm's
            // replies in the other). What was queued meanwhile goes by its
            // newest frame.
            let idle = drained
                && c.ws.state() == crate::ws::State::Open
                && c.recv_armed()
                && !c.recv_cancelling()
                && !c.read_paused()
                && !c.tls()
                && !c.has_close_req()
                && !c.delayed();
            let first = c.phase == Phase::Open && c.tx.newest_is_fanout();
            self.pool_return(op);
            if first {
                self.table.mark_first(key);
            } else if !idle {
                self.table.mark(key);
            }
            drained
        } else {
            // A short write: send the rest at once, topped up with
            // whatever was queued meanwhile.
            let _ = self.submit_send(key, op);
            false
        }
    }

    pub(super) fn pool_return(&mut self, mut op: Box<SendOp>) {
        op.clear();
        if self.pool.len() < SENDOP_POOL {
            self.pool.push(op);
        }
    }

    fn on_close(&mut self, key: u32, gen: u32) {
        if self
            .table
            .conns
            .get(key as usize)
            .is_some_and(|c| c.gen == gen)
        {
            self.release(key);
        }
    }

    /// The slot is closed (or never had a socket): forget the connection.
    pub(super) fn release(&mut self, key: u32) {
        if self.table.conns.contains(key as usize) {
            let c = self.table.conns.remove(key as usize);
            if c.slot != NO_SLOT {
                // Closed (IORING_OP_CLOSE completed) before its release.
                dec(&self.table.my_stats().direct_descriptors, 1);
            }
            if c.outbound() && c.slot != NO_SLOT {
                self.free_slots.push(c.slot);
            }
            self.forget_peer(&c.peer);
            self.table.outbound.remove(&key);
            if c.tls() {
                self.tls_released(key);
            }
            dec(&self.table.my_stats().connections_open, 1);
            if self.accept_paused {
                self.accept_paused = false;
                self.arm_accept();
            }
        }
    }

    /// The transport is unusable: drop queues, end in-flight work, release.
    pub(super) fn kill(&mut self, key: u32) {
        if let Some(c) = self.table.conns.get_mut(key as usize) {
            if c.phase != Phase::Releasing {
                c.phase = Phase::Dead;
                c.tx.clear();
                c.rx.clear();
            }
        }
        self.table.mark(key);
    }
}

fn log_error(what: &str, e: &std::io::Error) {
    eprintln!("ringfan: {what}: {e}");
}
