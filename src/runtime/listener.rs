//! One `SO_REUSEPORT` listening socket per shard, all on the same address,
//! so the kernel spreads new connections over the shards with no shared
//! accept queue and no lock.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

fn socket(addr: SocketAddr, reuseport: bool, send_buffer: usize) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting while old connections sit in TIME_WAIT must not fail.
    s.set_reuse_address(true)?;
    // No Nagle: a small frame must leave now, not wait for the ACK of the
    // previous one (~40 ms with delayed ACKs). Accepted sockets inherit it.
    s.set_nodelay(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    // A subscriber that stops reading first fills its kernel send buffer,
    // and only then the broker's queue, where the slow-consumer policy
    // acts. Autotuning lets that buffer reach tcp_wmem's max (4 MiB) per
    // connection, and many stalled ones push the whole stack into
    // tcp_mem pressure, which slows every other connection. A fixed size
    // (the kernel doubles it) bounds that; accepted sockets inherit it.
    if send_buffer > 0 {
        s.set_send_buffer_size(send_buffer)?;
    }
    Ok(s)
}

/// Bind `n` listeners on `addr` with `backlog`; accepted sockets get a
/// `send_buffer` of that many bytes (0: the kernel's autotuning). Returns
/// the listeners and the bound address (the real port when `addr` asked
/// for port 0).
pub fn bind(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
    send_buffer: usize,
) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut addr = addr;
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share a port that another process
        // (of the same user) serves: refuse that instead of silently
        // splitting its traffic. A plain bind tells us whether it is free.
        let probe = socket(addr, false, 0)?;
        probe.bind(&addr.into()).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{addr} is already in use"),
                )
            } else {
                e
            }
        })?;
        drop(probe);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = socket(addr, true, send_buffer)?;
        s.bind(&addr.into())?;
        s.listen(backlog)?;
        if addr.port() == 0 {
            // The first bind picked the port; the others join it.
            if let Some(a) = s.local_addr()?.as_socket() {
                addr = a;
            }
        }
        out.push(OwnedFd::from(s));
    }
    Ok((out, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_n_listeners_on_one_port() {
        let (fds, addr) = bind("127.0.0.1:0".parse().unwrap(), 3, 128, 0).unwrap();
        assert_eq!(fds.len(), 3);
        assert_ne!(addr.port(), 0);
        // All three accept connections on that port.
        let _c = std::net::TcpStream::connect(addr).unwrap();
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let (fds, addr) = bind("127.0.0.1:0".parse().unwrap(), 1, 16, 0).unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let l = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn accepted_sockets_inherit_a_fixed_send_buffer() {
        let accept = |send_buffer| {
            let (fds, addr) = bind("127.0.0.1:0".parse().unwrap(), 1, 16, send_buffer).unwrap();
            let _c = std::net::TcpStream::connect(addr).unwrap();
            let l = std::net::TcpListener::from(fds.into_iter().next().unwrap());
            let (accepted, _) = l.accept().unwrap();
            socket2::SockRef::from(&accepted)
                .send_buffer_size()
                .unwrap()
        };
        // The kernel doubles the request (bookkeeping overhead).
        assert_eq!(accept(48 << 10), 96 << 10);
        // 0 leaves the kernel's default (tcp_wmem's middle value).
        assert_ne!(accept(0), 96 << 10);
    }

    #[test]
    fn port_in_use_is_refused() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr, 2, 128, 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("already in use"), "{e}");
    }
}
