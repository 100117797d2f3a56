//! The io_uring runtime as the broker's [`Host`]: the one place where a
//! runtime connection id becomes a broker client and back. Both are a slot
//! and a generation, so the conversion is free.

use crate::broker::{Client, Host, Mail};
use crate::runtime::{ConnId, Io};
use crate::sendbuf::{Offered, SendBuf};
use bytes::Bytes;

/// The broker's id for a runtime connection (the runtime's slab key is
/// dense and reused, as [`Client`] asks).
pub fn client(conn: ConnId) -> Client {
    Client {
        slot: conn.key,
        gen: conn.gen,
    }
}

fn conn(client: Client) -> ConnId {
    ConnId {
        key: client.slot,
        gen: client.gen,
    }
}

impl Host for Io<'_, Mail> {
    fn shard(&self) -> usize {
        Io::shard(self)
    }

    fn shards(&self) -> usize {
        Io::shards(self)
    }

    fn send(&mut self, to: Client, frame: Bytes) -> bool {
        Io::send(self, conn(to), frame)
    }

    fn offer(&mut self, to: Client, frame: &SendBuf, limit: usize) -> Offered {
        Io::offer(self, conn(to), frame, limit)
    }

    fn close(&mut self, to: Client, code: u16, reason: &'static str) -> bool {
        Io::close(self, conn(to), code, reason)
    }

    fn close_after(&mut self, to: Client, code: u16, reason: &'static str) -> bool {
        Io::close_after(self, conn(to), code, reason)
    }

    fn backlog(&self, to: Client) -> Option<usize> {
        Io::backlog(self, conn(to))
    }

    fn post(&mut self, to: usize, mail: Mail) {
        Io::post(self, to, mail)
    }

    fn try_post(&mut self, to: usize, mail: Mail) -> Result<(), Mail> {
        Io::try_post(self, to, mail)
    }

    fn now_ms(&self) -> u64 {
        Io::now_ms(self)
    }

    fn now_ns(&self) -> u64 {
        Io::now_ns(self)
    }

    fn mail_waiting(&self, to: usize) -> bool {
        Io::mail_waiting(self, to)
    }

    fn peer(&mut self, to: Client) -> Option<std::net::SocketAddr> {
        Io::peer(self, conn(to))
    }

    fn draining(&self) -> bool {
        Io::draining(self)
    }
}
