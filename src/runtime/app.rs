//! What the runtime calls on each shard: the [`App`] trait and the types
//! its callbacks take.

use super::io::Io;
use crate::ws::handshake::{Request, Upgrade};
use crate::ws::{http, Message};
use bytes::Bytes;

/// A connection within its shard. Stale ids (the connection closed, its
/// slot reused) are recognised by the generation and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub gen: u32,
}

/// How the application takes a WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Largest message this connection may send (sum of its fragments);
    /// past it the connection is closed with 1009.
    pub max_message: usize,
}

/// The application's answer to a plain HTTP request.
#[derive(Debug, Clone)]
pub enum HttpReply {
    /// Send this response (written with `Connection: close`) and close.
    Close(Bytes),
    /// Send this response (written without `Connection: close`) and read
    /// the next request on the connection (HTTP keep-alive). For a refusal
    /// too when the request was whole (a 429 to a backend that will retry
    /// should not cost it a new connection); a refusal that ends trust (a
    /// 401) is better a `Close`.
    KeepAlive(Bytes),
    /// The answer comes later, through [`Io::http_reply`] (it waits on
    /// other shards). Until then the connection's further requests wait
    /// unread.
    Later,
}

/// What the runtime calls on the shard's thread. One instance per shard.
/// Callbacks only one side needs (a server's `upgrade` and `http`, a
/// client's `connected`) have bodies that refuse or ignore.
pub trait App: 'static {
    /// Messages shards send each other.
    type Mail: Send + 'static;

    /// A complete, validated message arrived.
    fn message(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId, msg: Message<'_>);

    /// An upgraded connection stopped being open (closing or gone); it gets
    /// no more sends. Called once per upgraded connection.
    fn closed(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId);

    /// A WebSocket handshake passed the protocol checks; `upgrade.path`
    /// says where to. Accept it (the runtime then sends the `101`) or
    /// return the response that refuses it (a 404 for a path not served, a
    /// 401…). Without a body: every upgrade gets 404.
    fn upgrade(
        &mut self,
        _io: &mut Io<'_, Self::Mail>,
        _conn: ConnId,
        _upgrade: &Upgrade,
    ) -> Result<Accepted, Bytes> {
        Err(http::error(404, &[], "no such endpoint"))
    }

    /// The answer to a plain HTTP request (`/healthz`, `/metrics`,
    /// `POST /publish`…) whose body (`request.content_length` bytes, at
    /// most `Config::max_request_body`) is `body`. Without a body: every
    /// request gets 404.
    fn http(
        &mut self,
        _io: &mut Io<'_, Self::Mail>,
        _conn: ConnId,
        _request: &Request,
        _body: &[u8],
    ) -> HttpReply {
        HttpReply::Close(http::error(404, &[], "no such endpoint"))
    }

    /// Mail from another shard, or (`from == io.shards()`, see
    /// [`Io::is_external`]) from a thread outside the runtime through the
    /// shard's external inbox ([`super::external`]).
    fn mail(&mut self, _io: &mut Io<'_, Self::Mail>, _from: usize, _mail: Self::Mail) {}

    /// Everything queued for the connection has been handed to the kernel
    /// (the moment to send what was held back for a slow consumer).
    fn writable(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId) {}

    /// An outbound connection ([`Io::connect`]) completed its handshake and
    /// is open. [`App::closed`] follows when it stops being open.
    fn connected(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId) {}

    /// An outbound connection failed before it opened (socket, connect,
    /// refused handshake, timeout). Called once; the id is dead after it.
    fn connect_failed(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId, _why: &str) {}

    /// Called on every tick of the shard's timer (`Config::tick`), for
    /// applications that schedule their own work (a load generator's
    /// send schedule).
    fn tick(&mut self, _io: &mut Io<'_, Self::Mail>) {}

    /// Draining: may the open connections get their close now? False
    /// while the application still owes them answers it is waiting for
    /// elsewhere (a cluster node's publishes waiting for the stream's
    /// ack). Asked when the drain begins and on every tick after, until
    /// true or until one second before the drain deadline.
    fn settled(&mut self, _io: &mut Io<'_, Self::Mail>) -> bool {
        true
    }
}
