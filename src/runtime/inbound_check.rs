//! A socket-free, ring-free harness around the runtime's inbound glue, for
//! the `inbound` fuzz target (`fuzz-checks/src/inbound.rs`, which holds the
//! assertions). Not part of the API.
//!
//! It sets up what one shard holds for one accepted connection: a
//! connection table with the connection in its `Handshake` phase as
//! `Shard::on_accept` leaves it, a one-shard mailbox, and the application
//! the `ringfan` binary runs (`server::Node` over a `Broker`, `/echo` on),
//! wrapped so that what its callbacks saw is recorded. Each chunk of input
//! is then handed to `inbound::delivered`, the data path `Shard::on_recv`
//! runs once the kernel copied received bytes into a provided buffer:
//! handshake, frames, the pending buffer, the backpressure check between
//! frames, the application's callbacks and the answers queued for sending.
//!
//! Nothing is sent: the flush step never runs. Two things the shard does
//! around that path are modelled here, as the shard does them:
//! - after each delivery, `Shard::check_backpressure`'s decision: an open
//!   connection whose backlog is over `max_backlog_read` stops being read
//!   (later chunks are then kept unparsed, as bytes the kernel delivered
//!   before the cancel landed);
//! - after the last chunk, while the connection is paused (and not asked
//!   to close), the flush is taken to have sent its whole queue (the
//!   frames are moved to [`Trace::sent`]) and `Shard::resume_read`'s parse
//!   of what was kept runs (`inbound::received_buffered`).

use super::app::{Accepted, App, ConnId, HttpReply};
use super::config::Config;
use super::conn::Conn;
pub use super::conn::Phase;
use super::inbound;
use super::io::Io;
use super::mailbox::{self, Mailbox};
use super::stats::ShardStats;
use super::table::ConnTable;
use crate::broker::{Broker, BrokerConfig, BrokerStats, Mail};
use crate::metrics::inc;
use crate::server::{Node, Routes};
use crate::ws::handshake::{Request, Upgrade};
use crate::ws::{Message, MessageKind, State};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

/// An empty `rx` holds no more capacity than this (`inbound::KEEP_RX`).
pub const KEEP_RX: usize = inbound::KEEP_RX;

/// The limits the connection runs under.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The largest message on `/ws` (the broker's) and on `/echo`.
    pub max_message: usize,
    /// `Config::max_backlog_read`.
    pub max_backlog_read: usize,
    /// `Config::max_backlog`.
    pub max_backlog: usize,
    /// The server is shutting down (upgrades and `/healthz` get 503).
    pub draining: bool,
    /// The shard's table is down to its HTTP reserve (upgrades get 503).
    pub full: bool,
}

/// What one of the application's callbacks saw (and answered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `upgrade`: the path, and the accepted message limit or the refusal.
    Upgrade {
        path: String,
        response: Vec<u8>,
        accepted: Result<usize, Vec<u8>>,
    },
    /// `http`: the request and the response.
    Http {
        method: String,
        path: String,
        response: Vec<u8>,
    },
    /// `message`.
    Message { kind: MessageKind, payload: Vec<u8> },
    /// Any other callback (none is expected on this path).
    Other(&'static str),
}

/// The connection as it stands after a delivery or a resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    /// The WebSocket state (`Open` before the upgrade too).
    pub ws: State,
    pub close_code: u16,
    pub close_req: Option<(u16, &'static str)>,
    pub read_paused: bool,
    /// The pending buffer (`Conn::rx`): its length and capacity.
    pub rx_len: usize,
    pub rx_capacity: usize,
    /// Bytes of a fragmented message assembled so far.
    pub buffered: usize,
    /// `Conn::backlog`: queued answers, each frame with its overhead.
    pub backlog: usize,
    /// How many callbacks the application has seen so far.
    pub seen: usize,
}

/// What happened before a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A chunk of this many bytes was delivered.
    Delivered(usize),
    /// The queue was sent (modelled) and reading resumed.
    Resumed,
}

/// One run: the snapshot after each step, what was queued for sending (in
/// queue order: moved out at each resume, then at the end), what the
/// application saw, and the final state.
#[derive(Debug, Clone)]
pub struct Trace {
    pub steps: Vec<(Step, Snapshot)>,
    pub sent: Vec<Vec<u8>>,
    pub seen: Vec<Seen>,
    pub end: Snapshot,
}

/// The binary's application, recording what its callbacks saw.
struct Recorder {
    node: Node,
    seen: Vec<Seen>,
}

impl App for Recorder {
    type Mail = Mail;

    fn message(&mut self, io: &mut Io<'_, Mail>, conn: ConnId, msg: Message<'_>) {
        self.seen.push(Seen::Message {
            kind: msg.kind,
            payload: msg.payload.to_vec(),
        });
        self.node.message(io, conn, msg);
    }

    fn closed(&mut self, io: &mut Io<'_, Mail>, conn: ConnId) {
        self.seen.push(Seen::Other("closed"));
        self.node.closed(io, conn);
    }

    fn upgrade(
        &mut self,
        io: &mut Io<'_, Mail>,
        conn: ConnId,
        upgrade: &Upgrade,
    ) -> Result<Accepted, Bytes> {
        let answer = self.node.upgrade(io, conn, upgrade);
        self.seen.push(Seen::Upgrade {
            path: upgrade.path.to_string(),
            response: upgrade.response.to_vec(),
            accepted: match &answer {
                Ok(a) => Ok(a.max_message),
                Err(r) => Err(r.to_vec()),
            },
        });
        answer
    }

    fn http(
        &mut self,
        io: &mut Io<'_, Mail>,
        conn: ConnId,
        request: &Request,
        body: &[u8],
    ) -> HttpReply {
        let reply = self.node.http(io, conn, request, body);
        self.seen.push(Seen::Http {
            method: request.method.to_string(),
            path: request.path.to_string(),
            response: match &reply {
                HttpReply::Close(r) | HttpReply::KeepAlive(r) => r.to_vec(),
                HttpReply::Later => Vec::new(),
            },
        });
        reply
    }

    fn mail(&mut self, io: &mut Io<'_, Mail>, from: usize, mail: Mail) {
        self.seen.push(Seen::Other("mail"));
        self.node.mail(io, from, mail);
    }

    fn writable(&mut self, io: &mut Io<'_, Mail>, conn: ConnId) {
        self.seen.push(Seen::Other("writable"));
        self.node.writable(io, conn);
    }

    fn connected(&mut self, io: &mut Io<'_, Mail>, conn: ConnId) {
        self.seen.push(Seen::Other("connected"));
        self.node.connected(io, conn);
    }

    fn connect_failed(&mut self, io: &mut Io<'_, Mail>, conn: ConnId, why: &str) {
        self.seen.push(Seen::Other("connect_failed"));
        self.node.connect_failed(io, conn, why);
    }

    fn tick(&mut self, io: &mut Io<'_, Mail>) {
        self.seen.push(Seen::Other("tick"));
        self.node.tick(io);
    }
}

/// The runtime's defaults (built once: `Config::default` asks the system
/// for its core count). The inbound path reads only its handshake config.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(Config::default)
}

struct Harness {
    app: Recorder,
    table: ConnTable,
    mail: Mailbox<Mail>,
    key: u32,
    steps: Vec<(Step, Snapshot)>,
    sent: Vec<Vec<u8>>,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        let broker = BrokerConfig {
            max_message: setup.max_message,
            ..BrokerConfig::default()
        };
        let routes = Routes {
            echo: true,
            max_message_echo: setup.max_message,
        };
        let broker_stats: Arc<[BrokerStats]> = Arc::new([BrokerStats::default()]);
        let node = Node::new(Broker::new(broker, broker_stats), routes);
        let stats: Arc<[ShardStats]> = Arc::new([ShardStats::default()]);
        let mut table = ConnTable {
            me: 0,
            conns: Slab::new(),
            dirty: VecDeque::new(),
            first: VecDeque::new(),
            now: 0,
            turn_ns: 0,
            send_ns: None,
            stats,
            draining: setup.draining,
            stopping: Arc::default(),
            max_backlog: setup.max_backlog,
            max_backlog_read: setup.max_backlog_read,
            deflate_min: crate::sendbuf::DEFLATE_MIN,
            // One connection open: 0 makes it the one past the limit.
            max_upgraded: if setup.full { 0 } else { 16 },
            dials: Vec::new(),
            gen: 0,
            outbound: FxHashMap::default(),
            // The harness parses every head at once; the per-turn budget
            // is the shard's (`handshakes.rs`).
            handshake_budget: usize::MAX,
            admin_budget: super::table::ADMIN_HEADS_PER_TURN,
            deferred: Vec::new(),
            tls: Default::default(),
            peers: super::peer::PeerLimits::new(0, 0),
        };
        // As `Shard::on_accept` takes a connection in.
        let gen = table.next_gen();
        let key = table.conns.insert(Conn::new(0, gen, table.now)) as u32;
        let s = table.my_stats();
        inc(&s.connections_accepted_total, 1);
        inc(&s.connections_open, 1);
        let mail = mailbox::mesh(1, 64).pop().expect("one mailbox");
        Self {
            app: Recorder {
                node,
                seen: Vec::new(),
            },
            table,
            mail,
            key,
            steps: Vec::new(),
            sent: Vec::new(),
        }
    }

    fn conn(&mut self) -> &mut Conn {
        self.table
            .conns
            .get_mut(self.key as usize)
            .expect("the connection stays in the table (only the flush releases)")
    }

    fn snapshot(&mut self) -> Snapshot {
        let seen = self.app.seen.len();
        let c = self.conn();
        Snapshot {
            phase: c.phase,
            ws: c.ws.state(),
            close_code: c.close_code,
            close_req: c.close_req(),
            read_paused: c.read_paused(),
            rx_len: c.rx.len(),
            rx_capacity: c.rx.capacity(),
            buffered: c.ws.buffered(),
            backlog: c.backlog(),
            seen,
        }
    }

    /// `Shard::check_backpressure`'s decision (the cancel it submits is
    /// what makes later bytes wait unparsed).
    fn check_backpressure(&mut self) {
        let limit = self.table.max_backlog_read;
        let c = self.conn();
        if !c.read_paused() && c.phase == Phase::Open && c.backlog() > limit {
            c.set_read_paused(true);
        }
    }

    /// The kernel copied `chunk` into a provided buffer: `Shard::on_recv`'s
    /// data path.
    fn deliver(&mut self, chunk: &[u8]) {
        let mut buf = chunk.to_vec();
        inbound::delivered(
            &mut self.app,
            &mut self.table,
            &mut self.mail,
            config(),
            self.key,
            &mut buf,
        );
        self.check_backpressure();
        let s = self.snapshot();
        self.steps.push((Step::Delivered(chunk.len()), s));
    }

    fn send_all(&mut self) {
        let c = self.conn();
        let mut out = Vec::new();
        while let Some(f) = c.tx.pop() {
            out.push(f.to_vec());
        }
        self.sent.extend(out);
    }

    /// The queue went out; `Shard::resume_read` (the backlog is then 0,
    /// under half the bound). False when there is nothing to resume.
    fn resume(&mut self) -> bool {
        let c = self.conn();
        if !c.read_paused() || c.phase != Phase::Open || c.close_req().is_some() {
            return false;
        }
        self.send_all();
        let c = self.conn();
        c.set_read_paused(false);
        let mut rx = c.rx.take();
        if !rx.is_empty() {
            inbound::received_buffered(
                &mut self.app,
                &mut self.table,
                &mut self.mail,
                config(),
                self.key,
                &mut rx,
            );
        }
        self.conn().rx.put(rx);
        self.check_backpressure();
        let s = self.snapshot();
        self.steps.push((Step::Resumed, s));
        true
    }
}

/// Feed `chunks` (empty ones are skipped: a receive of 0 bytes is EOF, not
/// data) to a fresh connection, then resume while reading is paused.
pub fn run<'a>(setup: &Setup, chunks: impl IntoIterator<Item = &'a [u8]>) -> Trace {
    let mut h = Harness::new(setup);
    for chunk in chunks {
        if !chunk.is_empty() {
            h.deliver(chunk);
        }
    }
    // Each resume parses at least one frame (the backlog is then empty)
    // or stops paused no more, so this ends.
    while h.resume() {}
    h.send_all();
    let end = h.snapshot();
    Trace {
        steps: h.steps,
        sent: h.sent,
        seen: h.app.seen,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request head read when the turn's handshake budget is spent, on
    /// the main listener and on the admin listener (with `admin_budget`
    /// of its own left): `(answered, in the first line, deferred)`.
    fn head_when_the_budget_is_spent(admin: bool, admin_budget: usize) -> (bool, bool, bool) {
        let setup = Setup {
            max_message: 1 << 20,
            max_backlog_read: 1 << 20,
            max_backlog: 4 << 20,
            draining: false,
            full: false,
        };
        let mut h = Harness::new(&setup);
        h.conn().set_admin(admin);
        h.table.handshake_budget = 0;
        h.table.admin_budget = admin_budget;
        h.deliver(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let answered = h.app.seen.iter().any(|s| {
            matches!(s, Seen::Http { path, response, .. }
                if path == "/healthz" && response.starts_with(b"HTTP/1.1 200"))
        });
        let key = h.key;
        (
            answered,
            h.table.first.contains(&key),
            h.table.deferred.contains(&key),
        )
    }

    #[test]
    fn the_admin_listeners_requests_skip_a_storms_line() {
        // A storm's heads wait for the next turn's budget, and their
        // answers join the regular line behind the storm's other replies.
        assert_eq!(
            head_when_the_budget_is_spent(false, 16),
            (false, false, true)
        );
        // A probe on the admin listener is parsed at once and its answer
        // goes out in the first line (issue #11: /healthz 1.0-1.9 s late
        // through the storm before).
        assert_eq!(head_when_the_budget_is_spent(true, 16), (true, true, false));
        // Past the admin listener's own budget (a flood of requests there)
        // its heads wait like the storm's.
        assert_eq!(head_when_the_budget_is_spent(true, 0), (false, false, true));
    }
}
