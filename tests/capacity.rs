//! A shard whose descriptor table is nearly full keeps a few slots for
//! plain HTTP: `/healthz` and `/metrics` still answer, and a WebSocket
//! upgrade past the limit gets `503` with `Retry-After` at once, instead of
//! waiting unanswered in the listen backlog. One shard, a 40-slot table:
//! 30 upgrades, 10 slots kept.

mod common;

use common::wsraw::{metric, upgrade_request, RawWs};
use common::{http_get, Broker};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_past_capacity_get_503_while_http_still_answers() {
    let b = Broker::start(&["--shards", "1", "--max-connections-per-shard", "40"]);
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(RawWs::connect(b.addr, "/ws").await);
    }

    // The 31st upgrade is told, not left hanging.
    let (head, _) = RawWs::connect_with(b.addr, &upgrade_request("/ws", &[])).await;
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );

    // Monitoring still gets in while the WebSockets hold the table.
    let addr = b.addr;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .expect("healthz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        metric(b.addr, "ringfan_upgrades_refused_full_total").await,
        1
    );

    // A slot freed: upgrades work again.
    drop(held.pop());
    let mut reopened = false;
    for _ in 0..100 {
        let (head, ws) = RawWs::connect_with(b.addr, &upgrade_request("/ws", &[])).await;
        if head.starts_with("HTTP/1.1 101 ") {
            held.push(ws);
            reopened = true;
            break;
        }
        // The close may not have been processed yet.
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "no upgrade after a connection closed");
}
