//! The flush step of a shard's turn: connections with something to do,
//! first come first served, each get at most one send, one re-armed
//! receive, or one step of their teardown, until the turn's budget of
//! sends and teardown steps is spent (the rest wait for the next turn).

use super::app::{App, ConnId};
use super::conn::{Phase, SendOp, NO_SLOT};
use super::shard::Shard;
use super::token::{self, Op};
use super::write_delay::Queue;
use crate::metrics::inc;
use io_uring::opcode;
use io_uring::types::Fixed;
use std::collections::VecDeque;

/// Frames per sendmsg (IOV_MAX is 1024).
const MAX_IOV: usize = 512;

/// Sends and teardown steps a turn submits before it takes in new input.
/// A round of sends to every subscriber takes R (1,000 sends of ~4-7 us
/// here); submitted in one go, a message that arrives during it waits for
/// the round to end and then for its subscriber's place in the next (up to
/// 2R, p99 ~1.9R). In slices, it is queued at once, and each subscriber
/// picks it up at its next place in line (up to R). A slice costs an
/// io_uring_enter or two, ~1-2 us, against 64 sends.
///
/// A teardown step (a receive's cancel, a shutdown, a close) counts as a
/// send: a close is the kernel's tcp_close (its FIN, and on loopback the
/// peer's side of it too), 23 % of the broker's CPU in a reconnect storm's
/// first seconds (session 17's perf). Uncounted, a shard's share of the
/// connections a storm drops (10,000 of 20,000 on 2 shards) was torn down
/// in one flush, one long enter that every publish arriving meanwhile
/// waited for: the held subscribers' p99 during the storm was 80-108 ms
/// on this VM, 15-20 ms counted; at the size (100,000 dropped, 8
/// shards) 446-575 ms against 82-88 ms (docs/benchmarks.md, "Closes in
/// the flush's budget").
const STEPS_PER_TURN: usize = 64;

/// Picks in a row from the first line (`ConnTable::first`) before one
/// from the other, while both wait (see `flush`): deliveries get three
/// quarters of a busy turn.
const FIRST_RUN: usize = 3;

/// The next connection for the flush: from the first line, except that
/// after FIRST_RUN of those in a row (`run` counts them) the other line
/// gets one if it has any.
fn next_in_line(
    first: &mut VecDeque<u32>,
    dirty: &mut VecDeque<u32>,
    run: &mut usize,
) -> Option<u32> {
    let picked = if *run < FIRST_RUN || dirty.is_empty() {
        first.pop_front()
    } else {
        None
    };
    *run = if picked.is_some() { *run + 1 } else { 0 };
    picked.or_else(|| dirty.pop_front())
}

impl<M> Shard<M> {
    /// For each connection in line (up to STEPS_PER_TURN sends and
    /// teardown steps), tell the application about closes, then submit at
    /// most one of each: send, receive re-arm, shutdown, close. A key left
    /// in line whose connection closed meanwhile, even one whose slot a new
    /// connection took, only costs that connection an idle look.
    pub(super) fn flush<A: App<Mail = M>>(&mut self, app: &mut A) {
        // The turn's input and mail took their time: the submissions below
        // read the clock afresh (once, and only if one carries a fan-out).
        self.table.send_ns = None;
        let draining = self.drain_deadline.is_some();
        for key in self.write_delay.begin_flush(self.elapsed, draining) {
            if let Some(c) = self.table.conns.get_mut(key as usize) {
                c.set_delayed(false);
            }
            self.table.mark(key);
        }
        // At most STEPS_PER_TURN steps, then the turn ends and new input is
        // taken in; the rest wait their turn, first come, first served
        // within each line. Handling one connection can dirty others (an
        // app callback that sends): they join the end of a line. The
        // first line (fan-out frames, receive re-arms) goes first,
        // FIRST_RUN picks to one of the other line while both wait: a
        // storm's replies (upgrades, snapshots, closes) cannot hold
        // deliveries back, and a steady fan-out cannot starve them
        // either. A write delay's release must go out in one pass (the
        // next turn would hold them again), and latency is not its point
        // anyway.
        let budget = if self.write_delay.enabled() {
            usize::MAX
        } else {
            STEPS_PER_TURN
        };
        let mut steps = 0;
        let mut run = 0;
        while steps < budget {
            let t = &mut self.table;
            let Some(key) = next_in_line(&mut t.first, &mut t.dirty, &mut run) else {
                break;
            };
            if let Some(c) = self.table.conns.get_mut(key as usize) {
                c.set_dirty(false);
            }
            steps += usize::from(self.flush_one(app, key));
        }
        if steps >= budget && !self.table.clean() {
            inc(&self.table.my_stats().flush_budget_spent_total, 1);
        }
        self.write_delay.end_flush();
        // Connects last, a budgeted batch of them (`DIALS_PER_TURN`): a
        // connect's port search runs inside the enter that submits it, so
        // the sends queued above (pongs among them) go out ahead of it.
        // Dials asked for during the flush (an app callback reconnecting)
        // are in this batch or the next turn's.
        self.start_dials();
    }

    /// One connection's step. Returns whether it submitted a send or a
    /// teardown step (what the turn's budget counts).
    fn flush_one<A: App<Mail = M>>(&mut self, app: &mut A, key: u32) -> bool {
        self.settle(app, key);
        self.resume_read(app, key);
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return false;
        };
        match c.phase {
            Phase::Connecting | Phase::Releasing => false,
            Phase::Handshake | Phase::Http | Phase::Open | Phase::Flushing => self.flush_live(key),
            Phase::Lingering => {
                if c.eof() {
                    // The peer's EOF came: nothing left to wait for.
                    c.phase = Phase::Dead;
                    self.table.mark(key);
                } else if !c.recv_armed() {
                    // Receive stopped (ENOBUFS, or no MORE) with input
                    // still coming: keep reading it until EOF.
                    self.arm_recv(key);
                }
                false
            }
            Phase::Dead => self.flush_dead(key),
        }
    }

    /// Apply what changed since the connection's last step: a close the
    /// application asked for, a close handshake the peer completed, and
    /// telling the application that the connection is no longer open (or,
    /// outbound, never opened).
    fn settle<A: App<Mail = M>>(&mut self, app: &mut A, key: u32) {
        let now = self.table.now;
        let close_t = self.periods.keepalive.close;
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        let id = ConnId { key, gen: c.gen };
        if let Some((status, reason)) = c.take_close_req() {
            if c.phase == Phase::Open {
                super::log::closing(self.table.me, id, c.peer.addr(), status, reason);
                if let Some(f) = c.ws.close(status, reason) {
                    c.tx.push_close_now(f);
                }
                c.since = now;
                c.phase = Phase::Flushing;
            }
        }
        if c.phase == Phase::Open && c.ws.state() == crate::ws::State::Closed {
            c.phase = Phase::Flushing;
            c.since = now;
        }
        if c.opened() && c.phase != Phase::Open {
            c.set_opened(false);
            app.closed(&mut self.io(), id);
        } else if c.dialing() && !matches!(c.phase, Phase::Connecting | Phase::Handshake) {
            c.set_dialing(false);
            let why = self
                .table
                .outbound
                .remove(&key)
                .and_then(|o| o.error)
                .unwrap_or_else(|| "connection closed during the handshake".into());
            app.connect_failed(&mut self.io(), id, &why);
        }
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return;
        };
        let close_sent = c.phase == Phase::Open && c.ws.state() == crate::ws::State::CloseSent;
        if (c.phase == Phase::Flushing || close_sent) && c.wheel_at > c.since + close_t {
            // Bound the flush (or the wait for the peer's close after
            // `close_after_queued`) by the close timeout, not by whatever
            // the connection's timer was set to before (the idle ping's
            // 30 s).
            let at = c.since + close_t;
            self.reschedule(key, at);
        }
    }

    /// A connection whose socket works: send what is queued (or hold it
    /// for the write delay), half-close once a closing one is flushed, and
    /// keep its receive armed. A connection that sends must still get its
    /// receive re-armed (it stops on ENOBUFS, or without MORE). Returns
    /// whether it submitted a send or a shutdown.
    fn flush_live(&mut self, key: u32) -> bool {
        let now = self.table.now;
        let close_t = self.periods.keepalive.close;
        let draining = self.drain_deadline.is_some();
        let Some(c) = self.table.conns.get(key as usize) else {
            return false;
        };
        let queue = Queue {
            open: c.phase == Phase::Open,
            has_control: c.tx.has_control(),
            bytes: c.tx.bytes(),
        };
        let idle = c.sending.is_none();
        let closing = c.phase == Phase::Flushing && idle && c.tx.is_empty();
        // TLS: handshake flights, tickets and alerts wait outside the queue
        // and are never held; frames wait in it until the handshake is
        // done; a closing connection sends close_notify before its
        // half-close.
        let tls = c.tls();
        let tls_out = tls && self.table.tls.has_out(key);
        let waits = tls && self.table.tls.handshaking(key);
        let has_tx = !c.tx.is_empty() && !waits;
        let notify = tls && closing && !tls_out && self.tls_close_notify(key);
        let mut stepped = false;
        if idle && has_tx && !tls_out && self.write_delay.holds(queue, draining) {
            if let Some(c) = self.table.conns.get_mut(key as usize) {
                let mut delayed = c.delayed();
                self.write_delay.hold(key, &mut delayed, self.elapsed);
                c.set_delayed(delayed);
            }
        } else if idle && (has_tx || tls_out || notify) {
            let op = self.pool.pop().unwrap_or_else(SendOp::new);
            stepped = self.submit_send(key, op);
        } else if closing {
            if let Some(c) = self.table.conns.get_mut(key as usize) {
                if c.ws.handshake_closed() && !c.tls() {
                    // The close handshake is complete: the peer may send
                    // nothing more, so a close cannot become a reset. No
                    // half-close: IORING_OP_SHUTDOWN always goes to an
                    // io-wq worker, and in a storm of 100,000 clean closes
                    // those workers took 42-63 ms of every 200 ms of the
                    // shards' core (issue #11, session 12). RFC 6455
                    // §7.1.1: the server closes first (TIME_WAIT stays on
                    // its side), a client waits for it (until the close
                    // timeout). (TLS keeps the half-close: the peer's
                    // close_notify may still come and must be read.)
                    if c.outbound() {
                        c.phase = Phase::Lingering;
                        c.since = now;
                        self.reschedule(key, now + close_t);
                    } else {
                        c.phase = Phase::Dead;
                        self.table.mark(key);
                    }
                    return stepped;
                }
                // Everything is out: half-close, then wait for the peer's
                // EOF so unread input cannot turn our close into a reset
                // that destroys what we just sent.
                c.phase = Phase::Lingering;
                c.since = now;
                c.set_shutting(true);
                let e = opcode::Shutdown::new(Fixed(c.slot), libc::SHUT_WR)
                    .build()
                    .user_data(token::encode(Op::Shutdown, key, c.gen));
                self.push(e);
                self.reschedule(key, now + close_t);
                stepped = true;
            }
        }
        if self
            .table
            .conns
            .get(key as usize)
            .is_some_and(|c| !c.recv_armed() && !c.eof() && !c.read_paused())
        {
            self.arm_recv(key);
        }
        stepped
    }

    /// A connection whose transport is gone: end what is in flight, then
    /// close the slot (or, with no slot, forget it at once). Returns
    /// whether it submitted a step (cancel, shutdown or close).
    fn flush_dead(&mut self, key: u32) -> bool {
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return false;
        };
        if c.slot == NO_SLOT {
            self.release(key);
            false
        } else if c.recv_armed()
            && c.sending.is_none()
            && !c.shut()
            && !c.shutting()
            && !c.connecting()
            && c.ws.handshake_closed()
            && !c.tls()
        {
            // A completed close handshake with only the receive left:
            // cancel it. The cancel is done inline, where a shutdown would
            // go to an io-wq worker, and the peer may send nothing more,
            // so closing the slot then sends a FIN. (Any other dead
            // connection keeps the shutdown: input it still sends would
            // turn a close into a reset, and a reset throws away what the
            // peer has not read yet: a slow consumer's last messages.)
            // Its end comes as ECANCELED (`on_recv`); a cancel that finds
            // nothing falls back to the shutdown (`on_cancel`).
            if c.recv_cancelling() {
                return false;
            }
            c.set_recv_cancelling(true);
            let e = opcode::AsyncCancel::new(token::encode(Op::Recv, key, c.gen))
                .build()
                .user_data(token::encode(Op::Cancel, key, c.gen));
            self.push(e);
            true
        } else if c.recv_armed() || c.sending.is_some() || c.shutting() || c.connecting() {
            if c.shut() || c.shutting() {
                return false;
            }
            c.set_shut(true);
            c.set_shutting(true);
            let e = opcode::Shutdown::new(Fixed(c.slot), libc::SHUT_RDWR)
                .build()
                .user_data(token::encode(Op::Shutdown, key, c.gen));
            self.push(e);
            true
        } else {
            c.phase = Phase::Releasing;
            let e = opcode::Close::new(Fixed(c.slot))
                .build()
                .user_data(token::encode(Op::Close, key, c.gen));
            self.push(e);
            true
        }
    }

    /// Submit `op` (holding the unsent rest of a short write, or empty)
    /// topped up from the queue: one sendmsg for everything queued (for
    /// TLS, one buffer of it sealed). False if there was nothing to send
    /// (`op` goes back to the pool).
    pub(super) fn submit_send(&mut self, key: u32, mut op: Box<SendOp>) -> bool {
        let Some(c) = self.table.conns.get(key as usize) else {
            self.pool_return(op);
            return false;
        };
        let tls = c.tls();
        // The connection's backlog as this send takes from it (what the
        // slow-consumer policy and --max-backlog-bytes judge).
        let backlog = c.tx.bytes() + op.cost();
        // TLS: the queue is sealed into one buffer; plain: its frames go
        // as they are, up to MAX_IOV of them.
        if tls && !self.tls_seal(key, &mut op) {
            self.pool_return(op);
            return false;
        }
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            self.pool_return(op);
            return false;
        };
        if !tls {
            let stats = &self.table.stats[self.table.me];
            while op.bufs.len() < MAX_IOV {
                match c.tx.pop() {
                    Some(f) => {
                        if let Some(at) = f.arrived_ns() {
                            let now = *self.table.send_ns.get_or_insert_with(send_clock);
                            stats
                                .publish_to_send_seconds
                                .observe_ns(now.saturating_sub(at));
                        }
                        op.push(f)
                    }
                    None => break,
                }
            }
        }
        if op.is_empty() {
            self.pool_return(op);
            return false;
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
        let stats = self.table.my_stats();
        inc(&stats.sends_total, 1);
        stats.connection_queued_bytes.observe(backlog as u64);
        self.push(e);
        true
    }
}

/// The clock a turn's send submissions are timed by (read once a flush).
pub(super) fn send_clock() -> u64 {
    crate::metrics::clock::nanos(std::time::Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(first: &[u32], dirty: &[u32]) -> Vec<u32> {
        let (mut f, mut d) = (
            VecDeque::from(first.to_vec()),
            VecDeque::from(dirty.to_vec()),
        );
        let mut run = 0;
        std::iter::from_fn(|| next_in_line(&mut f, &mut d, &mut run)).collect()
    }

    #[test]
    fn fan_out_goes_first_three_to_one_and_nothing_is_skipped() {
        // A storm's replies (1..) queued before a delivery (100..): the
        // deliveries go first, three for every one of the others.
        assert_eq!(
            drain(&[100, 101, 102, 103, 104], &[1, 2, 3]),
            [100, 101, 102, 1, 103, 104, 2, 3]
        );
        // Either line alone: in its order.
        assert_eq!(drain(&[], &[1, 2, 3]), [1, 2, 3]);
        assert_eq!(drain(&[7, 8, 9, 10, 11], &[]), [7, 8, 9, 10, 11]);
        assert_eq!(drain(&[], &[]), Vec::<u32>::new());
    }
}
