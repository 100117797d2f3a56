//! One `SO_REUSEPORT` listening socket per shard, all on the same address,
//! so the kernel spreads new connections over the shards with no shared
//! accept queue and no lock.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

fn socket(addr: SocketAddr, reuseport: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restarting while old connections sit in TIME_WAIT must not fail.
    s.set_reuse_address(true)?;
    // No Nagle: a small frame must leave now, not wait for the ACK of the
    // previous one (~40 ms with delayed ACKs). Accepted sockets inherit it.
    s.set_nodelay(true)?;
    if reuseport {
        s.set_reuse_port(true)?;
    }
    Ok(s)
}

/// Bind `n` listeners on `addr` with `backlog`. Returns them and the
/// bound address (the real port when `addr` asked for port 0).
pub fn bind(addr: SocketAddr, n: usize, backlog: i32) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut addr = addr;
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share a port that another process
        // (of the same user) serves: refuse that instead of silently
        // splitting its traffic. A plain bind tells us whether it is free.
        let probe = socket(addr, false)?;
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
        let s = socket(addr, true)?;
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
        let (fds, addr) = bind("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        assert_eq!(fds.len(), 3);
        assert_ne!(addr.port(), 0);
        // All three accept connections on that port.
        let _c = std::net::TcpStream::connect(addr).unwrap();
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        let (fds, addr) = bind("127.0.0.1:0".parse().unwrap(), 1, 16).unwrap();
        let _c = std::net::TcpStream::connect(addr).unwrap();
        let l = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn port_in_use_is_refused() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr, 2, 128).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("already in use"), "{e}");
    }
}
