mod common;

#[test]
fn healthz_and_metrics() {
    let b = common::Broker::start(&["--shards", "2"]);
    assert_eq!(
        common::http_get(b.addr, "/healthz"),
        (200, "ok\n".to_string())
    );
    let (status, body) = common::http_get(b.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE ringfan_connections_open gauge"),
        "{body}"
    );
    assert!(b.metric("ringfan_connections_accepted_total") >= 2);
}
