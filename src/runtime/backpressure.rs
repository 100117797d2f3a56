//! Backpressure on input: a connection whose own backlog (pongs, acks,
//! errors, echo replies waiting to be sent) is over
//! `Config::max_backlog_read` is not read further until it is down to half
//! of that. A client that sends but never reads then fills its own socket
//! buffers, not our memory: one million empty pings took 66 MiB of queued
//! pongs before; now ~2 MiB.
//!
//! Stopping a multishot receive takes a cancel; what the kernel delivered
//! before the cancel landed is kept in `Conn::rx` unparsed (whole frames
//! included, which the buffer contract of `ws::connection` allows: they
//! are simply more bytes after the front) and parsed on resume. A dead
//! connection's receive is ended by a cancel too (`flush_dead`); a cancel's
//! own completion is `on_cancel`.

use super::app::App;
use super::conn::Phase;
use super::inbound;
use super::shard::Shard;
use super::table::live;
use super::token::{self, Op};
use crate::metrics::inc;
use io_uring::opcode;
use io_uring::types::Fixed;

impl<M> Shard<M> {
    /// After input was parsed: stop reading a connection whose backlog is
    /// over the bound.
    pub(super) fn check_backpressure(&mut self, key: u32) {
        let limit = self.table.max_backlog_read;
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        if c.read_paused() || !matches!(c.phase, Phase::Open | Phase::Http) || c.backlog() <= limit
        {
            return;
        }
        c.set_read_paused(true);
        // Not reading is our choice, not the client's slowness.
        c.rx.end_hold();
        let gen = c.gen;
        let cancel = c.recv_armed() && !c.recv_cancelling();
        if cancel {
            c.set_recv_cancelling(true);
        }
        inc(&self.table.my_stats().recv_paused_total, 1);
        if cancel {
            let e = opcode::AsyncCancel::new(token::encode(Op::Recv, key, gen))
                .build()
                .user_data(token::encode(Op::Cancel, key, gen));
            self.push(e);
        }
    }

    /// In the flush step: a paused connection whose backlog is down to
    /// half the bound has what it holds parsed, and is read again (the
    /// flush re-arms its receive). One that is closing just drops it.
    pub(super) fn resume_read<A: App<Mail = M>>(&mut self, app: &mut A, key: u32) {
        let limit = self.table.max_backlog_read;
        let now = self.table.now;
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        if !c.read_paused() {
            return;
        }
        if !matches!(c.phase, Phase::Open | Phase::Http) {
            c.set_read_paused(false);
            c.rx.clear();
            return;
        }
        if c.backlog() > limit / 2 {
            return;
        }
        c.set_read_paused(false);
        let mut rx = c.rx.take();
        if !rx.is_empty() {
            let (table, mail) = (&mut self.table, &mut self.mail);
            inbound::received_buffered(app, table, mail, &self.config, key, &mut rx);
        }
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        c.rx.put(rx);
        self.check_backpressure(key);
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        let idle = c.phase == Phase::Open || (c.phase == Phase::Http && !c.http_waiting());
        if c.eof() && !c.read_paused() && idle {
            // The peer half-closed while we were not reading: now that
            // its last requests are parsed, answer them and close.
            c.rx.clear();
            c.phase = Phase::Flushing;
            c.since = now;
            let at = now + self.periods.keepalive.close;
            self.reschedule(key, at);
        }
        self.table.mark(key);
    }

    /// A cancel's own completion. Only one that found nothing to cancel
    /// needs anything: a dead connection whose receive we still count as
    /// armed would never be released, so its teardown falls back to the
    /// shutdown (`flush_dead`), which ends the receive whatever state it
    /// is in. (Accept cancels carry key 0, gen 0; on a connection they
    /// happened to match this is one harmless shutdown of a dead socket.)
    pub(super) fn on_cancel(&mut self, key: u32, gen: u32, res: i32) {
        if res != -libc::ENOENT {
            return;
        }
        let Some(c) = live(&mut self.table.conns, key, gen) else {
            return;
        };
        if c.phase == Phase::Dead && c.recv_armed() && c.recv_cancelling() && !c.shut() {
            c.set_shut(true);
            c.set_shutting(true);
            let e = opcode::Shutdown::new(Fixed(c.slot), libc::SHUT_RDWR)
                .build()
                .user_data(token::encode(Op::Shutdown, key, gen));
            self.push(e);
        }
    }
}
