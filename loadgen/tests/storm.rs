//! `ringfan-loadgen storm` against the real broker (in process, real
//! sockets, as in `accounting.rs`): every dropped connection comes back,
//! resubscribed with its snapshot, nothing fails, and the held
//! subscribers' latency is reported for the storm window and outside it.

mod real_broker;

use real_broker::ringfan;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringfan-loadgen");

#[test]
fn a_storm_of_100_of_300_comes_back_whole_and_reports_both_windows() {
    let server = ringfan(2);
    let addr = server.local_addr().unwrap();
    let url = format!("ws://{addr}/ws");
    let json = std::env::temp_dir().join(format!("ringfan-storm-{}.json", std::process::id()));
    let json_s = json.to_str().unwrap().to_string();
    let args = [
        "storm",
        "--url",
        &url,
        "--connections",
        "300",
        "--drop",
        "100",
        "--topics",
        "20",
        "--rate",
        "2000",
        "--warmup",
        "500ms",
        "--duration",
        "3s",
        "--drop-at",
        "1s",
        "--grace",
        "5s",
        "--shards",
        "2",
        "--quiet",
        "--json",
        &json_s,
    ];
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let limit = Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    server.shutdown();
    server.join();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["scenario"], "storm");
    assert_eq!(report["problems"], serde_json::json!([]), "{stdout}");
    let extra = &report["extra"];
    let fig = |k: &str| {
        extra[k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in the report:\n{stdout}"))
    };
    assert_eq!(fig("storm_dropped"), 100.0, "{stdout}");
    assert_eq!(fig("storm_resubscribed"), 100.0, "{stdout}");
    assert_eq!(fig("storm_reconnect_failures"), 0.0, "{stdout}");
    // Every topic had a last value by the drop, so each came back with it.
    assert_eq!(fig("storm_snapshots"), 100.0, "{stdout}");
    // Two shards: the held and the publisher on one, the dropped on the
    // other.
    assert_eq!(fig("storm_held_apart"), 1.0, "{stdout}");
    let reconnect = fig("storm_reconnect_s");
    assert!(
        reconnect > 0.0 && reconnect < 3.0,
        "{reconnect} s\n{stdout}"
    );
    // Both windows have the held subscribers' deliveries, and their figures.
    for window in ["during", "outside"] {
        assert!(fig(&format!("held_{window}_storm_count")) > 0.0, "{stdout}");
        let (p50, p99) = (
            fig(&format!("held_{window}_storm_p50_us")),
            fig(&format!("held_{window}_storm_p99_us")),
        );
        assert!(p50 > 0.0 && p99 >= p50, "{window}: {p50} {p99}\n{stdout}");
    }
    // The held 200 are owed every delivery, and got them.
    let c = &report["counts"];
    assert_eq!(c["connect_failures"], 0, "{stdout}");
    assert_eq!(c["lost"], 0, "{stdout}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{stdout}");
    assert!(c["delivered"].as_u64().unwrap() > 0, "{stdout}");
    assert!(stdout.contains("storm_reconnect_s"), "{stdout}");
}
