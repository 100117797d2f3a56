//! The application the `ringfan` binary runs on each shard: what is served
//! where (the pub/sub broker on `/ws`, `/echo` for conformance testing when turned on,
//! `/healthz`, `/metrics`, and with `--static` a directory's files), and
//! each connection's message limit.

pub mod admin;
mod admin_routes;
pub mod api_keys;
pub mod auth;
pub mod cluster;
mod host;
pub mod metrics;
pub mod publish;
pub mod static_files;

use crate::broker::batch::BatchError;
use crate::broker::topic::check_topic;
use crate::broker::wire::{self, ErrCode};
use crate::broker::Broker;
use crate::logs::{ConnLabel, Who};
use crate::runtime::{Accepted, App, ConnId, HttpReply, Io};
use crate::ws::handshake::{upgrade_required, Request, Upgrade};
use crate::ws::{deflate, frame, http, Message, MessageKind, OpCode};
use auth::Gate;
use bytes::Bytes;
use publish::{PublishAuth, Refused};
use rustc_hash::{FxHashMap, FxHashSet};
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
    /// Who may `POST /publish`.
    publish: PublishAuth,
    /// `POST /publish` requests waiting for other shards' seqs, by
    /// ticket (the connection): answered with `seqs` (a batch) or `seq`,
    /// and kept alive or not.
    waiting: FxHashMap<u64, (bool, bool)>,
    /// The admin API (on the admin listener).
    admin: admin::Admin,
    /// `--static DIR`, served on the public listeners.
    files: Option<Arc<static_files::StaticFiles>>,
    /// `--cluster`: the NATS link's counters, for `/metrics`.
    cluster: Option<Arc<crate::cluster::BridgeStats>>,
}

impl Node {
    pub fn new(broker: Broker, routes: Routes) -> Self {
        Self {
            broker,
            routes,
            echo: FxHashSet::default(),
            gate: None,
            publish: PublishAuth::default(),
            waiting: FxHashMap::default(),
            admin: admin::Admin::default(),
            files: None,
            cluster: None,
        }
    }

    /// `--cluster`: show the NATS link's counters in `/metrics`.
    pub fn with_cluster_stats(mut self, stats: Arc<crate::cluster::BridgeStats>) -> Self {
        self.cluster = Some(stats);
        self
    }

    /// Serve `files` (`--static DIR`) on every path of the public
    /// listeners that no endpoint takes.
    pub fn with_static(mut self, files: Arc<static_files::StaticFiles>) -> Self {
        self.files = Some(files);
        self
    }

    /// A path an endpoint takes (the rest is `--static`'s, when it is on).
    fn routed(&self, path: &str) -> bool {
        matches!(path, "/ws" | "/healthz" | "/metrics" | "/publish")
            || (path == "/echo" && self.routes.echo)
    }

    /// Serve the admin API's `/admin/` endpoints to holders of `token`
    /// (`--admin-token-file`) on the admin listener.
    pub fn with_admin_token(mut self, token: Arc<admin::AdminToken>) -> Self {
        self.admin.token = Some(token);
        self
    }

    /// Check tokens at the handshake and for the `auth` op (and on
    /// `POST /publish`).
    pub fn with_auth(mut self, gate: Arc<Gate>) -> Self {
        self.broker.set_authenticator(gate.clone());
        self.publish.gate = Some(gate.clone());
        self.gate = Some(gate);
        self
    }

    /// Take API keys for `POST /publish` (`--publish-key-file`).
    pub fn with_publish_keys(mut self, keys: Arc<api_keys::ApiKeys>) -> Self {
        self.publish.keys = Some(keys);
        self
    }

    /// `POST /publish`.
    fn publish(
        &mut self,
        io: &mut Io<'_, crate::broker::Mail>,
        conn: ConnId,
        request: &Request,
        body: &[u8],
    ) -> HttpReply {
        let keep = request.keep_alive;
        if &*request.method != "POST" {
            let msg = "publish with POST";
            return Refused::new_close(405, ErrCode::BadOp.as_str(), msg).reply(false);
        }
        if io.draining() {
            let msg = "server is shutting down";
            return Refused::new_close(503, "unavailable", msg).reply(false);
        }
        let perms = match self.publish.permissions(request) {
            Ok(p) => p,
            Err(r) => return r.reply(keep),
        };
        let parsed = match publish::parse(body) {
            Ok(p) => p,
            Err(r) => return r.reply(keep),
        };
        // A bad topic is a 400 whoever asks; then the rights.
        for (index, (topic, _)) in parsed.messages.iter().enumerate() {
            let refused = |code, message| {
                publish::batch_refused(
                    BatchError {
                        index,
                        code,
                        message,
                    },
                    parsed.batch,
                )
            };
            if let Err(e) = check_topic(topic) {
                return refused(ErrCode::BadTopic, wire::bad_topic(topic, e)).reply(keep);
            }
            if !perms.may_publish(topic) {
                let msg = format!("not allowed to publish to '{}'", wire::quote(topic));
                return refused(ErrCode::Forbidden, msg).reply(keep);
            }
        }
        let messages: Vec<(&str, &str)> = parsed.messages.iter().map(|(t, d)| (&**t, *d)).collect();
        let ticket = (u64::from(conn.key) << 32) | u64::from(conn.gen);
        match self.broker.publish_batch(io, ticket, &messages) {
            Err(e) => publish::batch_refused(e, parsed.batch).reply(keep),
            Ok(Some(outcome)) => publish::outcome_reply(&outcome, parsed.batch, keep),
            Ok(None) => {
                self.waiting.insert(ticket, (parsed.batch, keep));
                HttpReply::Later
            }
        }
    }

    /// Answer the `POST /publish` requests whose seqs all came back.
    fn finish_publishes(&mut self, io: &mut Io<'_, crate::broker::Mail>) {
        for (ticket, outcome) in self.broker.take_batches() {
            let Some((batch, keep)) = self.waiting.remove(&ticket) else {
                continue;
            };
            let conn = ConnId {
                key: (ticket >> 32) as u32,
                gen: ticket as u32,
            };
            io.http_reply(conn, publish::outcome_reply(&outcome, batch, keep));
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The answer to `HEAD`: `GET`'s head (its length included), no body.
    fn answer_head(&self, io: &Io<'_, crate::broker::Mail>, request: &Request) -> Bytes {
        let get = Request {
            method: "GET".into(),
            ..request.clone()
        };
        admin::head_only(self.answer(io, &get))
    }

    /// The answer to `GET path` (or another method) on the plain HTTP side.
    fn answer(&self, io: &Io<'_, crate::broker::Mail>, request: &Request) -> Bytes {
        let get = &*request.method == "GET";
        match &*request.path {
            "/ws" => upgrade_required(&request.method),
            "/echo" if self.routes.echo => upgrade_required(&request.method),
            "/healthz" | "/metrics" if !get => http::error(
                405,
                &[("Allow", "GET, HEAD")],
                "only GET and HEAD are allowed",
            ),
            "/healthz" if io.draining() => {
                http::response(503, &[], "text/plain", b"draining\n", true)
            }
            "/healthz" => http::response(200, &[], "text/plain", b"ok\n", true),
            "/metrics" => {
                let body = metrics::scrape(
                    io.stats(),
                    self.broker.stats(),
                    self.gate.as_deref(),
                    self.cluster.as_ref(),
                );
                http::response(200, &[], metrics::CONTENT_TYPE, body.as_bytes(), true)
            }
            _ => http::error(404, &[], "no such endpoint"),
        }
    }
}

/// Who `conn` is, for a log line (see `crate::logs`).
fn who(io: &mut Io<'_, crate::broker::Mail>, conn: ConnId) -> Who<'static> {
    Who {
        conn: Some(ConnLabel {
            shard: io.shard(),
            key: conn.key,
            gen: conn.gen,
        }),
        peer: io.peer(conn),
        user: None,
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
        if io.is_admin(conn) {
            return Err(http::error(
                404,
                &[],
                "the admin listener serves no WebSocket",
            ));
        }
        match &*upgrade.path {
            "/ws" => {
                let opening = match &self.gate {
                    Some(g) => Some(g.at_handshake_from(upgrade.token.as_deref(), who(io, conn))?),
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
            path => Err(self.answer(io, &Request::get(path))),
        }
    }

    fn message(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId, msg: Message<'_>) {
        if !self.echo.is_empty() && self.echo.contains(&conn) {
            // The same message back; text stays text.
            let op = match msg.kind {
                MessageKind::Text => OpCode::Text,
                MessageKind::Binary => OpCode::Binary,
            };
            // With deflate agreed, every echo goes back compressed (stored
            // blocks when the client's window is too small for it): the
            // conformance runner (kosoku 0.1.0) mishandles an uncompressed
            // message on a connection that negotiated deflate, and /echo is
            // for conformance (Autobahn 12 and 13).
            let frame = match io.deflate(conn) {
                Some(a) => {
                    let mut packed = Vec::new();
                    deflate::compress(a, msg.payload, &mut packed);
                    frame::server_frame_deflated(op, &packed)
                }
                None => frame::server_frame(op, msg.payload),
            };
            io.send(conn, frame);
            return;
        }
        match msg.kind {
            MessageKind::Binary => self.broker.binary(io, client(conn)),
            MessageKind::Text => match std::str::from_utf8(msg.payload) {
                Ok(text) => {
                    self.broker.text(io, client(conn), text);
                    // Cluster mode: a refusal there may complete another
                    // request's HTTP batch (its topic's publishes failed).
                    if self.broker.has_batches() {
                        self.finish_publishes(io);
                    }
                }
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

    fn http(
        &mut self,
        io: &mut Io<'_, Self::Mail>,
        conn: ConnId,
        request: &Request,
        body: &[u8],
    ) -> HttpReply {
        if io.is_admin(conn) {
            return self.admin_http(io, conn, request, body);
        }
        if &*request.path == "/publish" {
            return self.publish(io, conn, request, body);
        }
        if let Some(files) = &self.files {
            if !self.routed(&request.path) {
                return files.answer(request);
            }
        }
        if &*request.method == "HEAD" && matches!(&*request.path, "/healthz" | "/metrics") {
            return HttpReply::Close(self.answer_head(io, request));
        }
        HttpReply::Close(self.answer(io, request))
    }

    fn mail(&mut self, io: &mut Io<'_, Self::Mail>, from: usize, mail: Self::Mail) {
        let mail = match mail {
            crate::broker::Mail::Host(m) => {
                if let Ok(m) = m.downcast::<admin::AdminMail>() {
                    self.admin_mail(io, from, *m);
                }
                return;
            }
            other => other,
        };
        self.broker.mail(io, from, mail);
        if self.broker.has_batches() {
            self.finish_publishes(io);
        }
    }

    fn settled(&mut self, _io: &mut Io<'_, Self::Mail>) -> bool {
        self.broker.settled()
    }

    fn tick(&mut self, io: &mut Io<'_, Self::Mail>) {
        // Snapshot scans for local subscribers whose last step sent
        // nothing (no `writable` follows it) go on here.
        self.broker.tick(io);
        // Cluster mode: requests past their deadline are failed by the tick.
        if self.broker.has_batches() {
            self.finish_publishes(io);
        }
    }
}
