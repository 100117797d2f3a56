//! Ring set-up, and start-up errors that say what is wrong and what to do.

use io_uring::IoUring;
use std::io;

use super::StartError;

/// A ring for one shard's thread. SINGLE_ISSUER and DEFER_TASKRUN: only
/// this thread submits, and completion work runs when we ask for events,
/// not as interrupts in the middle of our loop; COOP_TASKRUN avoids IPIs.
pub fn new(entries: u32) -> Result<IoUring, StartError> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(entries.saturating_mul(8))
        .build(entries)
        .map_err(|e| StartError(explain(&e)))?;
    if !ring.params().is_feature_nodrop() {
        // Multishot operations can outrun any CQ size; without NODROP a
        // full CQ would lose completions (and with them connections).
        return Err(StartError(format!(
            "io_uring on kernel {} lacks IORING_FEAT_NODROP; ringfan needs Linux 6.1 or newer",
            kernel_release()
        )));
    }
    Ok(ring)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether a seccomp filter is on this process (`Seccomp: 2`).
fn seccomp_filtered() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.strip_prefix("Seccomp:").map(str::trim) == Some("2"))
        })
        .unwrap_or(false)
}

/// One line: why io_uring_setup failed and what to do about it.
pub fn explain(e: &io::Error) -> String {
    let kernel = kernel_release();
    match e.raw_os_error() {
        // Podman's default profile and others answer calls they refuse
        // with ENOSYS, which would otherwise read as an old kernel.
        Some(libc::ENOSYS) if seccomp_filtered() => "io_uring_setup was refused (ENOSYS) under a seccomp filter (Seccomp: 2 in /proc/self/status), as container runtimes' default profiles do; run with a profile that allows io_uring_setup, io_uring_enter and io_uring_register (docs/operations.md, \"Containers and io_uring\")".to_string(),
        Some(libc::ENOSYS) => format!(
            "io_uring is not available: this kernel ({kernel}) lacks io_uring_setup; ringfan needs Linux 6.1 or newer with CONFIG_IO_URING"
        ),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            match disabled.as_str() {
                "1" | "2" => format!(
                    "io_uring is disabled by sysctl kernel.io_uring_disabled={disabled}: run `sysctl -w kernel.io_uring_disabled=0` (or, for value 1, add this user's group to kernel.io_uring_group)"
                ),
                _ => "io_uring_setup was refused (EPERM): a seccomp profile blocks it, as Docker's and containerd's defaults do; run with a profile that allows io_uring_setup, io_uring_enter and io_uring_register (e.g. docker --security-opt seccomp=unconfined)".to_string(),
            }
        }
        Some(libc::EINVAL) => format!(
            "io_uring refused our ring flags (SINGLE_ISSUER, DEFER_TASKRUN): kernel {kernel} is older than 6.1; upgrade the kernel"
        ),
        Some(libc::ENOMEM) => "io_uring_setup ran out of locked memory: raise `ulimit -l` (RLIMIT_MEMLOCK) or use a kernel 5.12+ that accounts rings to memcg".to_string(),
        _ => format!("io_uring_setup failed: {e} (kernel {kernel})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanations_name_the_fix() {
        let s = explain(&io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(s.contains("6.1"), "{s}");
        let s = explain(&io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            s.contains("io_uring_disabled") || s.contains("seccomp"),
            "{s}"
        );
        let s = explain(&io::Error::from_raw_os_error(libc::EINVAL));
        assert!(s.contains("older than 6.1"), "{s}");
    }

    #[test]
    fn ring_builds_here() {
        assert!(new(64).is_ok());
    }
}
