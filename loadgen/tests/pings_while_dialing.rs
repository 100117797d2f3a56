//! A client shard that is still opening connections must keep answering
//! pings on those it has: the issue-11 run lost 180,021 of 243,724
//! connections to pong deadlines while its generator sat in connects.
//!
//! Both ends are ringfan's runtime over real loopback sockets: a server
//! shard that pings every connection silent for 1 s and closes those that
//! do not answer within 1 s, and a client shard (the load generator's
//! mode) with 64 receive buffers at most, opening 3,000 connections at
//! 1,000/s, so that the first ones are pinged, several times, while the
//! last are still being dialed.

use ringfan::runtime::{Accepted, App, Config, ConnId, Dial, Io, Server};
use ringfan::ws::handshake::Upgrade;
use ringfan::ws::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: u64 = 3_000;
/// Dials per 10 ms tick: 1,000/s, so dialing lasts ~3 s, longer than a
/// ping plus its pong deadline (2 s).
const PER_TICK: u64 = 10;

/// The server: accepts every upgrade, says nothing; the runtime pings.
struct Quiet;

impl App for Quiet {
    type Mail = ();
    fn message(&mut self, _: &mut Io<'_, ()>, _: ConnId, _: Message<'_>) {}
    fn closed(&mut self, _: &mut Io<'_, ()>, _: ConnId) {}
    fn upgrade(
        &mut self,
        _: &mut Io<'_, ()>,
        _: ConnId,
        _: &Upgrade,
    ) -> Result<Accepted, bytes::Bytes> {
        Ok(Accepted { max_message: 1024 })
    }
}

#[derive(Default)]
struct Counts {
    dialed: AtomicU64,
    opened: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
}

/// The client: dials PER_TICK connections a tick until CONNECTIONS.
struct Dialer {
    to: std::net::SocketAddr,
    counts: Arc<Counts>,
}

impl App for Dialer {
    type Mail = ();
    fn message(&mut self, _: &mut Io<'_, ()>, _: ConnId, _: Message<'_>) {}
    fn closed(&mut self, _: &mut Io<'_, ()>, _: ConnId) {
        self.counts.closed.fetch_add(1, Ordering::Relaxed);
    }
    fn connected(&mut self, _: &mut Io<'_, ()>, _: ConnId) {
        self.counts.opened.fetch_add(1, Ordering::Relaxed);
    }
    fn connect_failed(&mut self, _: &mut Io<'_, ()>, _: ConnId, why: &str) {
        eprintln!("connect failed: {why}");
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
    }
    fn tick(&mut self, io: &mut Io<'_, ()>) {
        for _ in 0..PER_TICK {
            if self.counts.dialed.load(Ordering::Relaxed) >= CONNECTIONS {
                return;
            }
            self.counts.dialed.fetch_add(1, Ordering::Relaxed);
            io.connect(Dial {
                to: self.to,
                from: None,
                path: "/ws".into(),
                protocols: Vec::new(),
                headers: Vec::new(),
                max_message: 1024,
                tls: None,
            });
        }
    }
}

fn sum(server: &Server, f: impl Fn(&ringfan::runtime::ShardStats) -> &AtomicU64) -> u64 {
    server
        .stats()
        .iter()
        .map(|s| f(s).load(Ordering::Relaxed))
        .sum()
}

#[test]
fn every_connection_answers_pings_while_more_are_dialed() {
    let server = Server::start(
        Config {
            listen: Some("127.0.0.1:0".parse().expect("address")),
            shards: 1,
            pin: false,
            idle_ping: Duration::from_secs(1),
            pong_timeout: Duration::from_secs(1),
            ..Config::default()
        },
        |_| Quiet,
    )
    .expect("server starts");
    let to = server.local_addr().expect("server address");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let client = Server::start(
        Config {
            listen: None,
            shards: 1,
            pin: false,
            tick: Duration::from_millis(10),
            handshake_timeout: Duration::from_secs(10),
            // The client pings no one: only the server's pings are tested.
            idle_ping: Duration::from_secs(3600),
            pong_timeout: Duration::from_secs(60),
            // Far fewer receive buffers than connections: each ping takes
            // one, and a shard out of them must still answer.
            recv_buffers: 16,
            recv_buffers_max: 64,
            ..Config::default()
        },
        move |_| Dialer {
            to,
            counts: c.clone(),
        },
    )
    .expect("client starts");

    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    // While dialing: once connections are 2 s old (pinged, and past their
    // pong deadline), none may have been closed.
    let mut checked_while_dialing = false;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let (opened, failed) = (
            counts.opened.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        );
        assert_eq!(failed, 0, "connections failed");
        assert_eq!(
            sum(&server, |s| &s.timeouts_total),
            0,
            "the server closed a connection on a deadline ({opened} open, {:?} in)",
            start.elapsed()
        );
        if opened + failed >= CONNECTIONS {
            break;
        }
        if start.elapsed() > Duration::from_millis(2_500) && opened > 0 {
            checked_while_dialing = true;
        }
        assert!(Instant::now() < deadline, "only {opened} opened in 30 s");
    }
    let dial_time = start.elapsed();
    assert!(
        checked_while_dialing,
        "dialing took {dial_time:?}: too short for a ping and its deadline to fall inside it"
    );
    // Every connection idle long enough to be pinged and timed out twice.
    std::thread::sleep(Duration::from_secs(4));
    let open_at_server = sum(&server, |s| &s.connections_open);
    let timeouts = sum(&server, |s| &s.timeouts_total);
    let enobufs = sum(&client, |s| &s.recv_enobufs_total);
    // Frames the client sent: one HTTP request each, then its pongs.
    let client_frames = sum(&client, |s| &s.frames_sent_total);
    let closed = counts.closed.load(Ordering::Relaxed);
    client.shutdown();
    client.join();
    server.shutdown();
    server.join();
    assert_eq!(timeouts, 0, "pong deadlines fired");
    assert_eq!(
        open_at_server, CONNECTIONS,
        "connections lost at the server"
    );
    assert_eq!(closed, 0, "connections closed at the client");
    assert!(
        client_frames >= 3 * CONNECTIONS,
        "{client_frames} frames sent: a request and at least two pongs per connection expected"
    );
    eprintln!(
        "dialed {CONNECTIONS} in {dial_time:?}; {client_frames} frames sent; receive buffers ran out {enobufs} times"
    );
}
