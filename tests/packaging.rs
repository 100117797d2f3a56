//! The deployment files in packaging/ stay true to the binary and to
//! tuning/: the sysctl drop-in carries tuning/sysctl.conf's values, the
//! systemd unit waits longer than the binary's drain, and the seccomp
//! profile writer adds exactly the io_uring calls to a Docker profile.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `key = value` lines of a sysctl.d file, comments and blanks skipped,
/// whitespace inside values collapsed as sysctl does.
fn sysctls(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key = value: {l}"));
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.trim().to_string(), v)
        })
        .collect()
}

#[test]
fn sysctl_drop_in_has_tunings_values() {
    let tuning = sysctls(&read("tuning/sysctl.conf"));
    let drop_in = sysctls(&read("packaging/99-ringfan.conf"));
    for (k, v) in &drop_in {
        assert_eq!(
            tuning.get(k),
            Some(v),
            "{k} differs from tuning/sysctl.conf"
        );
    }
    // The broker-side settings all made it; only the load generator's
    // client-side ones are left out.
    let client_side = ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse"];
    for k in tuning.keys() {
        assert!(
            drop_in.contains_key(k) || client_side.contains(&k.as_str()),
            "{k} is in tuning/sysctl.conf but not in packaging/99-ringfan.conf"
        );
    }
}

/// The value of `Key=` in a unit file (the last one wins, as in systemd).
fn unit_value<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn unit_outlasts_the_drain_and_allows_io_uring() {
    let unit = read("packaging/ringfan.service");
    let help = Command::new(env!("CARGO_BIN_EXE_ringfan"))
        .arg("--help")
        .output()
        .expect("ringfan --help");
    let help = String::from_utf8_lossy(&help.stdout);
    // "--drain-timeout <DRAIN_TIMEOUT> ... [default: 5]"
    let drain: u64 = help
        .split("--drain-timeout")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|d| d.split(']').next())
        .and_then(|d| d.trim().parse().ok())
        .expect("the drain timeout's default in --help");
    let stop: u64 = unit_value(&unit, "TimeoutStopSec")
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    // The drain plus a close timeout's worth of margin, or systemd's
    // SIGKILL would cut the drain short.
    assert!(
        stop >= drain + 5,
        "TimeoutStopSec={stop} vs drain {drain} s"
    );
    assert_eq!(unit_value(&unit, "KillSignal"), Some("SIGTERM"));
    assert_eq!(unit_value(&unit, "LimitNOFILE"), Some("1048576"));
    // Allow lists add up; a `~` list subtracts.
    let allowed: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .filter(|v| !v.starts_with('~'))
        .flat_map(str::split_whitespace)
        .collect();
    for call in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(allowed.contains(&call), "{call} not in SystemCallFilter=");
    }
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

/// Run packaging/seccomp-io_uring.sh on `profile`; (exit code, stdout).
fn seccomp_writer(profile: &str) -> Option<(i32, String)> {
    if Command::new("jq").arg("--version").output().is_err() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("ringfan-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("default.json");
    std::fs::write(&input, profile).expect("write profile");
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("packaging/seccomp-io_uring.sh"))
        .arg(&input)
        .stderr(Stdio::null())
        .output()
        .expect("run seccomp-io_uring.sh");
    let _ = std::fs::remove_dir_all(&dir);
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn seccomp_writer_adds_the_three_calls_to_the_plain_allow_rule() {
    // The shape of Docker's default profile, after io_uring was taken out:
    // conditional rules first, one unconditional allow list, an explicit
    // refusal as some profiles carry.
    let profile = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
        {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
        {"names":["ptrace"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}},
        {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
        {"names":["io_uring_setup","clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#;
    let Some((code, out)) = seccomp_writer(profile) else {
        eprintln!("skipped: no jq here");
        return;
    };
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON out");
    let rules = v["syscalls"].as_array().expect("syscalls");
    let names = |i: usize| -> Vec<&str> {
        rules[i]["names"]
            .as_array()
            .expect("names")
            .iter()
            .filter_map(|n| n.as_str())
            .collect()
    };
    assert_eq!(names(0), ["personality"], "conditional rules untouched");
    assert_eq!(names(1), ["ptrace"]);
    assert_eq!(
        names(2),
        [
            "read",
            "write",
            "io_uring_enter",
            "io_uring_register",
            "io_uring_setup"
        ]
    );
    assert_eq!(names(3), ["clone3"], "no longer refuses io_uring_setup");
    assert_eq!(v["defaultErrnoRet"], 1, "everything else kept");
    // Its own output in, the same out.
    let (code, again) = seccomp_writer(&out).expect("jq still here");
    assert_eq!(code, 0);
    assert_eq!(again, out);
    // Not a Docker profile: refused, nothing written.
    let (code, out) = seccomp_writer(r#"{"syscalls":[]}"#).expect("jq");
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
}
