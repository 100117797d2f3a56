//! One shard: a thread, a ring, a listener, and the connections it accepted.
//!
//! Each loop turn: reap completions, act on them (this is where bytes are
//! decoded and the application runs), read cross-shard mail, then flush:
//! connections with something to do, first come first served, get at most
//! one send, one re-armed receive, or one step of their teardown, until
//! the turn's send budget is spent (the rest wait for the next turn). One
//! `io_uring_enter` submits it all, completes what arrived meanwhile, and
//! waits for the next completion only when nothing is left to do.

use super::bufring::BufRing;
use super::conn::{Conn, Phase, SendBuf, SendOp, NO_SLOT};
use super::mailbox::Mailbox;
use super::stats::ShardStats;
use super::timer::{self, Ticks, Wheel};
use super::token::{self, Op};
use super::{uring, App, Config, ConnId, Dial, StartError};
use crate::ws::client::ClientHandshake;
use crate::ws::close::code;
use crate::ws::handshake::{self, Outcome, Route};
use crate::ws::http;
use crate::ws::{Connection, Event, OpCode, Read, Role, State};
use bytes::Bytes;
use io_uring::types::{Fd, Fixed, TimeoutFlags, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use rustc_hash::FxHashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Frames per sendmsg (IOV_MAX is 1024).
const MAX_IOV: usize = 512;
/// Send buffers kept for reuse.
const SENDOP_POOL: usize = 1024;
const BGID: u16 = 0;
/// A queue this large goes out at once, write delay or not: one send of it
/// already spreads the send's fixed cost thin.
const HOLD_MAX_BYTES: usize = 64 << 10;
/// Descriptor slots a listening shard keeps from WebSocket upgrades, so
/// that `/healthz` and `/metrics` still get in, and a client that finds the
/// shard full is told so (503) instead of waiting unanswered in the
/// listen backlog: 16, or a quarter of a small table.
fn http_reserve(table: u32) -> usize {
    16.min(table as usize / 4)
}

/// Sends a turn submits before it takes in new input. A round of sends to
/// every subscriber takes R (1,000 sends of ~4-7 us here); submitted in one
/// go, a message that arrives during it waits for the round to end and then
/// for its subscriber's place in the next (up to 2R, p99 ~1.9R). In slices,
/// it is queued at once, and each subscriber picks it up at its next place
/// in line (up to R). A slice costs an io_uring_enter or two, ~1-2 us,
/// against 64 sends.
const SENDS_PER_TURN: usize = 64;
/// How long a shard with backlogged mail sleeps before retrying.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(1);
/// After the drain deadline, how long killed connections get to release.
const TICK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
/// From the kernel's uapi; the io-uring crate keeps its copy private.
const IORING_ENTER_GETEVENTS: u32 = 1;

/// The connection in slot `key` if it is still generation `gen` (a late
/// completion for a closed connection finds nothing). A function of the
/// slab alone, so callers keep the rest of the shard borrowable.
fn live(conns: &mut Slab<Conn>, key: u32, gen: u32) -> Option<&mut Conn> {
    conns.get_mut(key as usize).filter(|c| c.gen == gen)
}

/// Connection state the application may touch through [`Io`].
pub struct Core {
    me: usize,
    conns: Slab<Conn>,
    /// Connections with something for the flush step, in the order they
    /// got it: the flush serves them first come, first served.
    dirty: VecDeque<u32>,
    now: Ticks,
    stats: Arc<[ShardStats]>,
    draining: bool,
    /// Most bytes one connection may have queued (see `Config`).
    max_backlog: usize,
    /// Connections upgraded to WebSocket only while fewer than this many
    /// are open: the rest of the descriptor table is kept for plain HTTP.
    max_upgraded: usize,
    /// Outbound connections waiting for their socket (made in the flush
    /// step, where the ring is at hand).
    dials: Vec<u32>,
    /// The last generation handed out.
    gen: u32,
    /// Outbound connections until they open: where to, and the handshake
    /// to verify the answer with.
    outbound: FxHashMap<u32, Box<Outbound>>,
}

/// An outbound connection's state until it opens. Boxed: the kernel may
/// read `addr` until the connect completes.
struct Outbound {
    dial: Dial,
    addr: socket2::SockAddr,
    handshake: Option<ClientHandshake>,
    error: Option<String>,
}

impl Core {
    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        live(&mut self.conns, id.key, id.gen)
    }

    fn mark(&mut self, key: u32) {
        if let Some(c) = self.conns.get_mut(key as usize) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push_back(key);
            }
        }
    }

    fn my_stats(&self) -> &ShardStats {
        &self.stats[self.me]
    }

    fn next_gen(&mut self) -> u32 {
        self.gen = self.gen.wrapping_add(1) & token::GEN_MASK;
        self.gen
    }
}

/// What [`Io::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Sent,
    /// Not queued: the backlog is over the limit.
    Full,
    /// Not queued: the connection is gone or closing.
    Gone,
}

/// The application's handle on its shard during a callback.
pub struct Io<'a, M> {
    core: &'a mut Core,
    mail: &'a mut Mailbox<M>,
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
        let cap = self.core.max_backlog;
        let Some(c) = self.core.conn(id) else {
            return Offered::Gone;
        };
        if c.phase != Phase::Open || c.ws.state() != State::Open || c.close_req.is_some() {
            return Offered::Gone;
        }
        let backlog = c.backlog();
        // Data held by the write delay is not a slow consumer's backlog:
        // only what is in flight counts against the app's limit then.
        let behind = if c.held {
            c.sending.as_ref().map_or(0, |s| s.len())
        } else {
            backlog
        };
        if backlog + frame.len() > cap {
            // A peer that sends but never reads must not grow our memory
            // without bound (echo replies, acks, errors...).
            c.close_req = Some((code::POLICY_VIOLATION, "send queue overflow"));
            self.core.mark(id.key);
            return Offered::Gone;
        }
        if behind != 0 && behind + frame.len() > limit {
            return Offered::Full;
        }
        c.tx.push(frame.clone());
        self.core.mark(id.key);
        Offered::Sent
    }

    /// Open an outbound WebSocket connection. The application hears
    /// [`App::connected`] once the handshake succeeds, or
    /// [`App::connect_failed`]; until then the id accepts no sends.
    pub fn connect(&mut self, dial: Dial) -> ConnId {
        let core = &mut *self.core;
        let mut conn = Conn::new(NO_SLOT, 0, core.now);
        conn.dialing = true;
        conn.phase = Phase::Connecting;
        conn.ws = Connection::new(Role::Client, 0);
        let key = core.conns.insert(conn) as u32;
        ShardStats::add(&core.stats[core.me].connections_open, 1);
        let gen = core.next_gen();
        if let Some(c) = core.conns.get_mut(key as usize) {
            c.gen = gen;
        }
        core.outbound.insert(
            key,
            Box::new(Outbound {
                addr: dial.to.into(),
                dial,
                handshake: None,
                error: None,
            }),
        );
        core.dials.push(key);
        ConnId { key, gen }
    }

    /// Queue one text message, framed for this connection's role (masked
    /// when we are the client). False if the connection is not open.
    pub fn send_text(&mut self, id: ConnId, payload: &[u8]) -> bool {
        let frame = match self.core.conn(id) {
            Some(c) if c.phase == Phase::Open => c.ws.encode(OpCode::Text, payload),
            _ => return false,
        };
        self.send(id, frame)
    }

    /// The close code the peer sent (or we failed the connection with),
    /// for [`App::closed`]; None if the connection just ended.
    pub fn close_code(&self, id: ConnId) -> Option<u16> {
        self.core
            .conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen && c.close_code != 0)
            .map(|c| c.close_code)
    }

    /// Close with a WebSocket close frame now; queued data is dropped.
    /// True if this call asked for it (false: gone, or already closing).
    pub fn close(&mut self, id: ConnId, status: u16, reason: &'static str) -> bool {
        match self.core.conn(id) {
            Some(c) if c.close_req.is_none() && c.phase == Phase::Open => {
                c.close_req = Some((status, reason));
                self.core.mark(id.key);
                true
            }
            _ => false,
        }
    }

    /// Bytes queued for the connection and not yet acknowledged by the
    /// kernel's send.
    pub fn backlog(&self, id: ConnId) -> Option<usize> {
        self.core
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

    pub fn shard(&self) -> usize {
        self.core.me
    }

    pub fn shards(&self) -> usize {
        self.mail.shards()
    }

    /// Every shard's counters.
    pub fn stats(&self) -> &[ShardStats] {
        &self.core.stats
    }

    /// The endpoint the connection was upgraded on.
    pub fn route(&self, id: ConnId) -> Option<Route> {
        self.core
            .conns
            .get(id.key as usize)
            .filter(|c| c.gen == id.gen && c.opened)
            .map(|c| c.route)
    }

    /// The server is shutting down (health checks should fail).
    pub fn draining(&self) -> bool {
        self.core.draining
    }
}

pub struct Shard<M> {
    ring: IoUring,
    bufs: BufRing,
    listener: Option<OwnedFd>,
    core: Core,
    /// Direct descriptor slots never used yet (outbound connections pick
    /// their own slots; accepted ones get the kernel's).
    next_slot: u32,
    free_slots: Vec<u32>,
    table: u32,
    mail: Mailbox<M>,
    config: Arc<Config>,
    draining_flag: Arc<AtomicBool>,
    drain_deadline: Option<Ticks>,
    accept_armed: bool,
    accept_paused: bool,
    tick: Box<Timespec>,
    wheel: Wheel,
    due: Vec<timer::Entry>,
    cqes: Vec<(u64, i32, u32)>,
    inbox: Vec<(usize, M)>,
    // Boxed: a SendOp's address is handed to the kernel, and pooling the
    // boxes keeps that allocation for the next send.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<SendOp>>,
    start: Instant,
    /// `start.elapsed()` at the top of this turn (the write delay's clock).
    elapsed: std::time::Duration,
    /// Connections whose data waits for `release_at` (the write delay).
    held: Vec<u32>,
    release_at: Option<std::time::Duration>,
    /// This flush sends held data.
    releasing: bool,
    grew_this_turn: bool,
}

use timer::ticks;

impl<M> Shard<M> {
    pub fn new(
        me: usize,
        config: &Arc<Config>,
        table: u32,
        listener: Option<OwnedFd>,
        mail: Mailbox<M>,
        stats: Arc<[ShardStats]>,
        draining: Arc<AtomicBool>,
    ) -> Result<Self, StartError> {
        let ring = uring::new(config.ring_entries)?;
        ring.submitter().register_files_sparse(table).map_err(|e| {
            StartError(format!(
                "cannot register a direct descriptor table of {table}: {e}"
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
            listener,
            next_slot: 0,
            free_slots: Vec::new(),
            table,
            core: Core {
                me,
                // Reserved up front (address space, touched as used):
                // doubling a slab leaves the outgrown blocks resident.
                conns: Slab::with_capacity(table as usize),
                dirty: VecDeque::new(),
                now: 0,
                stats,
                draining: false,
                max_backlog: config.max_backlog,
                max_upgraded: table as usize - http_reserve(table),
                dials: Vec::new(),
                gen: 0,
                outbound: FxHashMap::default(),
            },
            mail,
            config: config.clone(),
            draining_flag: draining,
            drain_deadline: None,
            accept_armed: false,
            accept_paused: false,
            tick: Box::new(Timespec::from(config.tick)),
            wheel: Wheel::new(span),
            due: Vec::new(),
            cqes: Vec::with_capacity(1024),
            inbox: Vec::new(),
            pool: Vec::new(),
            start: Instant::now(),
            elapsed: std::time::Duration::ZERO,
            held: Vec::new(),
            release_at: None,
            releasing: false,
            grew_this_turn: false,
        })
    }

    fn push(&mut self, e: squeue::Entry) {
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
                    tracing_error("submit", &err);
                }
            }
        }
    }

    fn arm_accept(&mut self) {
        // Accepting goes on while draining: health checks must get their
        // 503, and upgrades are refused with it.
        if self.accept_armed || self.accept_paused {
            return;
        }
        let Some(listener) = &self.listener else {
            return;
        };
        let e = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .allocate_file_index(true)
            .build()
            .user_data(token::encode(Op::Accept, 0, 0));
        self.push(e);
        self.accept_armed = true;
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
        loop {
            self.elapsed = self.start.elapsed();
            self.core.now = timer::now(self.elapsed);
            self.grew_this_turn = false;
            let mut cqes = std::mem::take(&mut self.cqes);
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &cqes {
                self.complete(&mut app, ud, res, flags);
            }
            self.cqes = cqes;
            self.read_mail(&mut app);
            self.flush(&mut app);
            if self.finished() {
                break;
            }
            self.wait();
        }
        self.bufs.unregister(&self.ring.submitter());
        // Sends still in flight (the drain deadline passed) may be read by
        // the kernel until the ring's teardown cancels them: leak their
        // buffers rather than free memory the kernel may still read.
        for (_, c) in self.core.conns.iter_mut() {
            if let Some(op) = c.sending.take() {
                Box::leak(op);
            }
        }
    }

    fn io(&mut self) -> Io<'_, M> {
        Io {
            core: &mut self.core,
            mail: &mut self.mail,
        }
    }

    fn read_mail<A: App<Mail = M>>(&mut self, app: &mut A) {
        let mut inbox = std::mem::take(&mut self.inbox);
        let n = self.mail.drain(|from, m| inbox.push((from, m)));
        ShardStats::add(&self.core.my_stats().mail_received_total, n as u64);
        for (from, m) in inbox.drain(..) {
            app.mail(&mut self.io(), from, m);
        }
        self.inbox = inbox;
        self.mail.retry_backlog();
    }

    /// Submit this turn's work and sleep until a completion arrives, unless
    /// there is already more to do.
    fn wait(&mut self) {
        // Backlogged mail first, so that what it moves into rings is rung
        // for below (a sleeping target would otherwise miss it).
        let backlog = self.mail.retry_backlog();
        let mut bells = Vec::new();
        self.mail.bells(|to, fd| bells.push((to, fd)));
        ShardStats::add(
            &self.core.my_stats().doorbells_rung_total,
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
        let sleep = self.core.dirty.is_empty() && self.mail.prepare_sleep();
        let r = if !sleep {
            // Submit, then (DEFER_TASKRUN runs completion work only when
            // we ask for events) GETEVENTS without blocking: one enter, and
            // input that arrived while this turn's sends ran inline is
            // completed by it too, for the next turn.
            let pending = self.ring.submission().len() as u32;
            // SAFETY: no argument struct is passed; every queued entry's
            // buffers stay alive until its completion (see `push`).
            unsafe {
                self.ring.submitter().enter::<libc::sigset_t>(
                    pending,
                    0,
                    IORING_ENTER_GETEVENTS,
                    None,
                )
            }
        } else if backlog || self.release_at.is_some() {
            // Mail waits for room in a full ring: sleep, but only briefly,
            // rather than spin on a slow (or exited) shard. Held data waits
            // for its release.
            let mut wake = if backlog {
                BACKLOG_RETRY
            } else {
                std::time::Duration::MAX
            };
            if let Some(t) = self.release_at {
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
                tracing_error("io_uring_enter", &e);
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
                    .core
                    .stats
                    .iter()
                    .map(|s| s.connections_open.load(Ordering::Relaxed))
                    .sum();
                open == 0 || self.core.now > deadline + ticks(TICK_GRACE)
            }
        }
    }

    fn complete<A: App<Mail = M>>(&mut self, app: &mut A, ud: u64, res: i32, flags: u32) {
        let Some((op, key, gen)) = token::decode(ud) else {
            return;
        };
        match op {
            Op::Accept => self.on_accept(res, flags),
            Op::Recv => self.on_recv(app, key, gen, res, flags),
            Op::Send => {
                if self.on_send(key, gen, res) {
                    app.writable(&mut self.io(), ConnId { key, gen });
                }
            }
            Op::Shutdown => {
                if let Some(c) = live(&mut self.core.conns, key, gen) {
                    c.shutting = false;
                    self.core.mark(key);
                }
            }
            Op::Close => self.on_close(key, gen),
            Op::Tick => {
                if !cqueue::more(flags) {
                    self.arm_tick();
                }
                self.on_tick(app);
            }
            Op::Doorbell => ShardStats::add(&self.core.my_stats().doorbells_received_total, 1),
            Op::Connect => self.on_connect(key, gen, res),
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res < 0 {
            if res == -libc::ENFILE || res == -libc::EMFILE {
                // The direct descriptor table is full: stop accepting
                // (connections wait in the backlog) until a slot frees.
                ShardStats::add(&self.core.my_stats().accept_table_full_total, 1);
                self.accept_paused = true;
            }
            if !self.accept_armed {
                self.arm_accept();
            }
            return;
        }
        let now = self.core.now;
        let gen = self.core.next_gen();
        let mut conn = Conn::new(res as u32, gen, now);
        conn.wheel_at = now + ticks(self.config.handshake_timeout);
        let key = self.core.conns.insert(conn) as u32;
        self.wheel.schedule(
            now + ticks(self.config.handshake_timeout),
            timer::Entry { key, gen },
        );
        let s = self.core.my_stats();
        ShardStats::add(&s.connections_accepted_total, 1);
        ShardStats::add(&s.connections_open, 1);
        self.arm_recv(key);
        if !self.accept_armed {
            self.arm_accept();
        }
    }

    /// Give each outbound connection asked for since the last flush its
    /// socket, its slot and its connect.
    fn start_dials(&mut self) {
        while let Some(key) = self.core.dials.pop() {
            if let Err(why) = self.start_dial(key) {
                if let Some(o) = self.core.outbound.get_mut(&key) {
                    o.error.get_or_insert(why);
                }
                self.kill(key);
            }
        }
    }

    fn start_dial(&mut self, key: u32) -> Result<(), String> {
        let now = self.core.now;
        let Some(out) = self.core.outbound.get(&key) else {
            return Err("internal: no dial".into());
        };
        // Deadline first: whatever fails below still ends in a release.
        let at = now + ticks(self.config.handshake_timeout);
        if let Some(c) = self.core.conns.get_mut(key as usize) {
            c.wheel_at = at;
            c.since = now;
            self.wheel.schedule(at, timer::Entry { key, gen: c.gen });
        }
        if self.listener.is_some() {
            // Accepts take kernel-allocated slots from the same table; a
            // shard that does both would need IORING_REGISTER_FILE_ALLOC_RANGE.
            return Err("outbound connections need a runtime without a listener".into());
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None if self.next_slot < self.table => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return Err("direct descriptor table full".into()),
        };
        let fd = match dial_socket(&out.dial) {
            Ok(fd) => fd,
            Err(e) => {
                self.free_slots.push(slot);
                return Err(format!("socket for {}: {e}", out.dial.to));
            }
        };
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(slot, &[fd.as_raw_fd()])
        {
            self.free_slots.push(slot);
            return Err(format!("cannot register the socket: {e}"));
        }
        // The table holds its own reference: the fd itself goes now, so
        // connections never count against RLIMIT_NOFILE.
        drop(fd);
        let (addr, len) = (out.addr.as_ptr(), out.addr.len());
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return Err("internal: no connection".into());
        };
        c.slot = slot;
        c.connecting = true;
        // SAFETY (of the pointer): `addr` lives in the boxed Outbound, which
        // stays in `core.outbound` until the connection opens or is
        // released, both after this connect completes.
        let e = opcode::Connect::new(Fixed(slot), addr, len)
            .build()
            .user_data(token::encode(Op::Connect, key, c.gen));
        self.push(e);
        Ok(())
    }

    fn on_connect(&mut self, key: u32, gen: u32, res: i32) {
        let now = self.core.now;
        let Some(c) = live(&mut self.core.conns, key, gen) else {
            return;
        };
        c.connecting = false;
        let out = self.core.outbound.get_mut(&key);
        if res < 0 || c.phase != Phase::Connecting {
            if let Some(o) = out {
                let e = std::io::Error::from_raw_os_error(-res);
                o.error
                    .get_or_insert_with(|| format!("connect to {}: {e}", o.dial.to));
            }
            self.kill(key);
            return;
        }
        let Some(o) = out else {
            self.kill(key);
            return;
        };
        let host = o.dial.to.to_string();
        let protocols: Vec<&str> = o.dial.protocols.iter().map(String::as_str).collect();
        let (handshake, request) = ClientHandshake::new(&host, &o.dial.path, &protocols);
        o.handshake = Some(handshake);
        c.phase = Phase::Handshake;
        c.since = now;
        c.tx.push(Bytes::from(request));
        self.core.mark(key);
    }

    fn arm_recv(&mut self, key: u32) {
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return;
        };
        if c.recv_armed {
            return;
        }
        c.recv_armed = true;
        let e = opcode::RecvMulti::new(Fixed(c.slot), self.bufs.bgid())
            .build()
            .user_data(token::encode(Op::Recv, key, c.gen));
        self.push(e);
    }

    fn on_recv<A: App<Mail = M>>(&mut self, app: &mut A, key: u32, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let Some(c) = live(&mut self.core.conns, key, gen) else {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            return;
        };
        if !cqueue::more(flags) {
            c.recv_armed = false;
        }
        if res <= 0 {
            if let Some(b) = bid {
                self.bufs.recycle(b);
            }
            if res == -libc::ENOBUFS {
                // Every buffer is in use: offer more (up to the cap) and
                // re-arm in the flush step, after this turn returned some.
                ShardStats::add(&self.core.stats[self.core.me].recv_enobufs_total, 1);
                // At most once a turn: a burst of ENOBUFS in one batch is
                // one shortage, not many (the pool never shrinks).
                if !self.grew_this_turn {
                    self.grew_this_turn = true;
                    let n = self.bufs.offered().max(16);
                    self.bufs.grow(n);
                }
                self.core.mark(key);
                return;
            }
            if res == -libc::ECANCELED && c.recv_armed {
                return;
            }
            if res == 0 && c.phase != Phase::Dead && c.phase != Phase::Releasing {
                // EOF: the peer is done sending, maybe not done reading
                // (a half-close after its last request). Answer what is
                // queued, then close. A frame it left unfinished dies here.
                c.eof = true;
                c.rx = Vec::new();
                if matches!(c.phase, Phase::Handshake | Phase::Open) {
                    c.phase = Phase::Flushing;
                    c.since = self.core.now;
                }
                self.core.mark(key);
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
        c.last_rx = self.core.now;
        c.ping_sent = None;
        ShardStats::add(
            &self.core.stats[self.core.me].bytes_received_total,
            res as u64,
        );
        let was_handshake = c.phase == Phase::Handshake;
        let data = self.bufs.buf(bid, res as usize);
        // Detach the buffered bytes and the protocol state so the
        // application may use `Io` (which reaches every connection,
        // including this one) while we hand it slices of them.
        let mut rx = std::mem::take(&mut c.rx);
        if rx.is_empty() {
            // The common case: parse in place in the kernel's buffer; copy
            // only an unfinished tail.
            let used = process(app, &mut self.core, &mut self.mail, &self.config, key, data);
            if used < data.len() {
                rx.extend_from_slice(&data[used..]);
            }
        } else {
            rx.extend_from_slice(data);
            let used = process(
                app,
                &mut self.core,
                &mut self.mail,
                &self.config,
                key,
                &mut rx,
            );
            rx.drain(..used);
        }
        self.bufs.recycle(bid);
        if was_handshake
            && self
                .core
                .conns
                .get(key as usize)
                .is_some_and(|c| c.phase == Phase::Open)
        {
            // Upgraded: from now on the idle-ping clock runs, not the
            // handshake deadline.
            let at = self.core.now + ticks(self.config.idle_ping);
            self.reschedule(key, at);
        }
        if let Some(c) = self.core.conns.get_mut(key as usize) {
            if rx.is_empty() && rx.capacity() > 64 * 1024 {
                // A large message passed; do not keep its buffer forever.
                rx = Vec::new();
            }
            c.rx = rx;
            if !c.recv_armed {
                self.core.mark(key);
            }
        }
    }

    /// A send completed. True when the connection's queue is now empty
    /// and it is still open (the application may want to send more).
    fn on_send(&mut self, key: u32, gen: u32, res: i32) -> bool {
        let me = self.core.me;
        let Some(c) = live(&mut self.core.conns, key, gen) else {
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
        let s = &self.core.stats[me];
        ShardStats::add(&s.bytes_sent_total, res as u64);
        ShardStats::add(&s.frames_sent_total, frames as u64);
        if op.is_empty() || c.phase == Phase::Dead {
            let drained = c.tx.is_empty() && c.phase == Phase::Open && c.opened;
            if c.tx.is_empty() {
                // Idle again: hold no send buffer at all.
                c.tx.release();
            }
            self.pool_return(op);
            self.core.mark(key);
            drained
        } else {
            // A short write: send the rest at once, topped up with
            // whatever was queued meanwhile.
            self.submit_send(key, op);
            false
        }
    }

    fn pool_return(&mut self, mut op: Box<SendOp>) {
        op.bufs.clear();
        if self.pool.len() < SENDOP_POOL {
            self.pool.push(op);
        }
    }

    fn on_close(&mut self, key: u32, gen: u32) {
        if self
            .core
            .conns
            .get(key as usize)
            .is_some_and(|c| c.gen == gen)
        {
            self.release(key);
        }
    }

    /// The slot is closed (or never had a socket): forget the connection.
    fn release(&mut self, key: u32) {
        if self.core.conns.contains(key as usize) {
            let c = self.core.conns.remove(key as usize);
            if c.outbound() && c.slot != NO_SLOT {
                self.free_slots.push(c.slot);
            }
            self.core.outbound.remove(&key);
            ShardStats::sub(&self.core.my_stats().connections_open, 1);
            if self.accept_paused {
                self.accept_paused = false;
                self.arm_accept();
            }
        }
    }

    /// The transport is unusable: drop queues, end in-flight work, release.
    fn kill(&mut self, key: u32) {
        if let Some(c) = self.core.conns.get_mut(key as usize) {
            if c.phase != Phase::Releasing {
                c.phase = Phase::Dead;
                c.tx.clear();
                c.rx = Vec::new();
            }
        }
        self.core.mark(key);
    }

    fn on_tick<A: App<Mail = M>>(&mut self, app: &mut A) {
        let now = timer::now(self.start.elapsed());
        self.core.now = now;
        if !self.core.draining && self.draining_flag.load(Ordering::Relaxed) {
            self.begin_drain(app);
        }
        if self.accept_paused && !self.accept_armed {
            // ENFILE/EMFILE may be system-wide, not ours: try again.
            self.accept_paused = false;
            self.arm_accept();
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(now, &mut due);
        for e in due.drain(..) {
            self.deadline(e.key, e.gen);
        }
        self.due = due;
        app.tick(&mut self.io());
        if let Some(deadline) = self.drain_deadline {
            if now >= deadline {
                let keys: Vec<u32> = self.core.conns.iter().map(|(k, _)| k as u32).collect();
                for k in keys {
                    self.kill(k);
                }
            }
        }
    }

    fn begin_drain<A: App<Mail = M>>(&mut self, _app: &mut A) {
        self.core.draining = true;
        self.drain_deadline = Some(self.core.now + ticks(self.config.drain_timeout).max(1));
        let now = self.core.now;
        let open: Vec<u32> = self
            .core
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open)
            .map(|(k, _)| k as u32)
            .collect();
        for key in open {
            let Some(c) = self.core.conns.get_mut(key as usize) else {
                continue;
            };
            // After what is already queued: 1001, going away.
            if let Some(f) = c.ws.close(code::GOING_AWAY, "server shutting down") {
                c.tx.push(f);
            }
            c.since = now;
            self.core.mark(key);
        }
    }

    /// A connection's wheel entry fired: enforce whatever deadline its
    /// phase has, and schedule the next check.
    fn deadline(&mut self, key: u32, gen: u32) {
        let now = self.core.now;
        let cfg = &self.config;
        let Some(c) = live(&mut self.core.conns, key, gen) else {
            return;
        };
        if now < c.wheel_at {
            return; // superseded by an earlier or later entry
        }
        let close_t = ticks(cfg.close_timeout).max(1);
        let mut touched = false;
        let next = match c.phase {
            Phase::Connecting | Phase::Handshake => {
                let at = c.since + ticks(cfg.handshake_timeout);
                if now >= at {
                    ShardStats::add(&self.core.stats[self.core.me].timeouts_total, 1);
                    if let Some(o) = self.core.outbound.get_mut(&key) {
                        o.error.get_or_insert_with(|| "handshake timed out".into());
                    }
                    self.kill(key);
                    return;
                }
                at
            }
            Phase::Open if c.ws.state() != State::Open => {
                // Our close went out; the peer has close_timeout to answer.
                let at = c.since + close_t;
                if now >= at {
                    ShardStats::add(&self.core.stats[self.core.me].timeouts_total, 1);
                    c.phase = Phase::Flushing;
                    c.tx.clear();
                    touched = true;
                    now + close_t
                } else {
                    at
                }
            }
            Phase::Open => match c.ping_sent {
                Some(sent) if now >= sent + ticks(cfg.pong_timeout) => {
                    ShardStats::add(&self.core.stats[self.core.me].timeouts_total, 1);
                    if let Some(f) = c.ws.close(code::GOING_AWAY, "ping timeout") {
                        c.tx.push_close_now(f);
                    }
                    c.phase = Phase::Flushing;
                    c.since = now;
                    touched = true;
                    now + close_t
                }
                Some(sent) => sent + ticks(cfg.pong_timeout),
                None if now >= c.last_rx + ticks(cfg.idle_ping) => {
                    c.tx.push_control(c.ws.encode(crate::ws::OpCode::Ping, b""));
                    c.ping_sent = Some(now);
                    touched = true;
                    now + ticks(cfg.pong_timeout)
                }
                None => c.last_rx + ticks(cfg.idle_ping),
            },
            Phase::Flushing | Phase::Lingering => {
                if now >= c.since + close_t {
                    // The peer neither reads nor closes: cut it off.
                    self.kill(key);
                    return;
                }
                c.since + close_t
            }
            Phase::Dead | Phase::Releasing => return,
        };
        let next = next.max(now + 1);
        c.wheel_at = next;
        self.wheel.schedule(next, timer::Entry { key, gen });
        if touched {
            self.core.mark(key);
        }
    }

    /// Move a connection's timer earlier (phase changes with shorter
    /// deadlines).
    fn reschedule(&mut self, key: u32, at: Ticks) {
        if let Some(c) = self.core.conns.get_mut(key as usize) {
            if at < c.wheel_at || c.wheel_at <= self.core.now {
                c.wheel_at = at;
                self.wheel.schedule(at, timer::Entry { key, gen: c.gen });
            }
        }
    }

    /// The flush step: for each connection in line (up to SENDS_PER_TURN
    /// sends), tell the application about closes, then submit at most one
    /// of each: send, receive re-arm, shutdown, close. A key left in line
    /// whose connection closed meanwhile, even one whose slot a new
    /// connection took, only costs that connection an idle look.
    fn flush<A: App<Mail = M>>(&mut self, app: &mut A) {
        self.start_dials();
        let due = self.release_at.is_some_and(|t| self.elapsed >= t);
        if due || (self.drain_deadline.is_some() && !self.held.is_empty()) {
            self.release_at = None;
            self.releasing = true;
            for key in std::mem::take(&mut self.held) {
                if let Some(c) = self.core.conns.get_mut(key as usize) {
                    c.held = false;
                }
                self.core.mark(key);
            }
        }
        // At most SENDS_PER_TURN sends, then the turn ends and new input is
        // taken in; the rest wait their turn, first come, first served.
        // Handling one connection can dirty others (an app callback that
        // sends): they join the end of the line. A write delay's release
        // must go out in one pass (the next turn would hold them again),
        // and latency is not its point anyway.
        let budget = if self.config.write_delay.is_zero() {
            SENDS_PER_TURN
        } else {
            usize::MAX
        };
        let mut sends = 0;
        while sends < budget {
            let Some(key) = self.core.dirty.pop_front() else {
                break;
            };
            if let Some(c) = self.core.conns.get_mut(key as usize) {
                c.dirty = false;
            }
            sends += usize::from(self.flush_one(app, key));
        }
        self.releasing = false;
        if !self.core.dials.is_empty() {
            // Asked for during the flush (an app callback reconnecting):
            // another pass dials them.
            self.flush(app);
        }
    }

    /// Returns whether a send was submitted.
    fn flush_one<A: App<Mail = M>>(&mut self, app: &mut A, key: u32) -> bool {
        let now = self.core.now;
        let close_t = ticks(self.config.close_timeout).max(1);
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return false;
        };
        let id = ConnId { key, gen: c.gen };
        if let Some((status, reason)) = c.close_req.take() {
            if c.phase == Phase::Open {
                if let Some(f) = c.ws.close(status, reason) {
                    c.tx.push_close_now(f);
                }
                c.since = now;
                c.phase = Phase::Flushing;
            }
        }
        if c.phase == Phase::Open && c.ws.state() == State::Closed {
            c.phase = Phase::Flushing;
            c.since = now;
        }
        if c.opened && c.phase != Phase::Open {
            c.opened = false;
            app.closed(&mut self.io(), id);
        } else if c.dialing && !matches!(c.phase, Phase::Connecting | Phase::Handshake) {
            c.dialing = false;
            let why = self
                .core
                .outbound
                .remove(&key)
                .and_then(|o| o.error)
                .unwrap_or_else(|| "connection closed during the handshake".into());
            app.connect_failed(&mut self.io(), id, &why);
        }
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return false;
        };
        if c.phase == Phase::Flushing && c.wheel_at > c.since + close_t {
            // Bound the flush by the close timeout, not by whatever the
            // connection's timer was set to before.
            let at = c.since + close_t;
            self.reschedule(key, at);
        }
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return false;
        };
        // Not a return: a connection that sends must still get its
        // receive re-armed below (it stops on ENOBUFS, or without MORE).
        let mut sent = false;
        match c.phase {
            Phase::Connecting => {}
            Phase::Handshake | Phase::Open | Phase::Flushing => {
                let delay = self.config.write_delay;
                let hold = !delay.is_zero()
                    && !self.releasing
                    && self.drain_deadline.is_none()
                    && c.phase == Phase::Open
                    && !c.tx.has_control()
                    && c.tx.bytes() < HOLD_MAX_BYTES;
                if c.sending.is_none() && !c.tx.is_empty() && hold {
                    if !c.held {
                        c.held = true;
                        self.held.push(key);
                    }
                    self.release_at.get_or_insert(self.elapsed + delay);
                } else if c.sending.is_none() && !c.tx.is_empty() {
                    let op = self.pool.pop().unwrap_or_else(SendOp::new);
                    self.submit_send(key, op);
                    sent = true;
                } else if c.phase == Phase::Flushing && c.sending.is_none() && c.tx.is_empty() {
                    // Everything is out: half-close, then wait for the
                    // peer's EOF so unread input cannot turn our close
                    // into a reset that destroys what we just sent.
                    c.phase = Phase::Lingering;
                    c.since = now;
                    c.shutting = true;
                    let e = opcode::Shutdown::new(Fixed(c.slot), libc::SHUT_WR)
                        .build()
                        .user_data(token::encode(Op::Shutdown, key, c.gen));
                    self.push(e);
                    self.reschedule(key, now + close_t);
                }
                if self
                    .core
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| !c.recv_armed && !c.eof)
                {
                    self.arm_recv(key);
                }
            }
            Phase::Lingering => {
                if c.eof {
                    // The peer's EOF came: nothing left to wait for.
                    c.phase = Phase::Dead;
                    self.core.mark(key);
                } else if !c.recv_armed {
                    // Receive stopped (ENOBUFS, or no MORE) with input
                    // still coming: keep reading it until EOF.
                    self.arm_recv(key);
                }
            }
            Phase::Dead if c.slot == NO_SLOT => self.release(key),
            Phase::Dead => {
                if c.recv_armed || c.sending.is_some() || c.shutting || c.connecting {
                    if !c.shut && !c.shutting {
                        c.shut = true;
                        c.shutting = true;
                        let e = opcode::Shutdown::new(Fixed(c.slot), libc::SHUT_RDWR)
                            .build()
                            .user_data(token::encode(Op::Shutdown, key, c.gen));
                        self.push(e);
                    }
                } else {
                    c.phase = Phase::Releasing;
                    let e = opcode::Close::new(Fixed(c.slot))
                        .build()
                        .user_data(token::encode(Op::Close, key, c.gen));
                    self.push(e);
                }
            }
            Phase::Releasing => {}
        }
        sent
    }

    /// Submit `op` (holding the unsent rest of a short write, or empty)
    /// topped up from the queue: one sendmsg for everything queued.
    fn submit_send(&mut self, key: u32, mut op: Box<SendOp>) {
        let Some(c) = self.core.conns.get_mut(key as usize) else {
            return;
        };
        while op.bufs.len() < MAX_IOV {
            match c.tx.pop() {
                Some(f) => op.bufs.push_back(f),
                None => break,
            }
        }
        let ud = token::encode(Op::Send, key, c.gen);
        let e = match op.bufs.front() {
            // One buffer (a lone frame, or a short write's rest): plain
            // SEND skips the msghdr and iovec import, ~0.3-0.6 us of the
            // ~6.5 us a loopback send costs here (examples/send_cost).
            Some(only) if op.bufs.len() == 1 => opcode::Send::new(
                Fixed(c.slot),
                only.bytes().as_ptr(),
                only.len().min(u32::MAX as usize) as u32,
            )
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud),
            _ => {
                op.prepare();
                let hdr = &op.hdr as *const libc::msghdr;
                opcode::SendMsg::new(Fixed(c.slot), hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
                    .user_data(ud)
            }
        };
        c.sending = Some(op);
        ShardStats::add(&self.core.stats[self.core.me].sends_total, 1);
        self.push(e);
    }
}

/// Bytes for connection `key` in `buf` (the kernel's buffer, or the
/// connection's own when a frame straddled reads). Returns how many were
/// used; the rest is an unfinished head or frame to keep.
fn process<A: App>(
    app: &mut A,
    core: &mut Core,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    buf: &mut [u8],
) -> usize {
    let Some(c) = core.conns.get_mut(key as usize) else {
        return buf.len();
    };
    let id = ConnId { key, gen: c.gen };
    let mut used = 0;
    if c.phase == Phase::Handshake && c.outbound() {
        let verdict = core.outbound.get(&key).and_then(|o| {
            o.handshake
                .as_ref()
                .map(|h| (h.verify(buf), o.dial.max_message))
        });
        match verdict {
            Some((Ok(None), _)) => return 0,
            Some((Ok(Some(accepted)), max)) => {
                core.outbound.remove(&key);
                c.ws = Connection::new(Role::Client, max);
                c.phase = Phase::Open;
                c.opened = true;
                c.dialing = false;
                c.last_rx = core.now;
                ShardStats::add(&core.stats[core.me].websocket_upgrades_total, 1);
                core.mark(key);
                app.connected(&mut Io { core, mail }, id);
                used = accepted.consumed;
            }
            Some((Err(e), _)) => {
                if let Some(o) = core.outbound.get_mut(&key) {
                    o.error = Some(format!("handshake: {e}"));
                }
                c.phase = Phase::Dead;
                c.tx.clear();
                core.mark(key);
                return buf.len();
            }
            None => return buf.len(),
        }
    } else if c.phase == Phase::Handshake {
        match handshake::accept(buf, &config.handshake) {
            Outcome::Partial => return 0,
            Outcome::Reject { response, .. } => {
                ShardStats::add(&core.stats[core.me].handshakes_rejected_total, 1);
                respond(core, key, response);
                return buf.len();
            }
            Outcome::Http { route, .. } => {
                let response = app.http(&mut Io { core, mail }, route);
                respond(core, key, response);
                return buf.len();
            }
            Outcome::Upgrade { .. } if core.draining => {
                ShardStats::add(&core.stats[core.me].handshakes_rejected_total, 1);
                respond(core, key, http::error(503, &[], "server is shutting down"));
                return buf.len();
            }
            Outcome::Upgrade { .. } if core.conns.len() > core.max_upgraded => {
                let s = &core.stats[core.me];
                ShardStats::add(&s.handshakes_rejected_total, 1);
                ShardStats::add(&s.upgrades_refused_full_total, 1);
                let retry = [("Retry-After", "1")];
                respond(
                    core,
                    key,
                    http::error(503, &retry, "server at connection capacity"),
                );
                return buf.len();
            }
            Outcome::Upgrade { consumed, upgrade } => {
                if let Err(response) = app.upgrade(&mut Io { core, mail }, id, &upgrade) {
                    ShardStats::add(&core.stats[core.me].handshakes_rejected_total, 1);
                    respond(core, key, response);
                    return buf.len();
                }
                let Some(c) = core.conns.get_mut(key as usize) else {
                    return buf.len();
                };
                let max = match upgrade.route {
                    Route::Echo => config.max_message_echo,
                    Route::PubSub => config.max_message,
                };
                c.ws = Connection::new(Role::Server, max);
                c.route = upgrade.route;
                c.phase = Phase::Open;
                c.opened = true;
                c.last_rx = core.now;
                // As control: a write delay must not hold the handshake.
                c.tx.push_control(upgrade.response);
                ShardStats::add(&core.stats[core.me].websocket_upgrades_total, 1);
                core.mark(key);
                used = consumed;
            }
        }
    }
    let Some(c) = core.conns.get_mut(key as usize) else {
        return buf.len();
    };
    if c.phase != Phase::Open {
        // Closing: input is read only to notice EOF.
        return buf.len();
    }
    // The stand-in keeps the role: `Io::send_text` frames by it while the
    // application handles a message from this very connection.
    let role = c.ws.role();
    let mut ws = std::mem::replace(&mut c.ws, Connection::new(role, 0));
    used += frames(app, core, mail, id, &mut ws, &mut buf[used..]);
    if let Some(c) = core.conns.get_mut(key as usize) {
        c.ws = ws;
    }
    used
}

/// Queue an HTTP response and close after it.
fn respond(core: &mut Core, key: u32, response: Bytes) {
    if let Some(c) = core.conns.get_mut(key as usize) {
        c.tx.push(response);
        c.phase = Phase::Flushing;
        c.since = core.now;
        core.mark(key);
    }
}

/// Decode frames from `buf` and act on them.
fn frames<A: App>(
    app: &mut A,
    core: &mut Core,
    mail: &mut Mailbox<A::Mail>,
    id: ConnId,
    ws: &mut Connection,
    buf: &mut [u8],
) -> usize {
    let mut off = 0;
    while off < buf.len() {
        match ws.read(&mut buf[off..]) {
            Ok(Read::Frame { consumed, event }) => {
                off += consumed;
                let Some(event) = event else { continue };
                match event {
                    Event::Message(m) => {
                        ShardStats::add(&core.stats[core.me].messages_received_total, 1);
                        if core.conn(id).is_some_and(|c| c.close_req.is_none()) {
                            app.message(&mut Io { core, mail }, id, m);
                        }
                    }
                    Event::Ping { pong: Some(p), .. } => {
                        let cap = core.max_backlog;
                        if let Some(c) = core.conn(id) {
                            if c.backlog() + p.len() > cap {
                                c.close_req = Some((code::POLICY_VIOLATION, "send queue overflow"));
                            } else {
                                c.tx.push_control(p);
                            }
                            core.mark(id.key);
                        }
                    }
                    Event::Ping { pong: None, .. } | Event::Pong(_) => {}
                    Event::Close { reply, body } => {
                        if let Some(c) = core.conn(id) {
                            c.close_code = body.code.unwrap_or(1005);
                            // Answers already queued still go out first:
                            // a client that sends and then closes gets its
                            // replies.
                            if let Some(r) = reply {
                                c.tx.push(r);
                            }
                            core.mark(id.key);
                        }
                    }
                }
            }
            Ok(Read::Incomplete { .. }) => break,
            Err(failure) => {
                ShardStats::add(&core.stats[core.me].protocol_errors_total, 1);
                if let Some(c) = core.conn(id) {
                    c.close_code = failure.error.code;
                    // After what was already answered; nothing follows it.
                    if let Some(f) = failure.close {
                        c.tx.push(f);
                    }
                    core.mark(id.key);
                }
                return buf.len();
            }
        }
    }
    off
}

fn tracing_error(what: &str, e: &std::io::Error) {
    eprintln!("ringfan: {what}: {e}");
}

/// A socket for an outbound connection, bound to its source address.
fn dial_socket(dial: &Dial) -> std::io::Result<OwnedFd> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(dial.to),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_nodelay(true)?;
    if let Some(ip) = dial.from {
        // Pick the port at connect time, by the whole 4-tuple, instead of
        // reserving one per bind: without this a source address runs out
        // of ports at ~28k binds whatever the destinations.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a pointer to a local c_int of the
        // length passed.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        s.bind(&std::net::SocketAddr::new(ip, 0).into())?;
    }
    Ok(s.into())
}
