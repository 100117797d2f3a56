//! `--publish-via http`: the real `ringfan-loadgen` binary publishing with
//! `POST /publish` to the real broker (in process, real sockets), one
//! message a request and batches, closed and open loop. Each run must
//! lose nothing, and the messages it counts as published must be exactly
//! what the broker numbered (its `ringfan_publishes_total` on /metrics).
//! Then the refusals: a 400 for every request is counted as such, and the
//! combinations the generator cannot run are refused with a clear
//! message.

mod bounded;
mod real_broker;

use bounded::run_bounded;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// No run here takes more than a few seconds; a stall would otherwise
/// hang the suite.
const LIMIT: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args` against `addr` with a JSON report; the exit and the report.
fn run(addr: SocketAddr, args: &[&str]) -> (Output, Value) {
    run_url(&format!("ws://{addr}/ws"), args)
}

/// Runs `args` against `url` with a JSON report; the exit and the report.
fn run_url(url: &str, args: &[&str]) -> (Output, Value) {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "lg-http-it-{}-{}.json",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let json_s = json.to_str().expect("a UTF-8 temp path");
    let mut all = args.to_vec();
    all.extend_from_slice(&["--url", url, "--json", json_s, "--quiet"]);
    let (out, took) = run_bounded(&all, LIMIT);
    assert!(took < LIMIT, "killed after {took:?}\n{}", text(&out.stderr));
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let _ = std::fs::remove_file(&json);
    (out, report)
}

/// The broker's `ringfan_publishes_total`, all shards, from /metrics.
fn publishes_total(addr: SocketAddr) -> u64 {
    let mut s = TcpStream::connect(addr).expect("connect for /metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read /metrics");
    let lines: Vec<u64> = body
        .lines()
        .filter(|l| l.starts_with("ringfan_publishes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(!lines.is_empty(), "no ringfan_publishes_total in\n{body}");
    lines.iter().sum()
}

/// A clean run: exit 0, no problem, every owed delivery delivered once,
/// every message sent published. The number published.
fn clean(out: &Output, report: &Value) -> u64 {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let c = &report["counts"];
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let published = c["published"].as_u64().expect("published");
    assert!(published > 0, "{report}");
    assert_eq!(c["acked"], published, "{report}");
    assert!(c["delivered"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{report}");
    for k in [
        "lost",
        "duplicated",
        "out_of_order",
        "errors",
        "not_published",
    ] {
        assert_eq!(c[k], 0, "{k}: {report}");
    }
    // Only the subscribers are WebSocket connections.
    assert_eq!(c["connections_target"], c["connections_opened"], "{report}");
    published
}

fn fanout_http(addr: SocketAddr, extra: &[&str]) -> (Output, Value) {
    let mut args = vec![
        "fanout",
        "--subscribers",
        "40",
        "--topics",
        "20",
        "--publish-via",
        "http",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--window",
        "8",
    ];
    args.extend_from_slice(extra);
    run(addr, &args)
}

#[test]
fn single_messages_over_http_lose_nothing_and_match_the_broker_count() {
    // Two shards: half the topics are numbered by the shard that did not
    // take the request, so pipelined answers wait on the other shard.
    let server = real_broker::ringfan(2);
    let addr = server.local_addr().expect("a plain listener");
    let (out, report) = fanout_http(addr, &[]);
    let published = clean(&out, &report);
    assert_eq!(report["extra"]["http_batch"], 1.0, "{report}");
    assert_eq!(report["counts"]["connections_target"], 40, "{report}");
    assert_eq!(publishes_total(addr), published);
    server.shutdown();
    server.join();
}

#[test]
fn batches_of_ten_over_http_lose_nothing_and_match_the_broker_count() {
    let server = real_broker::ringfan(2);
    let addr = server.local_addr().expect("a plain listener");
    let (out, report) = fanout_http(addr, &["--batch", "10", "--publishers", "2"]);
    let published = clean(&out, &report);
    assert_eq!(report["extra"]["http_batch"], 10.0, "{report}");
    assert_eq!(report["extra"]["http_publishers"], 2.0, "{report}");
    // Closed loop sends full batches only.
    assert_eq!(published % 10, 0, "{report}");
    assert_eq!(publishes_total(addr), published);
    server.shutdown();
    server.join();
}

#[test]
fn an_open_loop_feed_over_http_keeps_its_schedule_and_loses_nothing() {
    let server = real_broker::ringfan(1);
    let addr = server.local_addr().expect("a plain listener");
    let (out, report) = run(
        addr,
        &[
            "feed",
            "--symbols",
            "50",
            "--subscribers",
            "50",
            "--publishers",
            "2",
            "--rate",
            "2000",
            "--burst",
            "1",
            "--publish-via",
            "http",
            "--batch",
            "5",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    );
    let published = clean(&out, &report);
    // 2,000 a second for a second, give or take the schedule's ends.
    assert!((1_900..=2_100).contains(&published), "{report}");
    assert!(
        report["send_lag"]["count"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(publishes_total(addr), published);
    server.shutdown();
    server.join();
}

#[test]
fn a_wss_url_publishes_over_https_to_the_same_port() {
    // TLS only (no plain listener): the publishes can only have come
    // over https.
    let broker = real_broker::ringfan_tls(1, false);
    let ca = broker.ca.to_str().expect("a UTF-8 temp path").to_string();
    let (out, report) = run_url(
        &broker.url("/ws"),
        &[
            "fanout",
            "--subscribers",
            "10",
            "--topics",
            "5",
            "--publish-via",
            "http",
            "--batch",
            "10",
            "--window",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--ca",
            &ca,
        ],
    );
    clean(&out, &report);
    // Ten subscribers and the publisher, each a TLS handshake.
    assert!(broker.handshakes() >= 11, "{}", broker.handshakes());
    broker.stop();
}

#[test]
fn refused_requests_are_counted_by_status_and_owe_nothing() {
    // Topics `*.N`: a valid subscription pattern, but no topic one may
    // publish to, so every request is answered 400 (and kept alive).
    let server = real_broker::ringfan(1);
    let addr = server.local_addr().expect("a plain listener");
    let (out, report) = fanout_http(addr, &["--prefix", "*", "--batch", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let c = &report["counts"];
    let refused = c["http_status"]["400"].as_u64().expect("400s counted");
    assert!(refused > 0, "{report}");
    assert_eq!(c["errors"], refused, "{report}");
    assert_eq!(c["not_published"], refused * 3, "{report}");
    assert_eq!(
        (&c["published"], &c["expected_deliveries"]),
        (&0.into(), &0.into())
    );
    let problems = report["problems"].to_string();
    assert!(problems.contains("with HTTP 400"), "{problems}");
    assert_eq!(publishes_total(addr), 0);
    server.shutdown();
    server.join();
}

#[test]
fn combinations_it_cannot_run_are_refused_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["fanout", "--batch", "10"],
            "--batch 10 needs --publish-via http",
        ),
        (
            &["fanout", "--publish-via", "http", "--batch", "0"],
            "--batch must be 1 to 10000",
        ),
        (
            &["fanout", "--publish-via", "http", "--batch", "10001"],
            "--batch must be 1 to 10000",
        ),
        (&["echo", "--publish-via", "http"], "--publish-via"),
        (&["fanout", "--publish-via", "udp"], "udp"),
    ];
    for (args, says) in cases {
        let (out, took) = run_bounded(args, LIMIT);
        assert!(took < LIMIT, "{args:?}");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
