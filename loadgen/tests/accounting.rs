//! The load generator's counters are exact: against the real broker (in
//! process, real sockets) a known number of publishes gives exactly the
//! known number of deliveries; against a broker that loses, duplicates and
//! reorders on purpose, each fault is reported as what it is.

mod fake_broker;
mod real_broker;

use loadgen::plan::{Data, Endpoint, Plan, Publishing, Scenario, Via};
use loadgen::run::{self, Options};
use real_broker::ringfan;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

fn plan(
    target: SocketAddr,
    scenario: Scenario,
    subs_per_topic: Vec<u64>,
    publishers: u64,
    rate: f64,
    duration: Duration,
) -> Plan {
    let mut p = Plan {
        scenario,
        endpoints: vec![Endpoint::ws(target, "/ws")],
        publish_endpoints: Vec::new(),
        topics: (0..subs_per_topic.len())
            .map(|i| format!("acct.{i}"))
            .collect(),
        subs_per_topic,
        subscribers: 0,
        publishers,
        echoers: 0,
        rate,
        window: 8,
        payload: 100,
        data: Data::Pad,
        publishing: Publishing::Uniform,
        via: Via::Ws,
        burst: None,
        warmup: Duration::ZERO,
        duration,
        grace: Duration::from_secs(10),
        hold: Duration::ZERO,
        sources: Vec::new(),
        source_ports: None,
        shards: 2,
        connect_window: 64,
        deflate: false,
        connect_timeout: Duration::from_secs(10),
        tick: Duration::from_millis(1),
        snapshot: false,
        storm: None,
        held_apart: false,
        auth: Default::default(),
        prefix: Vec::new(),
    };
    p.seal();
    p
}

fn opts(target: SocketAddr) -> Options {
    Options {
        progress: false,
        server_pid: None,
        params: serde_json::Value::Null,
        target: format!("ws://{target}/ws"),
    }
}

#[test]
fn ten_publishes_to_a_hundred_subscribers_are_a_thousand_deliveries() {
    let server = ringfan(2);
    let addr = server.local_addr().unwrap();
    // 10 messages a second for one second: publishes at 0.0, 0.1 … 0.9 s.
    let p = plan(
        addr,
        Scenario::Fanout,
        vec![100],
        1,
        10.0,
        Duration::from_secs(1),
    );
    let r = run::run(p, opts(addr)).expect("run");
    server.shutdown();
    server.join();
    let c = &r.counts;
    assert_eq!(c.connections_opened, 101, "{:?}", r.problems);
    assert_eq!(c.subscribed, 100);
    assert_eq!(c.published, 10);
    assert_eq!(c.acked, 10);
    assert_eq!(c.expected_deliveries, 1000);
    assert_eq!(c.delivered, 1000);
    assert_eq!(
        (c.lost, c.duplicated, c.out_of_order, c.gaps, c.errors),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(r.latency.count, 1000, "every delivery was timed");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn quote_data_is_timed_and_sized_like_any_other() {
    let server = ringfan(1);
    let addr = server.local_addr().unwrap();
    let mut p = plan(
        addr,
        Scenario::Fanout,
        vec![20, 20],
        1,
        20.0,
        Duration::from_secs(1),
    );
    p.data = Data::Quote;
    let r = run::run(p, opts(addr)).expect("run");
    server.shutdown();
    server.join();
    let c = &r.counts;
    assert_eq!((c.published, c.delivered, c.lost), (20, 400, 0));
    assert_eq!(r.latency.count, 400, "every delivery was timed");
    let size = r.extra["data_bytes_per_delivery"];
    assert!((60.0..200.0).contains(&size), "{size}");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn closed_loop_over_many_topics_delivers_exactly_what_was_expected() {
    let server = ringfan(2);
    let addr = server.local_addr().unwrap();
    // 50 topics with 1..=50 subscribers spread unevenly, 3 publishers.
    let subs: Vec<u64> = (0..50).map(|i| 1 + i % 7).collect();
    let total_subs: u64 = subs.iter().sum();
    let p = plan(
        addr,
        Scenario::Fanout,
        subs,
        3,
        0.0,
        Duration::from_millis(500),
    );
    let r = run::run(p, opts(addr)).expect("run");
    server.shutdown();
    server.join();
    let c = &r.counts;
    assert_eq!(c.subscribed, total_subs);
    assert!(c.published > 100, "closed loop published {}", c.published);
    assert_eq!(c.acked, c.published);
    assert_eq!(c.delivered, c.expected_deliveries);
    assert_eq!((c.lost, c.duplicated, c.out_of_order), (0, 0, 0));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn echo_round_trips_are_counted_one_for_one() {
    let server = ringfan(1);
    let addr = server.local_addr().unwrap();
    let mut p = plan(
        addr,
        Scenario::Echo,
        Vec::new(),
        0,
        200.0,
        Duration::from_secs(1),
    );
    p.echoers = 4;
    let r = run::run(p, opts(addr)).expect("run");
    server.shutdown();
    server.join();
    let c = &r.counts;
    assert_eq!(c.connections_opened, 4);
    assert_eq!(c.published, 200);
    assert_eq!(c.delivered, 200);
    assert_eq!(c.lost, 0);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn connections_that_fail_are_counted_with_the_reason() {
    // A port nobody listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut p = plan(
        addr,
        Scenario::Fanout,
        vec![5],
        0,
        0.0,
        Duration::from_millis(100),
    );
    p.grace = Duration::from_millis(100);
    let r = run::run(p, opts(addr)).expect("run");
    assert_eq!(r.counts.connect_failures, 5);
    assert_eq!(r.counts.connections_opened, 0);
    assert!(
        r.problems.iter().any(|p| p.contains("refused")),
        "{:?}",
        r.problems
    );
    let why = r.aborted.as_deref().unwrap_or_default();
    assert!(why.contains("5 of 5 attempts failed"), "{why}");
    assert!(why.contains("refused"), "{why}");

    // A broker that refuses the handshake: the status is the reason.
    let server = ringfan(1);
    let addr = server.local_addr().unwrap();
    let mut p = plan(
        addr,
        Scenario::Fanout,
        vec![3],
        0,
        0.0,
        Duration::from_millis(100),
    );
    p.endpoints[0].path = "/nope".into();
    p.grace = Duration::from_millis(100);
    let r = run::run(p, opts(addr)).expect("run");
    server.shutdown();
    server.join();
    assert_eq!(r.counts.connect_failures, 3);
    assert!(
        r.problems.iter().any(|p| p.contains("HTTP 404")),
        "{:?}",
        r.problems
    );
    let why = r.aborted.as_deref().unwrap_or_default();
    assert!(why.contains("HTTP 404"), "{why}");
}

// ---------------------------------------------------------------------------
// A broker that misbehaves on purpose (fake_broker): it acknowledges
// subscriptions and publishes like ringfan, but its n-th message to
// subscribers follows a script (skip a seq, repeat one, swap two).

/// Seqs the faulty broker sends for publishes 1..=10: 3 never sent (lost),
/// 5 twice (duplicate), 7 and 8 swapped (out of order).
const SCRIPT: [&[u64]; 10] = [
    &[1],
    &[2],
    &[],
    &[4],
    &[5, 5],
    &[6],
    &[],
    &[8, 7],
    &[9],
    &[10],
];

#[test]
fn a_broker_that_loses_duplicates_and_reorders_is_reported_as_such() {
    let addr = fake_broker::start(|n| SCRIPT.get(n).map_or(Vec::new(), |s| s.to_vec()));
    let mut p = plan(
        addr,
        Scenario::Fanout,
        vec![1],
        1,
        10.0,
        Duration::from_secs(1),
    );
    p.shards = 1;
    p.grace = Duration::from_millis(500);
    let r = run::run(p, opts(addr)).expect("run");
    let c = &r.counts;
    assert_eq!(c.published, 10);
    assert_eq!(c.expected_deliveries, 10);
    // 1,2,4,5,5,6,8,7,9,10: ten frames, one a duplicate, so nine distinct
    // messages of the ten published.
    assert_eq!(c.delivered, 10);
    assert_eq!(c.duplicated, 1);
    assert_eq!(c.out_of_order, 1);
    assert_eq!(c.gaps, 2, "2->4 and 6->8");
    assert_eq!(c.lost, 1);
    let all = r.problems.join("\n");
    for word in ["dropped", "more than once", "out of order"] {
        assert!(all.contains(word), "no {word:?} in:\n{all}");
    }
}
