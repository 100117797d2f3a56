//! Every scenario can run with a token (#13): the real binary, minting a
//! token per connection, against the real broker with auth off (which
//! ignores tokens: the broker with auth on is tested on its side). What
//! this shows is that a run with tokens still opens every connection and
//! loses nothing, whichever way the token goes, and that the report says
//! how the tokens were made without carrying them.

mod real_broker;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ringfan-loadgen");

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("lg-auth-it-{}-{name}", std::process::id()))
}

/// Runs `args` plus a minted token sent `via`; the JSON report.
fn run_minted(args: &[&str], via: &str) -> serde_json::Value {
    let secret = temp(&format!("secret-{via}"));
    std::fs::File::create(&secret)
        .and_then(|mut f| f.write_all(b"0123456789abcdef0123456789abcdef\n"))
        .expect("secret file");
    let json = temp(&format!("report-{via}.json"));
    let out = Command::new(BIN)
        .args(args)
        .args(["--mint-secret-file", secret.to_str().unwrap()])
        .args(["--mint-sub", "lg.>", "--mint-kid", "lg", "--token-via", via])
        .args(["--json", json.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs");
    let _ = std::fs::remove_file(&secret);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("json");
    let _ = std::fs::remove_file(&json);
    report
}

fn check_auth_params(report: &serde_json::Value, via: &str) {
    let auth = &report["params"]["common"]["auth"];
    assert_eq!(auth["source"], "mint", "{report}");
    assert_eq!(auth["via"], via);
    assert_eq!(auth["kid"], "lg");
    assert_eq!(auth["sub"], serde_json::json!(["lg.>"]));
    assert!(!report.to_string().contains("0123456789abcdef"));
}

#[test]
fn fanout_with_minted_tokens_in_the_query_loses_nothing() {
    let server = real_broker::ringfan(1);
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let report = run_minted(
        &[
            "fanout",
            "--url",
            &url,
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
        "query",
    );
    server.shutdown();
    server.join();
    check_auth_params(&report, "query");
    let c = &report["counts"];
    assert_eq!(c["connections_opened"], 22, "{report}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{report}");
    assert_eq!(c["lost"], 0);
}

#[test]
fn echo_with_minted_tokens_in_a_header_round_trips() {
    let server = real_broker::ringfan(1);
    let url = format!("ws://{}/ws", server.local_addr().unwrap());
    let report = run_minted(
        &[
            "echo",
            "--url",
            &url,
            "--connections",
            "4",
            "--rate",
            "100",
            "--duration",
            "1s",
            "--warmup",
            "0s",
        ],
        "header",
    );
    server.shutdown();
    server.join();
    check_auth_params(&report, "header");
    let c = &report["counts"];
    assert_eq!(c["connections_opened"], 4, "{report}");
    assert_eq!(c["delivered"], 100, "{report}");
}
