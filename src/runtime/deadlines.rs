//! The shard's timer tick: draining, and each connection's deadlines. The
//! transport's own (handshake, flush, linger) are enforced here; an open
//! connection's protocol timers (idle ping, pong, close handshake) are the
//! WebSocket core's rules ([`crate::ws::keepalive`]), which this only
//! drives.

use super::app::App;
use super::config::Config;
use super::conn::Phase;
use super::recv_rate;
use super::shard::Shard;
use super::table::live;
use super::timer::{self, ticks, Ticks};
use crate::metrics::inc;
use crate::ws::close::code;
use crate::ws::keepalive::{Due, Timeouts};
use std::sync::atomic::Ordering;

/// The fewest receive buffers a shard offers between storms (see
/// `Shard::tend_buffers`): 128 KiB of touched pages at most.
const QUIET_BUFFERS: u16 = 32;

/// The configured timeouts in wheel ticks, converted once: a `Duration`
/// to ticks is a u128 division, and the flush needs the close timeout for
/// every connection it serves, every turn.
#[derive(Debug, Clone, Copy)]
pub(super) struct Periods {
    pub keepalive: Timeouts,
    pub handshake: Ticks,
    pub handshake_busy: Ticks,
    pub http_keepalive: Ticks,
}

/// How long after a buffer shortage, or after the last input, the receive
/// buffers are tended (see `tend_buffers`): long enough that a storm's
/// bursts do not shrink and regrow the pool, short enough that memory
/// comes back within a minute of a storm.
const BUFFERS_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

impl Periods {
    pub fn new(config: &Config) -> Self {
        Self {
            keepalive: Timeouts {
                idle_ping: ticks(config.idle_ping),
                pong: ticks(config.pong_timeout),
                close: ticks(config.close_timeout).max(1),
            },
            handshake: ticks(config.handshake_timeout),
            http_keepalive: ticks(config.http_keepalive),
            handshake_busy: ticks(config.handshake_timeout_busy),
        }
    }
}

impl<M> Shard<M> {
    pub(super) fn on_tick<A: App<Mail = M>>(&mut self, app: &mut A) {
        let now = timer::now(self.start.elapsed());
        self.table.now = now;
        // First, before anything below can submit (a full submission
        // queue submits inline, and a receive could then fill a buffer
        // that `release_idle` would zero).
        self.tend_buffers(now);
        if !self.table.draining && self.draining_flag.load(Ordering::Relaxed) {
            self.begin_drain();
        }
        if self.drain_closes_owed && (app.settled(&mut self.io()) || self.drain_late(now)) {
            self.drain_closes_owed = false;
            self.close_for_drain();
        }
        let table_full = self.table.conns.len() >= self.table_size as usize;
        if self.accept_paused && !self.accepting() && !table_full {
            // ENFILE/EMFILE may be system-wide, not ours: try again. But not
            // while our own table is full: an accept that finds no free
            // slot has already taken the connection off the listen queue
            // and the kernel resets it, so retrying every tick reset one
            // waiting client per tick (a /healthz among them; found when
            // runtime_bounds failed under load). A release re-arms.
            self.accept_paused = false;
            self.arm_accept();
        }
        self.tidy_handshakes();
        self.sweep_peers();
        crate::logs::tick(self.table.me);
        let mut due = std::mem::take(&mut self.due);
        self.wheel.expire(now, &mut due);
        for e in due.drain(..) {
            self.deadline(e.key, e.gen);
        }
        self.due = due;
        app.tick(&mut self.io());
        if let Some(deadline) = self.drain_deadline {
            if now >= deadline {
                let keys: Vec<u32> = self.table.conns.iter().map(|(k, _)| k as u32).collect();
                crate::logs::drain_forced(keys.len());
                for k in keys {
                    self.kill(k);
                }
            }
        }
    }

    /// Receive buffers grown in a storm are taken back once it is over
    /// (no shortage for `BUFFERS_SETTLE`), and a shard without input for
    /// that long hands back the memory of every buffer: a storm's 64 MiB
    /// of buffers per shard must not stay resident for good.
    ///
    /// Between storms the pool offers what the load needs: half again the
    /// most buffers one loop turn took lately (the peak is kept until a
    /// higher one comes or `BUFFERS_SETTLE` passes, then restarts from the
    /// last tick's)
    /// (rounded up to 16, at least [`QUIET_BUFFERS`], at most
    /// `recv_buffers`; a turn that finds it short grows it as in a storm).
    /// The kernel takes offered buffers in turn, so a trickle of pongs
    /// touches a page of every buffer offered: 16 shards × 256 buffers
    /// held 16 MiB (64 bytes a connection at 250,000) where the busiest
    /// turns took 40–60 (250,000 connections' pongs, 16 shards sharing one
    /// core). A busier turn raises it at the next tick.
    fn tend_buffers(&mut self, now: Ticks) {
        let settle = ticks(BUFFERS_SETTLE);
        let initial = self.config.recv_buffers;
        let peak = self.bufs.take_peak();
        if peak >= self.buffers_peak || now >= self.buffers_peak_at + settle {
            self.buffers_peak = peak;
            self.buffers_peak_at = now;
        }
        let want = (u32::from(self.buffers_peak) * 3 / 2)
            .next_multiple_of(16)
            .clamp(u32::from(QUIET_BUFFERS.min(initial)), u32::from(initial))
            as u16;
        let offered = self.bufs.offered();
        if offered < want {
            self.bufs.grow(want - offered);
        } else if now >= self.last_grow + settle {
            // A storm's growth goes back, and a quiet pool shrinks.
            self.bufs.shrink_to(want);
        }
        if now >= self.last_input + settle {
            self.bufs.release_idle();
        }
    }

    /// Shutdown began: the drain deadline starts, and every open
    /// connection gets 1001 after what it has queued once the application
    /// is settled (`App::settled`, asked from this tick on).
    fn begin_drain(&mut self) {
        self.table.draining = true;
        self.drain_deadline = Some(self.table.now + ticks(self.config.drain_timeout).max(1));
        self.drain_closes_owed = true;
    }

    /// One second before the drain deadline (or at once, for a deadline
    /// shorter than that): close whatever the application still waits on.
    fn drain_late(&self, now: Ticks) -> bool {
        self.drain_deadline
            .is_none_or(|d| now + ticks(std::time::Duration::from_secs(1)) >= d)
    }

    /// Every open connection gets 1001 after what it has queued; idle
    /// keep-alive HTTP connections end.
    fn close_for_drain(&mut self) {
        let open: Vec<u32> = self
            .table
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Open)
            .map(|(k, _)| k as u32)
            .collect();
        crate::logs::drain_began(self.table.me, open.len());
        for key in open {
            // After what is already queued: 1001, going away.
            self.table
                .close_after_queued(key, code::GOING_AWAY, "server shutting down");
        }
        // Idle keep-alive HTTP connections end now, after what is queued;
        // one waiting for its answer ends after it (`http::answered`).
        let now = self.table.now;
        let idle: Vec<u32> = self
            .table
            .conns
            .iter_mut()
            .filter(|(_, c)| c.phase == Phase::Http && !c.http_waiting())
            .map(|(k, c)| {
                c.phase = Phase::Flushing;
                c.since = now;
                k as u32
            })
            .collect();
        for key in idle {
            self.table.mark(key);
        }
    }

    /// A connection's wheel entry fired: enforce whatever deadline its
    /// phase has, and schedule the next check.
    fn deadline(&mut self, key: u32, gen: u32) {
        let now = self.table.now;
        let timeouts = self.periods.keepalive;
        let (close_t, handshake_t) = (timeouts.close, self.periods.handshake);
        let Some(c) = live(&mut self.table.conns, key, gen) else {
            return;
        };
        if now < c.wheel_at {
            return; // superseded by an earlier or later entry
        }
        let mut touched = false;
        let mut timed_out = false;
        let (too_slow, hold_next) = recv_rate::judge(c, now, self.config.min_recv_rate);
        touched |= too_slow;
        let next = match c.phase {
            Phase::Connecting | Phase::Handshake => {
                let at = c.since + handshake_t;
                if now >= at {
                    let connecting = c.phase == Phase::Connecting;
                    inc(&self.table.my_stats().timeouts_total, 1);
                    if let Some(o) = self.table.outbound.get_mut(&key) {
                        // Which step crawled: the TCP connect (SYNs
                        // unanswered, or the port search) or the upgrade.
                        o.error.get_or_insert_with(|| {
                            if connecting {
                                "connect timed out (TCP connect not completed)".into()
                            } else {
                                "handshake timed out (connected, no 101 response)".into()
                            }
                        });
                    }
                    self.kill(key);
                    return;
                }
                at
            }
            Phase::Http => {
                let at = c.since + self.periods.http_keepalive;
                if now >= at && !c.http_waiting() {
                    // Idle keep-alive: end it as a server does, with a
                    // FIN after whatever is still queued.
                    c.phase = Phase::Flushing;
                    c.since = now;
                    touched = true;
                    now + close_t
                } else if now >= at {
                    // Its answer is on its way from another shard (mail
                    // always comes back); look again later.
                    now + self.periods.http_keepalive
                } else {
                    at
                }
            }
            // The peer's close was read, or its protocol error failed the
            // connection, and the flush has not settled it yet (it waits
            // in line behind the turn's budget): not a timeout. Settle it
            // as the flush would, its close clock from now; the close
            // frame queued for it still goes out. (Judged as Open, its
            // close clock ran from `since`, the upgrade: a timer entry
            // firing in between, such as the handshake deadline's 10 s
            // after accept, timed it out and dropped its reply. In the
            // issue's storm 11,796-17,319 of 100,000 clean closes were
            // counted in timeouts_total that way; issue #11, session 17.)
            Phase::Open if c.ws.state() == crate::ws::State::Closed => {
                c.phase = Phase::Flushing;
                c.since = now;
                touched = true;
                now + close_t
            }
            Phase::Open => match c.keepalive.on_timeout(now, &timeouts, &mut c.ws, c.since) {
                None => c.keepalive.next(&timeouts, c.ws.state(), c.since),
                Some(Due::Ping(ping)) => {
                    c.tx.push_control(ping);
                    touched = true;
                    c.keepalive.next(&timeouts, c.ws.state(), c.since)
                }
                Some(Due::PingTimeout(close)) => {
                    if let Some(f) = close {
                        c.tx.push_close_now(f);
                    }
                    c.phase = Phase::Flushing;
                    c.since = now;
                    (touched, timed_out) = (true, true);
                    now + close_t
                }
                Some(Due::CloseTimeout) => {
                    c.phase = Phase::Flushing;
                    c.tx.clear();
                    (touched, timed_out) = (true, true);
                    now + close_t
                }
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
        let next = hold_next.map_or(next, |h| next.min(h)).max(now + 1);
        c.wheel_at = next;
        self.wheel.schedule(next, timer::Entry { key, gen });
        if timed_out {
            inc(&self.table.my_stats().timeouts_total, 1);
        }
        if too_slow {
            inc(&self.table.my_stats().recv_too_slow_total, 1);
        }
        if touched {
            self.table.mark(key);
        }
    }

    /// Move a connection's timer earlier (phase changes with shorter
    /// deadlines).
    pub(super) fn reschedule(&mut self, key: u32, at: Ticks) {
        if let Some(c) = self.table.conns.get_mut(key as usize) {
            if at < c.wheel_at || c.wheel_at <= self.table.now {
                c.wheel_at = at;
                self.wheel.schedule(at, timer::Entry { key, gen: c.gen });
            }
        }
    }
}
