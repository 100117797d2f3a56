//! Start-up failures are one clear line on stderr and a non-zero exit.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringfan"))
        .args(args)
        .output()
        .expect("run ringfan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--listen", &addr, "--shards", "2"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("already in use"), "{err}");
}

/// With `--log-format json` the failure is a JSON line, so that stderr
/// holds nothing else.
#[test]
fn port_in_use_as_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--listen", &addr, "--log-format", "json"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let line: serde_json::Value = serde_json::from_str(err.trim()).expect("a JSON line");
    assert_eq!(line["level"], "ERROR", "{err}");
    assert_eq!(line["event"], "start_failed", "{err}");
    let why = line["error"].as_str().unwrap_or_default();
    assert!(why.contains("already in use"), "{err}");
}

#[test]
fn bad_log_level() {
    let (code, err) = run(&["--log-level", "wran"]);
    assert_eq!(code, 2);
    assert!(err.contains("'wran' is neither a level"), "{err}");
}

#[test]
fn bad_flag() {
    let (code, err) = run(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: unexpected argument '--no-such-flag'"),
        "{err}"
    );
    let (code, err) = run(&["--listen", "not-an-address"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'not-an-address'"), "{err}");
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringfan"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--shards",
        "--max-message",
        "--allow-origin",
        "--idle-ping",
        "--drain-timeout",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}

/// The lines before "listening on": what caps the connection count.
#[test]
fn says_what_caps_the_connection_count() {
    let lines = startup_lines(&[
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--max-connections-per-shard",
        "100",
    ]);
    assert!(
        lines
            .iter()
            .any(|l| l
                == "ringfan: up to 200 connections: 2 shards × 100 (--max-connections-per-shard)"),
        "{lines:?}"
    );
    // And when the kernel cuts the listen backlog, it says which setting.
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let warned = lines.iter().any(|l| l.contains("net.core.somaxconn"));
    assert_eq!(warned, somaxconn < 65_535, "{lines:?}");
}

/// The start-up lines up to "listening on".
fn startup_lines(args: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringfan"))
        .arg("--no-pin")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ringfan");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let done = line.contains("listening on");
        lines.push(line);
        if done || lines.len() > 10 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn says_when_anyone_may_read_everything() {
    // Issue #13: auth off on a non-loopback address, with no Origin
    // allow-list, is said in one line; on loopback, or with either, not.
    let open = |l: &String| l.contains("auth is off and no --allow-origin");
    let lines = startup_lines(&["--listen", "0.0.0.0:0", "--shards", "1"]);
    assert_eq!(lines.iter().filter(|l| open(l)).count(), 1, "{lines:?}");
    let lines = startup_lines(&["--listen", "127.0.0.1:0", "--shards", "1"]);
    assert!(!lines.iter().any(open), "{lines:?}");
    let origin = [
        "--listen",
        "0.0.0.0:0",
        "--allow-origin",
        "https://a.example.com",
    ];
    let lines = startup_lines(&origin);
    assert!(!lines.iter().any(open), "{lines:?}");
    let secret = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/hs.secret");
    let auth = [
        "--listen",
        "0.0.0.0:0",
        "--auth",
        "required",
        "--jwt-secret-file",
        secret,
    ];
    let lines = startup_lines(&auth);
    assert!(!lines.iter().any(open), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("listening on")),
        "{lines:?}"
    );
}

#[test]
fn auth_without_usable_keys_is_one_line_and_exit_2() {
    let (code, err) = run(&["--listen", "127.0.0.1:0", "--auth", "required"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        "ringfan: --auth: no JWT verification keys configured"
    );
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--auth",
        "optional",
        "--jwt-secret-file",
        "/nonexistent/secret",
    ]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("/nonexistent/secret"), "names the file: {err}");
}
