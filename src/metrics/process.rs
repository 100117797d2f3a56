//! The process metrics every Prometheus client library exports, under
//! their standard names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, ...), read from `/proc` at scrape
//! time: a few small files, ~tens of µs, once per scrape.
//!
//! Read by hand: five numbers from four small files, where the `procfs`
//! crate would bring `rustix` and its own parsers for all of `/proc`.
//! Connections in io_uring direct descriptors are not file descriptors and
//! do not show in `process_open_fds` (see `ringfan_direct_descriptors`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// `/proc` reports times in USER_HZ ticks: 100 a second on every
/// architecture ringfan runs on (x86-64, arm64), whatever the kernel's
/// own HZ; `sysconf(_SC_CLK_TCK)` returns this same constant.
const USER_HZ: f64 = 100.0;

/// What `/proc` told at one scrape; a value it could not read is left
/// out of the exposition rather than shown as 0.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Process {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

impl Process {
    /// This process now.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let stat = read("/proc/self/stat");
        let stat = stat.as_deref().and_then(parse_stat);
        let status = read("/proc/self/status");
        let kib = |key: &str| {
            status
                .as_deref()
                .and_then(|s| status_kib(s, key))
                .map(|k| k * 1024)
        };
        let btime = read("/proc/stat").and_then(|s| boot_time(&s));
        Self {
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / USER_HZ),
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            start_time_seconds: stat
                .zip(btime)
                .map(|(s, b)| b as f64 + s.starttime as f64 / USER_HZ),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
            max_fds: read("/proc/self/limits").and_then(|s| max_open_files(&s)),
        }
    }
}

/// The fields of `/proc/self/stat` used here, in ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so
/// the fields are counted from the last `)`. utime, stime and starttime
/// are fields 14, 15 and 22 (proc(5)); the first after `)` is field 3.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse().ok());
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// `VmRSS:     1234 kB` in `/proc/self/status`.
fn status_kib(s: &str, key: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `btime 1700000000` in `/proc/stat`: boot time, in Unix seconds.
fn boot_time(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = self.cpu_seconds {
            encoder
                .encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
        }
        if let Some(v) = self.start_time_seconds {
            encoder
                .encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    None,
                    MetricType::Gauge,
                )?
                .encode_gauge(&v)?;
        }
        let gauges: [(&str, &str, Option<u64>); 4] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                self.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                self.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors (connections in io_uring direct descriptors are not among them: see ringfan_direct_descriptors).",
                self.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft RLIMIT_NOFILE).",
                self.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                encoder
                    .encode_descriptor(name, help, None, MetricType::Gauge)?
                    .encode_gauge(&v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        // A comm with a space and a ")" of its own.
        let s = "4242 (ring fan) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                 250 75 0 0 20 0 17 0 123456 1000000 300 18446744073709551615";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_stat_and_limits_lines() {
        let status = "Name:\tringfan\nVmSize:\t  204800 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(5120));
        assert_eq!(status_kib(status, "VmSize:"), Some(204_800));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                40000                files\n";
        assert_eq!(max_open_files(limits), Some(20000));
        assert_eq!(
            max_open_files("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let p = Process::read();
        assert!(p.resident_bytes.is_some_and(|v| v > 0), "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds.is_some_and(|v| v >= 3), "{p:?}");
        assert!(p.max_fds >= p.open_fds, "{p:?}");
        assert!(p.cpu_seconds.is_some_and(|v| v >= 0.0), "{p:?}");
        // Started after 2020 and not in the future.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        assert!(
            p.start_time_seconds
                .is_some_and(|t| t > 1.577e9 && t <= now + 1.0),
            "{p:?}"
        );
    }
}
