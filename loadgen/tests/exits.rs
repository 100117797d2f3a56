//! The binary's exit status says whether a run can be trusted, without
//! flags: the real `ringfan-loadgen` against a scripted broker on loopback.

mod bounded;
mod fake_broker;

use bounded::run_bounded;
use std::net::{SocketAddr, TcpListener};
use std::process::Output;
use std::time::Duration;

/// One subscriber and one publisher at 10 publishes a second for one
/// second: ten publishes, ten deliveries owed.
fn fanout(addr: SocketAddr, extra: &[&str]) -> Output {
    let url = format!("ws://{addr}/ws");
    let mut args = vec![
        "fanout",
        "--url",
        &url,
        "--subscribers",
        "1",
        "--publishers",
        "1",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--grace",
        "500ms",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let (out, took) = run_bounded(&args, Duration::from_secs(20));
    assert!(took < Duration::from_secs(20), "killed after {took:?}");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the exit status; the table (stdout).
fn exited(out: &Output, code: i32) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

/// Publish 3 (seq 3) is never delivered.
fn loses_seq_3(n: usize) -> Vec<u64> {
    if n == 2 {
        Vec::new()
    } else {
        vec![n as u64 + 1]
    }
}

#[test]
fn a_broker_that_loses_a_message_fails_the_run() {
    let out = fanout(fake_broker::start(loses_seq_3), &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("lost 1"), "{stdout}");
    assert!(
        stdout.contains("broker dropped 1 of 10 expected deliveries"),
        "{stdout}"
    );
    assert!(stderr.contains("exit status 3"), "{stderr}");
}

#[test]
fn report_only_reports_the_loss_and_exits_zero() {
    let out = fanout(fake_broker::start(loses_seq_3), &["--report-only"]);
    let stdout = exited(&out, 0);
    assert!(stdout.contains("broker dropped 1 of 10"), "{stdout}");
}

#[test]
fn a_broker_that_loses_nothing_passes_the_run() {
    let out = fanout(fake_broker::start(|n| vec![n as u64 + 1]), &[]);
    let stdout = exited(&out, 0);
    assert!(stdout.contains("delivered 10"), "{stdout}");
    assert!(stdout.contains("lost 0"), "{stdout}");
    assert!(stdout.contains("problems     none"), "{stdout}");
}

#[test]
fn a_refused_port_stops_the_run_at_once() {
    // A port that was just free: nothing listens there now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("ws://{addr}/ws");
    // The default run would take 10 s + 2 s warm-up + grace.
    let (out, took) = run_bounded(
        &["fanout", "--url", &url, "--quiet"],
        Duration::from_secs(20),
    );
    let stderr = text(&out.stderr);
    assert!(took < Duration::from_secs(1), "took {took:?}: {stderr}");
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no connection to {addr} could be established (1,001 of 1,001 attempts failed, none opened): connect: ECONNREFUSED (Connection refused)"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no table for a run that never ran");
}
