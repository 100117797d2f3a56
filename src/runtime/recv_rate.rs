//! The minimum receive rate: a connection holding more than
//! `Config::min_recv_rate_pending` bytes of an unfinished frame or
//! fragmented message must keep sending at `Config::min_recv_rate` bytes/s,
//! judged over [`RATE_WINDOW`]; otherwise it is closed with 1008
//! `receive too slow`. Without it, a client could hold a message of up to
//! `--max-message` (16 MiB on `/echo`) per connection for as long as it
//! trickles a byte before each idle ping.
//!
//! It costs nothing per message: a check after each receive, and the
//! connection's timer (the wheel) fires at the window's end.

use super::conn::{Conn, Phase, NOT_HOLDING};
use super::shard::Shard;
use super::timer::{ticks, Ticks};
use crate::ws::close::code;
use std::time::Duration;

/// The window a rate is judged over: long enough for TCP to get past a few
/// lost segments (retransmit timeouts of 0.2 + 0.4 + 0.8 + 1.6 s), short
/// enough that a stalled client is not kept for long.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);

pub const TOO_SLOW: &str = "receive too slow";

impl<M> Shard<M> {
    /// After `n` bytes were received and parsed: start, continue or end
    /// the connection's holding period.
    pub(super) fn track_hold(&mut self, key: u32, n: usize) {
        let now = self.table.now;
        let rate = self.config.min_recv_rate;
        let pending_max = self.config.min_recv_rate_pending;
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        let pending = c.rx.len() + c.ws.buffered();
        if rate == 0 || c.phase != Phase::Open || c.read_paused() || pending <= pending_max {
            c.rx.end_hold();
            return;
        }
        if c.rx.hold_since() == NOT_HOLDING {
            c.rx.start_hold(now);
            self.reschedule(key, now + ticks(RATE_WINDOW));
        } else {
            c.rx.add_hold(n.min(u32::MAX as usize) as u32);
        }
    }
}

/// At a connection's deadline: if its window ended, judge it. True if it
/// was too slow (it is then asked to close with 1008). Returns the tick
/// of the next judgement, if it still holds.
pub(super) fn judge(c: &mut Conn, now: Ticks, rate: u32) -> (bool, Option<Ticks>) {
    let since = c.rx.hold_since();
    if since == NOT_HOLDING || c.read_paused() || c.phase != Phase::Open {
        return (false, None);
    }
    let window = ticks(RATE_WINDOW);
    let end = since.saturating_add(window);
    if now < end {
        return (false, Some(end));
    }
    let need = u64::from(rate) * RATE_WINDOW.as_secs();
    if u64::from(c.rx.hold_bytes()) < need {
        c.rx.end_hold();
        if c.close_req().is_none() {
            c.set_close_req(code::POLICY_VIOLATION, TOO_SLOW);
            return (true, None);
        }
        return (false, None);
    }
    c.rx.start_hold(now);
    (false, Some(now + window))
}
