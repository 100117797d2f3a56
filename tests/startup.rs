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
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringfan"))
        .args(["--listen", "127.0.0.1:0", "--no-pin", "--shards", "2"])
        .args(["--max-connections-per-shard", "100"])
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
