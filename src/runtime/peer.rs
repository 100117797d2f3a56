//! Who is on the other end: each accepted connection's peer address, and
//! the per-address bounds (`--max-connections-per-ip`,
//! `--max-handshakes-per-ip`).
//!
//! A multishot accept into a direct descriptor gives no address (the
//! kernel would write every accept's address into the one buffer the
//! request names, overwriting it before we read it), and a direct
//! descriptor has no fd for `getpeername`. So each accepted connection
//! gets one more request on the ring: `getsockopt(SOL_SOCKET,
//! SO_PEERNAME)` as an io_uring socket command (Linux 6.7+) on the direct
//! descriptor. It runs inline in the next `io_uring_enter` (no syscall of
//! its own, no io-wq), and its completion comes before the first receive's
//! (submitted after it), so the address is known when the request head is
//! read.
//!
//! The counts are shared by every shard: `SO_REUSEPORT` hashes each
//! connection of one address to any shard, so a per-shard count would
//! allow `shards ×` the limit. They sit behind 64 locks (one per stripe of
//! addresses), taken once per accept and once per close of a counted
//! connection, never per message; with both limits off (the default) the
//! table is not touched at all.

use super::shard::Shard;
use super::table::ConnTable;
use super::token::{self, Op};
use crate::metrics::{dec, inc};
use crate::proxy::ProxyConfig;
use crate::rate::{Bucket, Rate};
use crate::ws::http;
use bytes::Bytes;
use io_uring::opcode;
use io_uring::types::Fixed;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A connection's peer address, kept compactly in its `Conn` (20 bytes,
/// where a `SocketAddr` takes 32): it is multiplied by every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    /// IPv4 as an IPv4-mapped IPv6 address.
    ip: [u8; 16],
    port: u16,
    /// The address is known (the `SO_PEERNAME` request completed).
    known: bool,
    /// Counted in [`PeerLimits`]: release it when the connection goes.
    counted: bool,
}

impl Peer {
    pub fn addr(&self) -> Option<SocketAddr> {
        if !self.known {
            return None;
        }
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        Some(SocketAddr::new(ip, self.port))
    }

    /// A client address named by a proxy (a PROXY header's source, a
    /// trusted proxy's `X-Forwarded-For`), not counted yet.
    pub fn from_addr(addr: SocketAddr) -> Self {
        let ip = match addr.ip().to_canonical() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Self {
            ip: ip.octets(),
            port: addr.port(),
            known: true,
            counted: false,
        }
    }

    /// Counted in the per-address limits (released when the connection
    /// goes): its address must not change any more.
    pub fn counted(&self) -> bool {
        self.counted
    }

    /// What the per-address bounds count by: the IPv4 address, or an
    /// IPv6 address's /64 (one subscriber line gets a whole /64, so
    /// counting single IPv6 addresses would bound nothing).
    fn key(&self) -> u128 {
        let ip = u128::from_be_bytes(self.ip);
        if Ipv6Addr::from(self.ip).to_ipv4_mapped().is_some() {
            ip
        } else {
            ip & !((1u128 << 64) - 1)
        }
    }

    /// Decode what `SO_PEERNAME` wrote (a `sockaddr_in` or `sockaddr_in6`).
    pub fn from_sockaddr(raw: &RawAddr, len: usize) -> Option<Self> {
        let b = &raw.0;
        let family = u16::from_ne_bytes([b[0], b[1]]) as i32;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let ip = if family == libc::AF_INET && len >= 8 {
            Ipv4Addr::new(b[4], b[5], b[6], b[7])
                .to_ipv6_mapped()
                .octets()
        } else if family == libc::AF_INET6 && len >= 24 {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            ip
        } else {
            return None;
        };
        Some(Self {
            ip,
            port,
            known: true,
            counted: false,
        })
    }
}

/// Where the kernel writes a peer address: room for a `sockaddr_in6`.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(8))]
pub struct RawAddr(pub [u8; 28]);

/// Bytes `SO_PEERNAME` must be asked for: the kernel refuses (EINVAL) a
/// buffer longer than the address, so exactly a `sockaddr_in` on an IPv4
/// listener and a `sockaddr_in6` on an IPv6 one (IPv4 clients of which
/// come as IPv4-mapped addresses).
pub fn sockaddr_len(listen: SocketAddr) -> u32 {
    match listen {
        SocketAddr::V4(_) => std::mem::size_of::<libc::sockaddr_in>() as u32,
        SocketAddr::V6(_) => std::mem::size_of::<libc::sockaddr_in6>() as u32,
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It has `--max-connections-per-ip` connections open.
    Connections,
    /// It opened more than `--max-handshakes-per-ip` connections a second.
    Rate,
}

/// One address's open connections and new-connection budget (a token
/// per new connection, refilled at the rate, at most one second's worth).
#[derive(Debug, Default)]
struct Entry {
    conns: u32,
    bucket: Bucket,
}

const STRIPES: usize = 64;

/// The per-address bounds, shared by all shards. With both limits 0 it
/// counts nothing.
#[derive(Debug)]
pub struct PeerLimits {
    max_conns: u32,
    rate: u32,
    start: Instant,
    stripes: Vec<Mutex<FxHashMap<u128, Entry>>>,
}

impl PeerLimits {
    pub fn new(max_conns: u32, rate: u32) -> Arc<Self> {
        Arc::new(Self {
            max_conns,
            rate,
            start: Instant::now(),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.max_conns > 0 || self.rate > 0
    }

    fn stripe(&self, key: u128) -> &Mutex<FxHashMap<u128, Entry>> {
        // The low bits of an IPv6 /64 key are zero: fold the high half in.
        let h = (key as u64) ^ ((key >> 64) as u64);
        &self.stripes[(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % STRIPES]
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A new connection from `peer`: count it, or say why not. Returns
    /// whether the table gained an entry (for the gauge).
    pub fn admit(&self, peer: &mut Peer) -> Result<bool, Refusal> {
        self.admit_at(peer, self.now_ms())
    }

    fn admit_at(&self, peer: &mut Peer, now: u64) -> Result<bool, Refusal> {
        if !self.enabled() || !peer.known {
            return Ok(false);
        }
        let key = peer.key();
        let Ok(mut map) = self.stripe(key).lock() else {
            return Ok(false);
        };
        let mut added = false;
        let e = map.entry(key).or_insert_with(|| {
            added = true;
            Entry::default()
        });
        let verdict = if self.max_conns > 0 && e.conns >= self.max_conns {
            Err(Refusal::Connections)
        } else if !e.bucket.take(self.rate(), now, 1) {
            Err(Refusal::Rate)
        } else {
            e.conns += 1;
            peer.counted = true;
            Ok(added)
        };
        if verdict.is_err() && added {
            // Refused at once (a limit of 0 connections cannot happen, but
            // keep the table free of entries that count nothing).
            map.remove(&key);
        }
        verdict
    }

    /// A counted connection from `peer` is gone. Returns whether the table
    /// lost an entry (for the gauge).
    pub fn release(&self, peer: &Peer) -> bool {
        self.release_at(peer, self.now_ms())
    }

    fn release_at(&self, peer: &Peer, now: u64) -> bool {
        if !peer.counted {
            return false;
        }
        let key = peer.key();
        let Ok(mut map) = self.stripe(key).lock() else {
            return false;
        };
        let Some(e) = map.get_mut(&key) else {
            return false;
        };
        e.conns = e.conns.saturating_sub(1);
        // Keep an address with no connections only while its rate budget
        // is not full again: forgetting it would hand it a fresh burst.
        if e.conns == 0 && self.refilled(e, now) {
            map.remove(&key);
            return true;
        }
        false
    }

    fn refilled(&self, e: &Entry, now: u64) -> bool {
        e.bucket.full(self.rate(), now)
    }

    /// New connections a second, in bursts of one second's worth.
    fn rate(&self) -> Rate {
        Rate {
            per_s: self.rate,
            burst: self.rate,
        }
    }

    /// Forget, in stripe `i`, addresses with no connection whose budget has
    /// refilled. Called by each shard on its tick, one stripe a tick, so
    /// the table holds at most the connected addresses plus those that
    /// connected within the last second. Returns how many went.
    pub fn sweep(&self, i: usize) -> usize {
        self.sweep_at(i, self.now_ms())
    }

    fn sweep_at(&self, i: usize, now: u64) -> usize {
        if self.rate == 0 {
            return 0;
        }
        let Ok(mut map) = self.stripes[i % STRIPES].lock() else {
            return 0;
        };
        let before = map.len();
        map.retain(|_, e| e.conns > 0 || !self.refilled(e, now));
        before - map.len()
    }

    /// Addresses tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

/// A `SO_PEERNAME` request in flight: where the kernel writes, and whose
/// connection it is. Boxed so the address stays put while the shard's
/// table of them grows.
pub struct PeerOp {
    pub key: u32,
    pub gen: u32,
    pub buf: Box<RawAddr>,
}

impl<M> Shard<M> {
    /// Ask for the peer address of the connection just accepted in slot
    /// `slot` (slab `key`, generation `gen`), `len` bytes of it (see
    /// [`sockaddr_len`]: its listener's family).
    pub(super) fn ask_peer(&mut self, key: u32, gen: u32, slot: u32, len: u32) {
        let op = PeerOp {
            key,
            gen,
            buf: Box::new(RawAddr([0; 28])),
        };
        let ptr = op.buf.0.as_ptr() as *const libc::c_void;
        let i = self.peer_ops.insert(op) as u32;
        let e = opcode::SetSockOpt::new(
            Fixed(slot),
            libc::SOL_SOCKET as u32,
            libc::SO_PEERNAME as u32,
            ptr,
            len,
        )
        .build();
        let e = getsockopt(e).user_data(token::encode(Op::Peer, i, gen));
        self.push(e);
    }

    /// The peer address arrived (`res`: its length, or an error).
    pub(super) fn on_peer(&mut self, i: u32, res: i32) {
        if !self.peer_ops.contains(i as usize) {
            return;
        }
        let op = self.peer_ops.remove(i as usize);
        let peer = (res > 0)
            .then(|| Peer::from_sockaddr(&op.buf, res as usize))
            .flatten();
        let Some(c) = super::table::live(&mut self.table.conns, op.key, op.gen) else {
            return;
        };
        let Some(peer) = peer else {
            // ENOTCONN: the client reset already; its receive ends it.
            // Anything else means this kernel cannot say (the socket
            // command needs Linux 6.7): say so once, and go on without.
            if res < 0 && res != -libc::ENOTCONN && !self.peer_warned {
                self.peer_warned = true;
                tracing::warn!(
                    target: "ringfan::runtime",
                    error = %std::io::Error::from_raw_os_error(-res),
                    "cannot read peer addresses: per-address limits are off, logs name no peer"
                );
            }
            return;
        };
        if self.config.proxy.protocol {
            // The PROXY header names the client (`proxied.rs`); until it
            // is read, and when it names none (LOCAL, UNKNOWN), the
            // socket's peer stands in. Should the header have come first,
            // what it said stays (also once the connection has moved on:
            // a kept-alive HTTP one, a closing one).
            if c.awaiting_proxy() {
                c.peer = peer;
            }
            return;
        }
        if c.phase != super::conn::Phase::Handshake {
            // Already answered (kept alive), shed or closing: keep the
            // address, count and refuse nothing.
            c.peer = peer;
            return;
        }
        c.peer = peer;
        if let Err(response) = settle(&mut self.table, &self.config.proxy, op.key) {
            inc(&self.table.my_stats().handshakes_rejected_total, 1);
            // Answered now, before the request arrives: an HTTP server
            // may answer early, and the close lingers for the request
            // so that it does not turn into a reset.
            super::log::refused(&self.table, op.key, &response);
            super::inbound::respond(&mut self.table, op.key, response);
        }
    }

    /// A connection left the table: release its count.
    pub(super) fn forget_peer(&mut self, peer: &Peer) {
        if self.table.peers.release(peer) {
            dec(&self.table.my_stats().peer_addresses_tracked, 1);
        }
    }

    /// On the tick: sweep one stripe of the shared table.
    pub(super) fn sweep_peers(&mut self) {
        if !self.table.peers.enabled() {
            return;
        }
        self.peer_sweep = self.peer_sweep.wrapping_add(1);
        let gone = self.table.peers.sweep(self.peer_sweep);
        dec(&self.table.my_stats().peer_addresses_tracked, gone as u64);
    }
}

/// Connection `key`'s peer address is what the transport says it is (the
/// socket's peer, or a PROXY header's source): count it against the
/// per-address limits now, or, when it is a trusted proxy, leave that to
/// the request head, whose forwarded header names the client
/// (`proxied::at_head`). `Err`: the 429 to answer.
pub(super) fn settle(table: &mut ConnTable, proxy: &ProxyConfig, key: u32) -> Result<(), Bytes> {
    let Some(c) = table.conns.get_mut(key as usize) else {
        return Ok(());
    };
    let trusted = !proxy.trusted.is_empty()
        && c.peer
            .addr()
            .is_some_and(|a| proxy.trusted.contains(a.ip()));
    if trusted {
        c.set_await_forwarded(true);
        return Ok(());
    }
    admit(table, key)
}

/// Count connection `key`'s peer, now final, against the per-address
/// limits. `Err`: the 429 to answer (counted here; the caller counts the
/// rejected handshake and sends it).
pub(super) fn admit(table: &mut ConnTable, key: u32) -> Result<(), Bytes> {
    let peers = &table.peers;
    let Some(c) = table.conns.get_mut(key as usize) else {
        return Ok(());
    };
    let verdict = peers.admit(&mut c.peer);
    let stats = &table.stats[table.me];
    match verdict {
        Ok(added) => {
            inc(&stats.peer_addresses_tracked, added as u64);
            Ok(())
        }
        Err(why) => {
            let (counter, body) = match why {
                Refusal::Connections => (
                    &stats.peer_connections_refused_total,
                    "too many connections from this address",
                ),
                Refusal::Rate => (
                    &stats.peer_rate_refused_total,
                    "too many new connections from this address",
                ),
            };
            inc(counter, 1);
            Err(http::error(429, &[("Retry-After", "1")], body))
        }
    }
}

/// `enum io_uring_socket_op` in the kernel's uapi (the io-uring crate keeps
/// its copy private).
const SOCKET_URING_OP_GETSOCKOPT: u32 = 2;
#[cfg(test)]
const SOCKET_URING_OP_SETSOCKOPT: u32 = 3;

/// Turn a built `SetSockOpt` entry into the matching `getsockopt`: the two
/// socket commands share every field but the command number (the io-uring
/// crate has no builder for the get side). `cmd_op` is the first 32-bit
/// word of the SQE's second 8 bytes (`struct io_uring_sqe`: opcode, flags,
/// ioprio, fd, then the `off`/`cmd_op` union at offset 8).
fn getsockopt(e: io_uring::squeue::Entry) -> io_uring::squeue::Entry {
    const CMD_OP_OFFSET: usize = 8;
    // SAFETY: `Entry` is `#[repr(C)]` around the 64-byte `io_uring_sqe`, a
    // plain-old-data struct: every bit pattern is valid, so viewing it as
    // bytes and back is sound, and the size is checked at compile time by
    // `transmute`.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(e) };
    raw[CMD_OP_OFFSET..CMD_OP_OFFSET + 4]
        .copy_from_slice(&SOCKET_URING_OP_GETSOCKOPT.to_ne_bytes());
    // SAFETY: as above; only the command number changed.
    unsafe { std::mem::transmute(raw) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Peer {
        let ip: IpAddr = ip.parse().expect("ip");
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Peer {
            ip: v6.octets(),
            port: 1,
            known: true,
            counted: false,
        }
    }

    #[test]
    fn getsockopt_changes_only_the_command() {
        let set = opcode::SetSockOpt::new(Fixed(7), 1, 28, std::ptr::null(), 16).build();
        // SAFETY: as in `getsockopt`: a 64-byte POD struct.
        let before: [u8; 64] = unsafe { std::mem::transmute(set.clone()) };
        // SAFETY: as above.
        let after: [u8; 64] = unsafe { std::mem::transmute(getsockopt(set)) };
        assert_eq!(
            u32::from_ne_bytes([before[8], before[9], before[10], before[11]]),
            SOCKET_URING_OP_SETSOCKOPT
        );
        assert_eq!(
            u32::from_ne_bytes([after[8], after[9], after[10], after[11]]),
            SOCKET_URING_OP_GETSOCKOPT
        );
        assert_eq!(before[..8], after[..8]);
        assert_eq!(before[12..], after[12..]);
    }

    #[test]
    fn decodes_both_families() {
        let mut raw = RawAddr([0; 28]);
        raw.0[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        raw.0[2..4].copy_from_slice(&8080u16.to_be_bytes());
        raw.0[4..8].copy_from_slice(&[10, 1, 2, 3]);
        let p = Peer::from_sockaddr(&raw, 16).expect("v4");
        assert_eq!(p.addr(), Some("10.1.2.3:8080".parse().expect("addr")));
        let mut raw = RawAddr([0; 28]);
        raw.0[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        raw.0[2..4].copy_from_slice(&443u16.to_be_bytes());
        raw.0[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets());
        let p = Peer::from_sockaddr(&raw, 28).expect("v6");
        assert_eq!(p.addr(), Some("[2001:db8::1]:443".parse().expect("addr")));
        // Truncated or unknown families are not addresses.
        assert!(Peer::from_sockaddr(&raw, 8).is_none());
        assert!(Peer::from_sockaddr(&RawAddr([0; 28]), 16).is_none());
        assert_eq!(Peer::default().addr(), None);
    }

    #[test]
    fn connection_limit_counts_per_address() {
        let l = PeerLimits::new(2, 0);
        let mut a = [peer("10.0.0.1"), peer("10.0.0.1"), peer("10.0.0.1")];
        assert!(l.admit(&mut a[0]).is_ok());
        assert!(l.admit(&mut a[1]).is_ok());
        assert_eq!(l.admit(&mut a[2]), Err(Refusal::Connections));
        // Another address is not affected.
        let mut b = peer("10.0.0.2");
        assert!(l.admit(&mut b).is_ok());
        // A refused connection releases nothing; a counted one frees room.
        assert!(!l.release(&a[2]));
        assert!(!l.release(&a[0]));
        assert!(l.admit(&mut a[2]).is_ok());
        for p in [&a[1], &a[2], &b] {
            l.release(p);
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_by_64() {
        let l = PeerLimits::new(1, 0);
        let mut a = peer("2001:db8:1:2::1");
        let mut b = peer("2001:db8:1:2:ffff::9");
        let mut c = peer("2001:db8:1:3::1");
        assert!(l.admit(&mut a).is_ok());
        assert_eq!(l.admit(&mut b), Err(Refusal::Connections));
        assert!(l.admit(&mut c).is_ok());
    }

    #[test]
    fn rate_limits_new_connections_and_refills() {
        let l = PeerLimits::new(0, 5);
        let mut ok = 0;
        for i in 0..20 {
            let mut p = peer("10.0.0.1");
            match l.admit_at(&mut p, i) {
                Ok(_) => {
                    ok += 1;
                    l.release_at(&p, i);
                }
                Err(why) => assert_eq!(why, Refusal::Rate),
            }
        }
        // A burst of one second's worth, then nothing.
        assert_eq!(ok, 5);
        // The address is remembered while its budget refills (forgetting
        // it would give a fresh burst)...
        assert_eq!(l.tracked(), 1);
        assert_eq!(l.sweep_all(500), 0);
        // ...one new connection per 200 ms meanwhile...
        let mut p = peer("10.0.0.1");
        assert!(l.admit_at(&mut p, 219).is_ok());
        assert_eq!(l.admit_at(&mut peer("10.0.0.1"), 220), Err(Refusal::Rate));
        l.release_at(&p, 220);
        // ...and forgotten once refilled.
        assert_eq!(l.sweep_all(1000), 0);
        assert_eq!(l.sweep_all(1300), 1);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn off_tracks_nothing() {
        let l = PeerLimits::new(0, 0);
        let mut p = peer("10.0.0.1");
        assert_eq!(l.admit(&mut p), Ok(false));
        assert!(!p.counted);
        assert_eq!(l.tracked(), 0);
    }

    impl PeerLimits {
        fn sweep_all(&self, now: u64) -> usize {
            (0..STRIPES).map(|i| self.sweep_at(i, now)).sum()
        }
    }
}
