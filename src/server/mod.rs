//! The application the `ringfan` binary runs on each shard: what is served
//! where (the pub/sub broker on `/ws`, `/echo` for conformance testing when turned on,
//! `/healthz`, `/metrics`), and each connection's message limit.

pub mod auth;
mod host;
pub mod metrics;

use crate::broker::Broker;
use crate::runtime::{Accepted, App, ConnId, Io};
use crate::ws::handshake::{upgrade_required, Request, Upgrade};
use crate::ws::{frame, http, Message, MessageKind, OpCode};
use auth::Gate;
use bytes::Bytes;
use rustc_hash::FxHashSet;
use std::sync::Arc;

pub use host::client;

/// The endpoints besides `/ws`, whose limit is the broker's.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Serve `/echo` (conformance testing). Off unless asked for: it
    /// takes 16 MiB messages from anyone who connects.
    pub echo: bool,
    /// Largest message on `/echo`: 16 MiB, the largest in the Autobahn
    /// TestSuite.
    pub max_message_echo: usize,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            echo: false,
            max_message_echo: 16 << 20,
        }
    }
}

/// Per-shard application state.
pub struct Node {
    broker: Broker,
    routes: Routes,
    /// Connections upgraded on `/echo` (every other one is the broker's).
    echo: FxHashSet<ConnId>,
    /// Token checks, with `--auth` on.
    gate: Option<Arc<Gate>>,
}

impl Node {
    pub fn new(broker: Broker, routes: Routes) -> Self {
        Self {
            broker,
            routes,
            echo: FxHashSet::default(),
            gate: None,
        }
    }

    /// Check tokens at the handshake and for the `auth` op.
    pub fn with_auth(mut self, gate: Arc<Gate>) -> Self {
        self.broker.set_authenticator(gate.clone());
        self.gate = Some(gate);
        self
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The answer to `GET path` (or another method) on the plain HTTP side.
    fn answer(&self, io: &Io<'_, crate::broker::Mail>, request: &Request) -> Bytes {
        let get = &*request.method == "GET";
        match &*request.path {
            "/ws" => upgrade_required(&request.method),
            "/echo" if self.routes.echo => upgrade_required(&request.method),
            "/healthz" | "/metrics" if !get => {
                http::error(405, &[("Allow", "GET")], "only GET is allowed")
            }
            "/healthz" if io.draining() => {
                http::response(503, &[], "text/plain", b"draining\n", true)
            }
            "/healthz" => http::response(200, &[], "text/plain", b"ok\n", true),
            "/metrics" => {
                let body = metrics::scrape(io.stats(), self.broker.stats(), self.gate.as_deref());
                http::response(200, &[], metrics::CONTENT_TYPE, body.as_bytes(), true)
            }
            _ => http::error(404, &[], "no such endpoint"),
        }
    }
}

impl App for Node {
    type Mail = crate::broker::Mail;

    fn upgrade(
        &mut self,
        io: &mut Io<'_, Self::Mail>,
        conn: ConnId,
        upgrade: &Upgrade,
    ) -> Result<Accepted, Bytes> {
        match &*upgrade.path {
            "/ws" => {
                let opening = match &self.gate {
                    Some(g) => Some(g.at_handshake(upgrade.token.as_deref())?),
                    None => None,
                };
                self.broker.open(client(conn));
                if let Some(o) = opening {
                    self.broker.open_auth(client(conn), o);
                }
                let max_message = self.broker.config().max_message;
                Ok(Accepted { max_message })
            }
            "/echo" if self.routes.echo => {
                self.echo.insert(conn);
                let max_message = self.routes.max_message_echo;
                Ok(Accepted { max_message })
            }
            // A plain endpoint asked with an upgrade gets its plain answer.
            path => Err(self.answer(
                io,
                &Request {
                    method: "GET".into(),
                    path: path.into(),
                },
            )),
        }
    }

    fn message(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId, msg: Message<'_>) {
        if !self.echo.is_empty() && self.echo.contains(&conn) {
            // The same message back; text stays text.
            let op = match msg.kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            };
            io.send(conn, frame::server_frame(op, msg.payload));
            return;
        }
        match msg.kind {
            MessageKind::Binary => self.broker.binary(io, client(conn)),
            MessageKind::Text => match std::str::from_utf8(msg.payload) {
                Ok(text) => self.broker.text(io, client(conn), text),
                // The frame layer validated it; this cannot happen.
                Err(_) => self.broker.binary(io, client(conn)),
            },
        }
    }

    fn closed(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId) {
        if !self.echo.remove(&conn) {
            self.broker.closed(io, client(conn));
        }
    }

    fn writable(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId) {
        self.broker.writable(io, client(conn));
    }

    fn http(&mut self, io: &mut Io<'_, Self::Mail>, request: &Request) -> Bytes {
        self.answer(io, request)
    }

    fn mail(&mut self, io: &mut Io<'_, Self::Mail>, from: usize, mail: Self::Mail) {
        self.broker.mail(io, from, mail);
    }

    fn tick(&mut self, io: &mut Io<'_, Self::Mail>) {
        // Snapshot scans for local subscribers whose last step sent
        // nothing (no `writable` follows it) go on here.
        self.broker.tick(io);
    }
}
