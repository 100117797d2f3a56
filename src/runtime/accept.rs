//! Accepting connections: one multishot accept per listening socket (the
//! plain one, the TLS one, or both), into direct descriptors the kernel
//! allocates from the shard's table.

use super::conn::Conn;
use super::peer;
use super::shard::Shard;
use super::timer;
use super::token::{self, Op};
use crate::metrics::inc;
use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Free descriptor slots at or below which accepts go one at a time: a
/// multishot accept takes every queued connection in one go, and each one
/// past the last free slot is reset by the kernel. 64 is more than one
/// loop turn's burst at the accept rates measured here (~15k/s, a turn of
/// a few ms).
const ACCEPT_ONE_BY_ONE: usize = 64;

/// One listening socket of a shard and its accept's state. Its index in
/// `Shard::listeners` is the key of its accept's completions.
pub struct Listening {
    fd: OwnedFd,
    /// Connections accepted here speak TLS first.
    tls: bool,
    /// The admin listener (`Config::admin`).
    admin: bool,
    /// Bytes to ask `SO_PEERNAME` for (`peer::sockaddr_len`).
    peer_len: u32,
    pub(super) armed: bool,
    /// The armed accept is multishot (else one at a time: the table is
    /// nearly full).
    multi: bool,
    /// A cancel of the multishot accept is in flight.
    cancelling: bool,
}

impl Listening {
    pub fn new(fd: OwnedFd, tls: bool, admin: bool, addr: SocketAddr) -> Self {
        Self {
            fd,
            tls,
            admin,
            peer_len: peer::sockaddr_len(addr),
            armed: false,
            multi: false,
            cancelling: false,
        }
    }
}

impl<M> Shard<M> {
    /// Descriptor slots free for accepted connections.
    pub(super) fn slots_free(&self) -> usize {
        (self.table_size as usize).saturating_sub(self.table.conns.len())
    }

    /// Some listener's accept is armed.
    pub(super) fn accepting(&self) -> bool {
        self.listeners.iter().any(|l| l.armed)
    }

    /// Arm every listener's accept: multishot while the table has room to
    /// spare, one at a time near the end of it, none when it is full. An
    /// accept that finds no free slot has already taken the connection
    /// off the listen queue, and the kernel resets it: a multishot accept
    /// armed on a full table reset every client that arrived (a
    /// `/healthz` among them). Connections wait in the listen backlog
    /// instead until a slot frees.
    pub(super) fn arm_accept(&mut self) {
        // Accepting goes on while draining: health checks must get their
        // 503, and upgrades are refused with it.
        if self.accept_paused {
            return;
        }
        let free = self.slots_free();
        if free == 0 {
            self.accept_paused = true;
            return;
        }
        // Near the end of the table, no more accepts armed than free slots:
        // with two listeners and one slot, the second accept to complete
        // would find none and its client be reset. The listener served
        // first rotates, so neither port waits behind the other.
        let one_by_one = free <= ACCEPT_ONE_BY_ONE;
        let mut armed = self.listeners.iter().filter(|l| l.armed).count();
        let n = self.listeners.len();
        self.accept_turn = self.accept_turn.wrapping_add(1);
        for j in 0..n {
            let i = self.accept_turn.wrapping_add(j) % n;
            if one_by_one && armed >= free {
                break;
            }
            let l = &mut self.listeners[i];
            if l.armed {
                continue;
            }
            armed += 1;
            let fd = Fd(l.fd.as_raw_fd());
            l.multi = free > ACCEPT_ONE_BY_ONE;
            let e = if l.multi {
                opcode::AcceptMulti::new(fd)
                    .allocate_file_index(true)
                    .build()
            } else {
                opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                    .file_index(Some(io_uring::types::DestinationSlot::auto_target()))
                    .build()
            };
            l.armed = true;
            l.cancelling = false;
            self.push(e.user_data(token::encode(Op::Accept, i as u32, 0)));
        }
    }

    /// A multishot accept near the end of the table is cancelled; its last
    /// completion re-arms one at a time (`on_accept`).
    pub(super) fn narrow_accept(&mut self) {
        if self.slots_free() > ACCEPT_ONE_BY_ONE {
            return;
        }
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.armed && l.multi && !l.cancelling {
                l.cancelling = true;
                let e = opcode::AsyncCancel::new(token::encode(Op::Accept, i as u32, 0))
                    .build()
                    .user_data(token::encode(Op::Cancel, 0, 0));
                self.push(e);
            }
        }
    }

    /// At exit, after the last turn: every armed accept cancelled and its
    /// last completion awaited (100 ms at most), then the listening
    /// sockets closed. An accept in flight holds its socket until the
    /// ring's teardown, which the kernel finishes after the process is
    /// gone: a successor binding the port at once found it still in use,
    /// for up to 11 ms, after 21 and 28 of 30 exits in two measurements
    /// (tests/upgrade_handover.rs failed once on it).
    pub(super) fn stop_accepting(&mut self) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].armed {
                let e = opcode::AsyncCancel::new(token::encode(Op::Accept, i as u32, 0))
                    .build()
                    .user_data(token::encode(Op::Cancel, 0, 0));
                self.push(e);
            }
        }
        let end = Instant::now() + Duration::from_millis(100);
        while self.listeners.iter().any(|l| l.armed) && Instant::now() < end {
            let ts = Timespec::from(Duration::from_millis(10));
            let args = SubmitArgs::new().timespec(&ts);
            // ETIME, EINTR: look again until the bound.
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let done: Vec<(u64, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.flags()))
                .collect();
            for (ud, flags) in done {
                // A connection accepted meanwhile is closed with the ring.
                if let Some((Op::Accept, i, _)) = token::decode(ud) {
                    if let Some(l) = self.listeners.get_mut(i as usize) {
                        l.armed &= cqueue::more(flags);
                    }
                }
            }
        }
        self.listeners.clear();
    }

    /// A completion of listener `which`'s accept: a new connection in
    /// descriptor slot `res`, or why not.
    pub(super) fn on_accept(&mut self, which: u32, res: i32, flags: u32) {
        let Some(l) = self.listeners.get_mut(which as usize) else {
            return;
        };
        if !cqueue::more(flags) {
            l.armed = false;
        }
        let (tls, admin, peer_len) = (l.tls, l.admin, l.peer_len);
        if res < 0 {
            if res == -libc::ENFILE || res == -libc::EMFILE {
                // The direct descriptor table is full: stop accepting
                // (connections wait in the backlog) until a slot frees.
                inc(&self.table.my_stats().accept_table_full_total, 1);
                self.accept_paused = true;
            }
            self.arm_accept();
            return;
        }
        let now = self.table.now;
        let gen = self.table.next_gen();
        let mut conn = Conn::new(res as u32, gen, now);
        conn.wheel_at = now + self.periods.handshake;
        conn.set_tls(tls);
        conn.set_admin(admin);
        // The admin listener is the operator's direct way in (probes and
        // scrapers that do not go through the proxy): no PROXY header.
        conn.set_awaiting_proxy(self.config.proxy.protocol && !admin);
        let key = self.table.conns.insert(conn) as u32;
        if tls {
            self.tls_accepted(key);
        }
        self.wheel
            .schedule(now + self.periods.handshake, timer::Entry { key, gen });
        let s = self.table.my_stats();
        inc(&s.connections_accepted_total, 1);
        inc(&s.connections_open, 1);
        inc(&s.direct_descriptors, 1);
        // Before the receive: its completion then comes first.
        self.ask_peer(key, gen, res as u32, peer_len);
        self.arm_recv(key);
        self.handshake_started(key, gen, now);
        self.arm_accept();
        self.narrow_accept();
    }
}
