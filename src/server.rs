//! The application the `ringfan` binary runs on each shard: the pub/sub
//! broker on `/ws`, `/echo` for conformance testing, health and metrics.

use crate::broker::{Broker, BrokerStats, Mail};
use crate::runtime::{App, ConnId, Io, ShardStats};
use crate::ws::handshake::{HttpRoute, Route, Upgrade};
use crate::ws::{frame, http, Message, MessageKind, OpCode};
use bytes::Bytes;

/// Per-shard application state.
pub struct Node {
    pub broker: Broker,
}

impl App for Node {
    type Mail = Mail;

    fn upgrade(
        &mut self,
        _io: &mut Io<'_, Mail>,
        conn: ConnId,
        upgrade: &Upgrade,
    ) -> Result<(), Bytes> {
        if upgrade.route == Route::PubSub {
            self.broker.open(conn);
        }
        Ok(())
    }

    fn message(&mut self, io: &mut Io<'_, Mail>, conn: ConnId, msg: Message<'_>) {
        match (io.route(conn), msg.kind) {
            (Some(Route::Echo), kind) => {
                // The same message back; text stays text.
                let op = match kind {
                    MessageKind::Text => OpCode::Text,
                    MessageKind::Binary => OpCode::Binary,
                };
                io.send(conn, frame::server_frame(op, msg.payload));
            }
            (_, MessageKind::Binary) => self.broker.binary(io, conn),
            (_, MessageKind::Text) => match std::str::from_utf8(msg.payload) {
                Ok(text) => self.broker.text(io, conn, text),
                // The frame layer validated it; this cannot happen.
                Err(_) => self.broker.binary(io, conn),
            },
        }
    }

    fn closed(&mut self, io: &mut Io<'_, Mail>, conn: ConnId) {
        self.broker.closed(io, conn);
    }

    fn writable(&mut self, io: &mut Io<'_, Mail>, conn: ConnId) {
        self.broker.writable(io, conn);
    }

    fn http(&mut self, io: &mut Io<'_, Mail>, route: HttpRoute) -> Bytes {
        match route {
            HttpRoute::Healthz if io.draining() => {
                http::response(503, &[], "text/plain", b"draining\n", true)
            }
            HttpRoute::Healthz => http::response(200, &[], "text/plain", b"ok\n", true),
            HttpRoute::Metrics => {
                let mut body = String::with_capacity(8192);
                ShardStats::render(io.stats(), &mut body);
                BrokerStats::render(self.broker.stats(), &mut body);
                http::response(200, &[], "text/plain; version=0.0.4", body.as_bytes(), true)
            }
        }
    }

    fn mail(&mut self, io: &mut Io<'_, Mail>, from: usize, mail: Mail) {
        self.broker.mail(io, from, mail);
    }
}
