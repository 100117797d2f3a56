//! Cross-shard mail through the real runtime: a relay app forwards every
//! message to every shard, which sends it to its own connections. The tick
//! is set to a minute, so a message reaches a sleeping shard only if the
//! doorbell (IORING_OP_MSG_RING) wakes it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ringfan::runtime::{Accepted, App, Config, ConnId, HttpReply, Io, Server, ShardStats};
use ringfan::ws::handshake::{Request, Upgrade};
use ringfan::ws::{frame, http, Message, OpCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

struct Relay {
    conns: Vec<ConnId>,
    per_shard: Arc<Vec<AtomicUsize>>,
}

impl Relay {
    fn deliver(&self, io: &mut Io<'_, Bytes>, frame: &Bytes) {
        for &c in &self.conns {
            io.send(c, frame.clone());
        }
    }
}

impl App for Relay {
    type Mail = Bytes;

    fn upgrade(
        &mut self,
        io: &mut Io<'_, Bytes>,
        conn: ConnId,
        _u: &Upgrade,
    ) -> Result<Accepted, Bytes> {
        self.conns.push(conn);
        self.per_shard[io.shard()].fetch_add(1, Ordering::SeqCst);
        Ok(Accepted {
            max_message: 1 << 20,
        })
    }

    fn message(&mut self, io: &mut Io<'_, Bytes>, _conn: ConnId, msg: Message<'_>) {
        // Framed once; the same bytes go to every connection on every shard.
        let f = frame::server_frame(OpCode::Text, msg.payload);
        self.deliver(io, &f);
        for to in 0..io.shards() {
            if to != io.shard() {
                io.post(to, f.clone());
            }
        }
    }

    fn closed(&mut self, io: &mut Io<'_, Bytes>, conn: ConnId) {
        self.conns.retain(|&c| c != conn);
        self.per_shard[io.shard()].fetch_sub(1, Ordering::SeqCst);
    }

    fn http(
        &mut self,
        io: &mut Io<'_, Bytes>,
        _conn: ConnId,
        _request: &Request,
        _body: &[u8],
    ) -> HttpReply {
        let mut body = String::new();
        ShardStats::render(io.stats(), &mut body);
        HttpReply::Close(http::response(
            200,
            &[],
            "text/plain",
            body.as_bytes(),
            true,
        ))
    }

    fn mail(&mut self, io: &mut Io<'_, Bytes>, _from: usize, frame: Bytes) {
        self.deliver(io, &frame);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn messages_cross_shards_and_wake_sleeping_shards() {
    let per_shard: Arc<Vec<AtomicUsize>> = Arc::new((0..2).map(|_| AtomicUsize::new(0)).collect());
    let ps = per_shard.clone();
    let config = Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards: 2,
        pin: false,
        tick: Duration::from_secs(60),
        ..Config::default()
    };
    let server = Server::start(config, move |_| Relay {
        conns: Vec::new(),
        per_shard: ps.clone(),
    })
    .expect("server starts");
    let url = format!("ws://{}/echo", server.local_addr().expect("listening"));

    // Connect until both shards hold connections (SO_REUSEPORT hashes
    // each connection to a shard).
    let mut clients = Vec::new();
    for _ in 0..200 {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        clients.push(ws);
        let want = clients.len();
        tokio::time::timeout(Duration::from_secs(5), async {
            while per_shard
                .iter()
                .map(|c| c.load(Ordering::SeqCst))
                .sum::<usize>()
                < want
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("server registers the connection");
        if clients.len() >= 8 && per_shard.iter().all(|c| c.load(Ordering::SeqCst) > 0) {
            break;
        }
    }
    assert!(
        per_shard.iter().all(|c| c.load(Ordering::SeqCst) > 0),
        "connections never landed on both shards"
    );

    // Let both shards go to sleep in io_uring_enter.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let n = clients.len();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(WsMessage::text(format!("from {i}")))
            .await
            .expect("send");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(5), c.next())
                .await
                .unwrap_or_else(|_| panic!("client {i} got only {} of {n}", got.len()))
                .expect("stream open")
                .expect("message");
            got.push(m.into_text().expect("text").to_string());
        }
        got.sort();
        let mut want: Vec<String> = (0..n).map(|j| format!("from {j}")).collect();
        want.sort();
        assert_eq!(got, want, "client {i}");
    }
    let stats = server.stats();
    let mail: u64 = stats
        .iter()
        .map(|s| s.mail_received_total.load(Ordering::Relaxed))
        .sum();
    let rung: u64 = stats
        .iter()
        .map(|s| s.doorbells_received_total.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        mail, n as u64,
        "every message crossed to the other shard once"
    );
    assert!(rung > 0, "no doorbell was needed: the shards never slept?");
}
