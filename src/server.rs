//! The application the `ringfan` binary runs on each shard: routes,
//! health, metrics, and `/echo` for conformance testing.

use crate::runtime::{App, ConnId, Io, ShardStats};
use crate::ws::handshake::{HttpRoute, Route, Upgrade};
use crate::ws::{frame, http, Message, MessageKind, OpCode};
use bytes::Bytes;

/// Per-shard application state.
#[derive(Debug, Default)]
pub struct Node;

impl App for Node {
    type Mail = ();

    fn upgrade(
        &mut self,
        _io: &mut Io<'_, ()>,
        _conn: ConnId,
        upgrade: &Upgrade,
    ) -> Result<(), Bytes> {
        match upgrade.route {
            Route::Echo => Ok(()),
            // The pub/sub broker is not part of this build yet.
            Route::PubSub => Err(http::error(404, &[], "pub/sub is not served by this build")),
        }
    }

    fn message(&mut self, io: &mut Io<'_, ()>, conn: ConnId, msg: Message<'_>) {
        // /echo: the same message back, text stays text.
        let op = match msg.kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        io.send(conn, frame::server_frame(op, msg.payload));
    }

    fn closed(&mut self, _io: &mut Io<'_, ()>, _conn: ConnId) {}

    fn http(&mut self, io: &mut Io<'_, ()>, route: HttpRoute) -> Bytes {
        match route {
            HttpRoute::Healthz if io.draining() => {
                http::response(503, &[], "text/plain", b"draining\n", true)
            }
            HttpRoute::Healthz => http::response(200, &[], "text/plain", b"ok\n", true),
            HttpRoute::Metrics => {
                let mut body = String::with_capacity(4096);
                ShardStats::render(io.stats(), &mut body);
                http::response(200, &[], "text/plain; version=0.0.4", body.as_bytes(), true)
            }
        }
    }

    fn mail(&mut self, _io: &mut Io<'_, ()>, _from: usize, _mail: ()) {}
}
