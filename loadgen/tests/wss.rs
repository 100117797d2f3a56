//! Every scenario over `wss://`: the real `ringfan-loadgen` binary against
//! the real broker (in process, a TLS listener with a certificate for
//! `localhost` from a CA made at test time). Each run is small (tens of
//! connections, about a second) and must open every connection, lose
//! nothing, and show up in the broker's TLS handshake counter. Then the
//! ways `wss://` is refused: a CA that did not sign the server's
//! certificate (a clean failure, not a hang), and the usage errors.

mod bounded;
mod real_broker;

use bounded::run_bounded;
use real_broker::{ringfan_tls, TlsBroker};
use serde_json::Value;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// No run here should take more than a few seconds; a TLS stall would
/// otherwise hang the suite (the default connect timeout is 30 s).
const LIMIT: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `scenario` against `broker` over `wss://localhost:PORT{path}` with
/// `trust` (`--ca FILE` or `--insecure`); asserts exit 0 and returns the
/// JSON report.
fn run_wss(broker: &TlsBroker, scenario: &str, path: &str, trust: &[&str], args: &[&str]) -> Value {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "lg-wss-it-{}-{scenario}-{}.json",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let url = broker.url(path);
    let mut all = vec![scenario, "--url", &url];
    all.extend_from_slice(trust);
    all.extend_from_slice(args);
    let json_s = json.to_str().expect("a UTF-8 temp path");
    all.extend_from_slice(&["--json", json_s, "--quiet"]);
    let (out, took) = run_bounded(&all, LIMIT);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(took < LIMIT, "{scenario}: killed after {took:?}\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{scenario}:\n{stdout}\n{stderr}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    report
}

/// Every connection the scenario meant to open opened, none failed, and
/// nothing owed was lost, duplicated or reordered. The connection count.
fn whole(report: &Value) -> u64 {
    let c = &report["counts"];
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    let target = c["connections_target"].as_u64().expect("a target");
    assert!(target > 0, "{report}");
    assert_eq!(c["connections_opened"], target, "{report}");
    assert_eq!(c["connect_failures"], 0, "{report}");
    assert!(c["delivered"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{report}");
    for k in ["lost", "duplicated", "out_of_order", "errors"] {
        assert_eq!(c[k], 0, "{k}: {report}");
    }
    target
}

fn ca_flag(broker: &TlsBroker) -> [&str; 2] {
    ["--ca", broker.ca.to_str().expect("a UTF-8 temp path")]
}

/// Runs one scenario with `--ca` against a fresh TLS-only broker and
/// checks it whole, and that the broker counted at least one TLS
/// handshake per connection. Returns the report.
fn scenario_over_wss(scenario: &str, path: &str, args: &[&str]) -> Value {
    let broker = ringfan_tls(1, false);
    let report = run_wss(&broker, scenario, path, &ca_flag(&broker), args);
    let handshakes = broker.handshakes();
    let failed = broker.failed_handshakes();
    broker.stop();
    let opened = whole(&report);
    assert!(
        handshakes >= opened,
        "{scenario}: {handshakes} TLS handshakes for {opened} connections"
    );
    assert_eq!(failed, 0, "{scenario}");
    report
}

#[test]
fn fanout_over_wss_loses_nothing() {
    let r = scenario_over_wss(
        "fanout",
        "/ws",
        &[
            "--subscribers",
            "20",
            "--publishers",
            "2",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--grace",
            "2s",
        ],
    );
    assert_eq!(r["counts"]["connections_opened"], 22, "{r}");
    assert_eq!(r["counts"]["expected_deliveries"], 400, "{r}");
}

#[test]
fn feed_over_wss_loses_nothing() {
    // 20 symbols at 100 updates/s, a 2x burst in the middle second.
    let r = scenario_over_wss(
        "feed",
        "/ws",
        &[
            "--symbols",
            "20",
            "--subscribers",
            "20",
            "--publishers",
            "2",
            "--rate",
            "100",
            "--burst",
            "2",
            "--burst-at",
            "300ms",
            "--burst-len",
            "300ms",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--grace",
            "2s",
        ],
    );
    assert_eq!(r["counts"]["connections_opened"], 22, "{r}");
}

#[test]
fn echo_over_wss_round_trips_every_message() {
    let r = scenario_over_wss(
        "echo",
        "/echo",
        &[
            "--connections",
            "10",
            "--rate",
            "100",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
    );
    let c = &r["counts"];
    assert_eq!(c["connections_opened"], 10, "{r}");
    assert_eq!(c["published"], 100, "{r}");
}

#[test]
fn conns_over_wss_holds_every_connection_and_broadcasts_once() {
    let r = scenario_over_wss(
        "conns",
        "/ws",
        &["--connections", "40", "--hold", "500ms", "--grace", "2s"],
    );
    // 40 subscribers and the publisher of the one broadcast.
    assert_eq!(r["counts"]["connections_opened"], 41, "{r}");
    assert_eq!(r["counts"]["delivered"], 40, "{r}");
}

#[test]
fn storm_over_wss_brings_every_dropped_subscriber_back() {
    let broker = ringfan_tls(1, false);
    let report = run_wss(
        &broker,
        "storm",
        "/ws",
        &ca_flag(&broker),
        &[
            "--connections",
            "30",
            "--drop",
            "10",
            "--topics",
            "5",
            "--rate",
            "200",
            "--warmup",
            "200ms",
            "--duration",
            "1500ms",
            "--drop-at",
            "500ms",
            "--grace",
            "2s",
        ],
    );
    let handshakes = broker.handshakes();
    broker.stop();
    let opened = whole(&report);
    let extra = &report["extra"];
    assert_eq!(extra["storm_dropped"], 10.0, "{report}");
    assert_eq!(extra["storm_resubscribed"], 10.0, "{report}");
    assert_eq!(extra["storm_reconnect_failures"], 0.0, "{report}");
    // The 10 reconnections are TLS handshakes too (resumed, mostly).
    assert!(
        handshakes >= opened + 10,
        "{handshakes} TLS handshakes for {opened} connections and 10 reconnections"
    );
}

#[test]
fn insecure_trusts_the_server_without_a_ca_beside_a_plain_listener() {
    // A broker with both listeners: the TLS one is the one used.
    let broker = ringfan_tls(1, true);
    assert!(broker.server.local_addr().is_some());
    let report = run_wss(
        &broker,
        "fanout",
        "/ws",
        &["--insecure"],
        &[
            "--subscribers",
            "5",
            "--publishers",
            "1",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--warmup",
            "0s",
            "--grace",
            "2s",
        ],
    );
    let handshakes = broker.handshakes();
    broker.stop();
    let opened = whole(&report);
    assert_eq!(opened, 6, "{report}");
    assert!(handshakes >= opened, "{handshakes} for {opened}");
}

/// Runs fanout against a TLS-only broker trusting a CA that did not sign
/// its certificate; the output, and the TLS handshakes the broker
/// completed.
fn run_with_a_stranger_ca() -> (Output, u64) {
    let broker = ringfan_tls(1, false);
    let url = broker.url("/ws");
    let stranger = broker.stranger_ca.to_str().expect("a UTF-8 temp path");
    let (out, took) = run_bounded(
        &[
            "fanout",
            "--url",
            &url,
            "--ca",
            stranger,
            "--subscribers",
            "3",
            "--publishers",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--quiet",
        ],
        LIMIT,
    );
    let handshakes = broker.handshakes();
    broker.stop();
    assert!(took < LIMIT, "killed after {took:?}: {}", text(&out.stderr));
    (out, handshakes)
}

#[test]
fn a_ca_that_did_not_sign_the_certificate_fails_the_run_cleanly() {
    let (out, handshakes) = run_with_a_stranger_ca();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no connection to"), "{stderr}");
    assert!(out.stdout.is_empty(), "no table for a run that never ran");
    // The client refuses the certificate before its Finished, so the
    // broker completes no handshake.
    assert_eq!(handshakes, 0, "{stderr}");
}

/// The reason reaches the report: the runtime's `tls::fail` records the
/// rustls error as the outbound connection's error ("TLS: invalid peer
/// certificate: UnknownIssuer"); before it did, the load generator was
/// told only "connection closed during the handshake".
#[test]
fn a_ca_that_did_not_sign_the_certificate_is_named_as_the_reason() {
    let (out, _) = run_with_a_stranger_ca();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// Runs the binary with `args` against a port nothing listens on (the
/// arguments are refused before any connection); asserts exit 2 and
/// returns stderr.
fn usage_error(args: &[&str]) -> String {
    let (out, took) = run_bounded(args, LIMIT);
    let stderr = text(&out.stderr);
    assert!(took < LIMIT, "killed after {took:?}: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    stderr
}

#[test]
fn ca_with_a_ws_url_is_a_usage_error() {
    // The file is never read: the URL is refused first.
    for flags in [&["--ca", "/nonexistent-ca.pem"][..], &["--insecure"]] {
        let mut args = vec!["fanout", "--url", "ws://127.0.0.1:9/ws"];
        args.extend_from_slice(flags);
        let stderr = usage_error(&args);
        assert!(stderr.contains("wss://"), "{stderr}");
    }
}

#[test]
fn wss_without_ca_or_insecure_is_a_usage_error_naming_both() {
    for scenario in ["fanout", "feed", "echo", "conns", "storm"] {
        let stderr = usage_error(&[scenario, "--url", "wss://localhost:9/ws"]);
        assert!(
            stderr.contains("--ca") && stderr.contains("--insecure"),
            "{scenario}: {stderr}"
        );
    }
}
