//! The runtime's client mode: outbound WebSocket connections ([`Dial`]),
//! used by the load generator. Each goes into the ring's direct descriptor
//! table like an accepted one, so a client holds more connections than its
//! fd limit too.

use super::conn::Phase;
use super::shard::Shard;
use super::table::live;
use super::timer;
use super::token::{self, Op};
use crate::metrics::inc;
use crate::ws::client::ClientHandshake;
use bytes::Bytes;
use io_uring::opcode;
use io_uring::types::Fixed;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// An outbound WebSocket connection to open ([`Io::connect`]): the
/// runtime's client mode, used by the load generator (and later by
/// clustering). It goes into the ring's direct descriptor table like an
/// accepted one, so a client holds more connections than its fd limit too.
#[derive(Debug, Clone)]
pub struct Dial {
    pub to: SocketAddr,
    /// Source address to bind. Port 0: the kernel picks the port at
    /// connect time (IP_BIND_ADDRESS_NO_PORT), from the ephemeral range,
    /// even ports first; spreading connections over 127.0.0.x multiplies
    /// the ports one source address gets. Another port: bound exactly
    /// (SO_REUSEADDR), which costs the same ~30 us however many ports are
    /// in use, where the kernel's choice costs ~0.4-2 ms once the even
    /// half of the range is taken (docs/benchmarks.md, "Where 250,000
    /// connections stalled").
    pub from: Option<SocketAddr>,
    /// Request target, e.g. `/ws` or `/ws?token=...`.
    pub path: String,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Extra request headers, e.g. `("Authorization", "Bearer <jwt>")`
    /// (see [`ClientHandshake::with_headers`]).
    pub headers: Vec<(String, String)>,
    /// Largest message accepted from the server.
    pub max_message: usize,
    /// Speak TLS (`wss://`) with this client configuration, checking the
    /// server's certificate against this name. `None`: plain `ws://`.
    pub tls: Option<TlsDial>,
}

/// The TLS side of a [`Dial`].
#[derive(Debug, Clone)]
pub struct TlsDial {
    pub config: Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
}

/// An outbound connection's state until it opens. Boxed: the kernel may
/// read `addr` until the connect completes.
pub struct Outbound {
    pub dial: Dial,
    pub addr: socket2::SockAddr,
    pub handshake: Option<ClientHandshake>,
    pub error: Option<String>,
}

/// Most connects a shard submits per loop turn.
pub(super) const DIALS_PER_TURN: usize = 32;
/// Time a turn may spend submitting connects. A connect runs inline in
/// the `io_uring_enter` that submits it (no io-wq worker took one in a
/// 27,000-connection run), the kernel's port search included: ~30 us on
/// loopback while a free even port is left, ~0.4-2 ms once the even half
/// of the range is taken. 256 of the slow kind in one enter held a shard
/// for 0.1-0.5 s; and a fixed 32 a turn still let 12,711 of 27,000
/// connections miss a 1 s pong deadline, because the turn's 64 sends
/// (pongs among them) came once per ~64 ms of connects. Measuring what
/// connects cost and submitting ~1 ms of them keeps a turn short either
/// way: 32 fast ones, or one slow one.
const DIAL_TIME_PER_TURN_NS: u64 = 1_000_000;
/// A loopback connect's cost before any is measured.
pub(super) const DIAL_COST_START_NS: u64 = 30_000;

impl<M> Shard<M> {
    /// Give outbound connections asked for since the last flush their
    /// socket, their slot and their connect, oldest first: as many as
    /// ~1 ms of connects at their recent cost, 1 to [`DIALS_PER_TURN`].
    /// The rest wait for the next turn, which comes at once (the loop
    /// does not sleep while dials are queued).
    pub(super) fn start_dials(&mut self) {
        if self.table.dials.is_empty() {
            return;
        }
        let n = ((DIAL_TIME_PER_TURN_NS / self.dial_cost_ns.max(1)) as usize)
            .clamp(1, DIALS_PER_TURN)
            .min(self.table.dials.len());
        // What is queued (this turn's sends) goes first and untimed, so
        // that the time below is the connects' own.
        let _ = self.ring.submit();
        let t = std::time::Instant::now();
        let batch: Vec<u32> = self.table.dials.drain(..n).collect();
        for key in batch {
            if let Err(why) = self.start_dial(key) {
                if let Some(o) = self.table.outbound.get_mut(&key) {
                    o.error.get_or_insert(why);
                }
                self.kill(key);
            }
        }
        // The connects run now, in this enter (errors such as EBUSY leave
        // them queued for the turn's own enter).
        let _ = self.ring.submit();
        let each = t.elapsed().as_nanos() as u64 / n as u64;
        // Smoothed over ~4 turns: one slow search does not stop dialing,
        // a run of them does.
        self.dial_cost_ns = (self.dial_cost_ns * 3 + each) / 4;
    }

    fn start_dial(&mut self, key: u32) -> Result<(), String> {
        let now = self.table.now;
        let Some(out) = self.table.outbound.get(&key) else {
            return Err("internal: no dial".into());
        };
        // Deadline first: whatever fails below still ends in a release.
        let at = now + self.periods.handshake;
        if let Some(c) = self.table.conns.get_mut(key as usize) {
            c.wheel_at = at;
            c.since = now;
            self.wheel.schedule(at, timer::Entry { key, gen: c.gen });
        }
        if !self.listeners.is_empty() {
            // Accepts take kernel-allocated slots from the same table; a
            // shard that does both would need IORING_REGISTER_FILE_ALLOC_RANGE.
            return Err("outbound connections need a runtime without a listener".into());
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None if self.next_slot < self.table_size => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return Err("direct descriptor table full".into()),
        };
        let fd = match dial_socket(&out.dial) {
            Ok(fd) => fd,
            Err(e) => {
                self.free_slots.push(slot);
                return Err(e);
            }
        };
        if let Err(e) = self
            .ring
            .submitter()
            .register_files_update(slot, &[fd.as_raw_fd()])
        {
            self.free_slots.push(slot);
            return Err(format!("cannot register the socket: {}", errno_text(&e)));
        }
        // The table holds its own reference: the fd itself goes now, so
        // connections never count against RLIMIT_NOFILE.
        drop(fd);
        let (addr, len) = (out.addr.as_ptr(), out.addr.len());
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return Err("internal: no connection".into());
        };
        c.slot = slot;
        c.set_connecting(true);
        inc(&self.table.stats[self.table.me].direct_descriptors, 1);
        // SAFETY (of the pointer): `addr` lives in the boxed Outbound, which
        // stays in `table.outbound` until the connection opens or is
        // released, both after this connect completes.
        let e = opcode::Connect::new(Fixed(slot), addr, len)
            .build()
            .user_data(token::encode(Op::Connect, key, c.gen));
        self.push(e);
        Ok(())
    }

    pub(super) fn on_connect(&mut self, key: u32, gen: u32, res: i32) {
        let now = self.table.now;
        let Some(c) = live(&mut self.table.conns, key, gen) else {
            return;
        };
        c.set_connecting(false);
        let out = self.table.outbound.get_mut(&key);
        if res < 0 || c.phase != Phase::Connecting {
            if let Some(o) = out {
                let e = std::io::Error::from_raw_os_error(-res);
                o.error
                    .get_or_insert_with(|| format!("connect: {}", errno_text(&e)));
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
        let (handshake, request) =
            ClientHandshake::with_headers(&host, &o.dial.path, &protocols, &o.dial.headers);
        o.handshake = Some(handshake);
        let tls = o.dial.tls.clone();
        c.phase = Phase::Handshake;
        c.since = now;
        // With TLS the request waits in the queue until the TLS handshake
        // is done (`tls_seal`); the ClientHello goes first.
        c.tx.push(Bytes::from(request));
        if let Some(tls) = tls {
            c.set_tls(true);
            if let Err(why) = self.tls_dialed(key, tls.config, tls.name) {
                if let Some(o) = self.table.outbound.get_mut(&key) {
                    o.error.get_or_insert(format!("tls: {why}"));
                }
                self.kill(key);
                return;
            }
        }
        self.table.mark(key);
    }
}

/// An error as its errno's name and text, e.g. `ECONNREFUSED (Connection
/// refused)`: the same text for every connection that failed the same way,
/// whatever its address, so that failures can be counted by cause.
pub fn errno_text(e: &std::io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    let name = match n {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ECANCELED => "ECANCELED",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        _ => return format!("errno {n} ({})", strip_os(e)),
    };
    format!("{name} ({})", strip_os(e))
}

/// `Connection refused (os error 111)` without its ` (os error 111)`.
fn strip_os(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A socket for an outbound connection, bound to its source address; the
/// error names the step and the errno.
fn dial_socket(dial: &Dial) -> Result<OwnedFd, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(dial.to),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| format!("socket: {}", errno_text(&e)))?;
    s.set_nodelay(true)
        .map_err(|e| format!("setsockopt: {}", errno_text(&e)))?;
    let Some(from) = dial.from else {
        return Ok(s.into());
    };
    if from.port() != 0 {
        // An exact port: SO_REUSEADDR lets it be bound again while an
        // earlier connection on it lingers in TIME_WAIT (the 4-tuple, not
        // the port, must be unique).
        s.set_reuse_address(true)
            .map_err(|e| format!("setsockopt: {}", errno_text(&e)))?;
        s.bind(&from.into())
            .map_err(|e| format!("bind: {}", errno_text(&e)))?;
    } else {
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
        s.bind(&from.into())
            .map_err(|e| format!("bind: {}", errno_text(&e)))?;
    }
    Ok(s.into())
}
