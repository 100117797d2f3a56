//! A storm of handshakes is parsed a budget per loop turn
//! (`--handshakes-per-turn`); the rest wait with their bytes kept and
//! upgrade in later turns: nothing is lost, and every connection is fully
//! open (issue #11).

mod common;

use common::wsraw::{bounded, masked, metric, upgrade_request, RawWs, OP_PING, OP_PONG};
use common::Broker;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_past_the_turn_budget_upgrades_every_connection() {
    const N: usize = 200;
    let b = Broker::start(&["--shards", "1", "--handshakes-per-turn", "2"]);
    // Connect them all first, then send every request at once, so that
    // one turn receives far more heads than its budget.
    let mut streams = Vec::with_capacity(N);
    for _ in 0..N {
        streams.push(
            tokio::net::TcpStream::connect(b.addr)
                .await
                .expect("connect"),
        );
    }
    let req = upgrade_request("/ws", &[]);
    for s in streams.iter_mut() {
        s.write_all(req.as_bytes()).await.expect("request");
    }
    let mut conns = Vec::with_capacity(N);
    for stream in streams {
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let head = bounded(20, "upgrade", ws.read_head()).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        conns.push(ws);
    }
    assert!(
        metric(b.addr, "ringfan_handshakes_deferred_total").await > 0,
        "the budget never deferred a head: the test did not test it"
    );
    // Every one is really open.
    for ws in conns.iter_mut() {
        ws.send(&masked(OP_PING, b"x")).await;
        let f = bounded(10, "pong", ws.frame()).await;
        assert_eq!(f.opcode, OP_PONG);
    }
}
