//! The runtime's client mode: outbound WebSocket connections ([`Dial`]),
//! used by the load generator. Each goes into the ring's direct descriptor
//! table like an accepted one, so a client holds more connections than its
//! fd limit too.

use super::conn::Phase;
use super::shard::Shard;
use super::table::live;
use super::timer;
use super::token::{self, Op};
use crate::ws::client::ClientHandshake;
use bytes::Bytes;
use io_uring::opcode;
use io_uring::types::Fixed;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

/// An outbound WebSocket connection to open ([`Io::connect`]): the
/// runtime's client mode, used by the load generator (and later by
/// clustering). It goes into the ring's direct descriptor table like an
/// accepted one, so a client holds more connections than its fd limit too.
#[derive(Debug, Clone)]
pub struct Dial {
    pub to: SocketAddr,
    /// Source address to bind (port chosen by the kernel at connect time):
    /// spreading connections over 127.0.0.x multiplies the ~28k ephemeral
    /// ports one source address gets.
    pub from: Option<std::net::IpAddr>,
    /// Request target, e.g. `/ws` or `/ws?token=...`.
    pub path: String,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Largest message accepted from the server.
    pub max_message: usize,
}

/// An outbound connection's state until it opens. Boxed: the kernel may
/// read `addr` until the connect completes.
pub struct Outbound {
    pub dial: Dial,
    pub addr: socket2::SockAddr,
    pub handshake: Option<ClientHandshake>,
    pub error: Option<String>,
}

impl<M> Shard<M> {
    /// Give each outbound connection asked for since the last flush its
    /// socket, its slot and its connect.
    pub(super) fn start_dials(&mut self) {
        while let Some(key) = self.table.dials.pop() {
            if let Err(why) = self.start_dial(key) {
                if let Some(o) = self.table.outbound.get_mut(&key) {
                    o.error.get_or_insert(why);
                }
                self.kill(key);
            }
        }
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
        if self.listener.is_some() {
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
        let Some(c) = self.table.conns.get_mut(key as usize) else {
            return Err("internal: no connection".into());
        };
        c.slot = slot;
        c.connecting = true;
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
        c.connecting = false;
        let out = self.table.outbound.get_mut(&key);
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
        self.table.mark(key);
    }
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
