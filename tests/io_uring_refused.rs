//! A container whose seccomp profile refuses io_uring (Docker Engine 25+
//! and containerd 2.0 by default) must get one line that says so and what
//! to allow, and a non-zero exit, not a hang or a panic.
//! docs/operations.md quotes these lines for operators to search for.
//!
//! The child gets a real seccomp filter, the kind runc installs: before
//! `execve`, `io_uring_setup` is made to fail with EPERM (Docker's and
//! containerd's answer, and systemd's with `SystemCallErrorNumber=EPERM`)
//! or ENOSYS (what some other profiles answer).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A classic-BPF program: `io_uring_setup` fails with `errno`, every other
/// call is allowed.
fn filter(errno: u32) -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        // A = seccomp_data.nr (offset 0).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // if A == io_uring_setup: next; else skip one.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | errno),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Start ringfan under the filter; its exit code and stderr.
fn run_refused(errno: i32) -> (i32, String) {
    let prog = filter(errno as u32);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringfan"));
    cmd.args(["--listen", "127.0.0.1:0", "--shards", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes two prctl calls
    // (async-signal-safe) on memory the parent built before forking; no
    // allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            // Required to install a filter without CAP_SYS_ADMIN; runc
            // sets it too (or holds the capability).
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start ringfan under the filter");
    // It must fail at start; a broker that came up anyway would never exit.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringfan did not exit with io_uring_setup refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    (status.code().unwrap_or(-1), err)
}

fn io_uring_enabled_here() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(true)
}

#[test]
fn eperm_from_seccomp_names_the_profile_and_the_three_calls() {
    // With the sysctl set, EPERM is explained as the sysctl instead.
    if !io_uring_enabled_here() {
        eprintln!("skipped: kernel.io_uring_disabled is not 0 here");
        return;
    }
    let (code, err) = run_refused(libc::EPERM);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("ringfan: io_uring_setup was refused (EPERM): a seccomp profile blocks it"),
        "{err}"
    );
    assert!(
        err.contains("io_uring_setup, io_uring_enter and io_uring_register"),
        "{err}"
    );
}

#[test]
fn enosys_from_seccomp_is_not_blamed_on_the_kernel() {
    let (code, err) = run_refused(libc::ENOSYS);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("ringfan: io_uring_setup was refused (ENOSYS) under a seccomp filter"),
        "{err}"
    );
    assert!(!err.contains("this kernel"), "{err}");
    assert!(
        err.contains("io_uring_setup, io_uring_enter and io_uring_register"),
        "{err}"
    );
}
