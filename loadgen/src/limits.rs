//! The kernel settings that cap how many connections one generator can
//! open, read at start-up: which source ports connects get (the ephemeral
//! range, less reserved ports, and which half of it is fast), and the
//! system-wide file limit. A run that cannot fit says so in one line,
//! naming the setting, the ceiling it implies and what to raise, before
//! any connection is made.
//!
//! Why the "fast" half: with a source address bound and the port left to
//! the kernel (IP_BIND_ADDRESS_NO_PORT), `__inet_hash_connect` searches
//! the ports of the range's low end's parity first (even, for 32768) and
//! only then the other half. While a free port of the first parity is
//! left, a connect costs ~30 us on loopback here; once every one of them
//! is taken for this (source, destination) pair, each connect walks all
//! of them first (~14,000 bucket lookups, ~0.4-2 ms) before taking an odd
//! one. That is where the issue-11 run slowed to a crawl: 13 sources ×
//! 14,116 even ports = 183,508 (docs/benchmarks.md, "Where 250,000
//! connections stalled").

use std::net::IpAddr;

/// The sysctl files read.
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const FILE_NR: &str = "/proc/sys/fs/file-nr";
const SOMAXCONN: &str = "/proc/sys/net/core/somaxconn";

/// Share of a source address's fast ports a plan fills: the kernel's
/// search starts at a hashed offset and skips up to 7 ports at random
/// after each success, so the last free ports of the half take the
/// longest searches. 90 % (12,704 of 14,116 on a stock kernel) kept the
/// cost flat in a 17,000-connection measurement (8,000 of 8,500 even
/// ports: ~30 us per connect throughout).
const FILL: f64 = 0.9;

/// The loopback addresses available as sources: 127.0.0.1 … 127.0.0.250.
pub const MAX_SOURCES: usize = 250;

/// `net.ipv4.ip_local_port_range` less `ip_local_reserved_ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
    reserved: Vec<(u16, u16)>,
}

impl PortRange {
    /// This kernel's range (as seen from this network namespace).
    pub fn read() -> Result<Self, String> {
        let range = std::fs::read_to_string(PORT_RANGE)
            .map_err(|e| format!("cannot read {PORT_RANGE}: {e}"))?;
        // Missing on old kernels: nothing reserved.
        let reserved = std::fs::read_to_string(RESERVED).unwrap_or_default();
        Self::parse(&range, &reserved)
    }

    /// `range` as in the sysctl (`32768\t60999`), `reserved` as a list
    /// (`8080,9000-9010`, or empty).
    pub fn parse(range: &str, reserved: &str) -> Result<Self, String> {
        let bad = || format!("unreadable ip_local_port_range {:?}", range.trim());
        let mut it = range.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
            return Err(bad());
        };
        if lo > hi {
            return Err(bad());
        }
        let mut list = Vec::new();
        for part in reserved.trim().split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Ok(a), Ok(b)) = (a.trim().parse::<u16>(), b.trim().parse::<u16>()) else {
                return Err(format!(
                    "unreadable ip_local_reserved_ports {:?}",
                    reserved.trim()
                ));
            };
            list.push((a.min(b), a.max(b)));
        }
        Ok(Self {
            lo,
            hi,
            reserved: list,
        })
    }

    fn reserved(&self, p: u16) -> bool {
        self.reserved.iter().any(|&(a, b)| (a..=b).contains(&p))
    }

    /// Usable ports of the kernel's first-choice parity (that of `lo`):
    /// connects are fast while one of these is free.
    pub fn fast(&self) -> u64 {
        (self.lo..=self.hi)
            .step_by(2)
            .filter(|p| !self.reserved(*p))
            .count() as u64
    }

    /// Every usable port of the range.
    pub fn all(&self) -> u64 {
        (self.lo..=self.hi).filter(|p| !self.reserved(*p)).count() as u64
    }

    pub fn show(&self) -> String {
        format!("{}-{}", self.lo, self.hi)
    }
}

/// How connections get their source ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// The kernel picks them at connect time from its ephemeral range.
    Kernel(PortRange),
    /// The generator binds each one exactly, from `lo..=hi` (--source-ports).
    Explicit { lo: u16, hi: u16 },
}

impl Ports {
    /// Connections one source address takes at full speed.
    pub fn per_source(&self) -> u64 {
        match self {
            Ports::Kernel(r) => r.fast(),
            Ports::Explicit { lo, hi } => u64::from(hi - lo) + 1,
        }
    }

    /// Source addresses to use for `total` connections when none are
    /// asked for: enough that each fills at most 90 % of its fast ports.
    pub fn sources_for(&self, total: u64) -> usize {
        let each = ((self.per_source() as f64 * FILL) as u64).max(1);
        (total.div_ceil(each).max(1) as usize).min(MAX_SOURCES)
    }
}

/// `LO-HI` for --source-ports.
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("bad --source-ports {s:?} (want LO-HI, e.g. 1024-65535)");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// What the settings allow for a planned run.
#[derive(Debug)]
pub struct Verdict {
    /// One line saying what caps the run and at how many connections.
    pub line: String,
    /// The run does not fit at all (stop), as opposed to fitting only
    /// slowly (warn and go on) or fitting (inform).
    pub fatal: bool,
    /// The run is past the fast ceiling: connects will crawl.
    pub slow: bool,
}

/// Check `total` connections over `sources` source addresses (none: the
/// kernel picks the source too, one address) against the port settings,
/// the system-wide file limit and the listen backlog. `share`: how many
/// connections one port of --source-ports carries (`plan::port_share`:
/// one per broker address; the sources count, 1 for none, when there is
/// one broker address).
pub fn check(
    total: u64,
    sources: &[IpAddr],
    ports: &Ports,
    share: u64,
    in_flight: u64,
    loopback: bool,
) -> Verdict {
    let n_src = sources.len().max(1) as u64;
    let explicit = matches!(ports, Ports::Explicit { .. });
    // The kernel's own port choice is counted per source (measured so).
    let k = if explicit { share.max(n_src) } else { n_src };
    let n = crate::report::fmt_count;
    let mut src = if n_src == 1 {
        "1 source address".to_string()
    } else {
        format!("{n_src} source addresses")
    };
    if k > n_src {
        src = format!("{k} (source, broker) address pairs");
    }
    let need_sources = |per: u64| total.div_ceil(per.max(1));
    let (fast, hard, setting) = match ports {
        Ports::Kernel(r) => (
            k * r.fast(),
            k * r.all(),
            format!(
                "net.ipv4.ip_local_port_range {} ({} fast ports of {} per source: the kernel tries ports of {}'s parity first)",
                r.show(),
                n(r.fast()),
                n(r.all()),
                r.lo
            ),
        ),
        Ports::Explicit { lo, hi } => {
            let per = u64::from(hi - lo) + 1;
            (k * per, k * per, format!("--source-ports {lo}-{hi} ({} per source)", n(per)))
        }
    };
    let raise = |per: u64| {
        let want = need_sources((per as f64 * FILL) as u64);
        let mut ways = Vec::new();
        if loopback && want as usize <= MAX_SOURCES {
            ways.push(format!("--sources {want}"));
        }
        if matches!(ports, Ports::Kernel(_)) {
            ways.push("a wider range (sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\", tuning/apply.sh)".into());
            ways.push("--source-ports 1024-65535 (the generator binds ports itself)".into());
        } else {
            ways.push("a wider --source-ports".into());
        }
        ways.join(", or ")
    };
    if total > hard {
        return Verdict {
            line: format!(
                "{} connections exceed the port ceiling of {} = {src} × {setting}; raise it: {}",
                n(total),
                n(hard),
                raise(hard / k)
            ),
            fatal: true,
            slow: true,
        };
    }
    if let Some(files) = files_free() {
        // Every socket is a file while it lives (a direct descriptor holds
        // one); on loopback the broker's end counts too.
        let per = if loopback { 2 } else { 1 };
        if total * per > files {
            return Verdict {
                line: format!(
                    "{} connections need {} open files system-wide and fs.file-max leaves {}: raise fs.file-max",
                    n(total),
                    n(total * per),
                    n(files)
                ),
                fatal: true,
                slow: true,
            };
        }
    }
    let mut line = if total > fast {
        format!(
            "{} connections exceed the fast-connect ceiling of {} = {src} × {setting}: past it each connect searches every fast port first (~0.4-2 ms instead of ~30 us) and stalls the run; raise it: {}",
            n(total),
            n(fast),
            raise(fast / k)
        )
    } else {
        format!(
            "ceiling {} connections ({src} × {setting}); {} planned",
            n(fast),
            n(total)
        )
    };
    if let Some(note) = backlog_note(in_flight, loopback) {
        line.push_str("; ");
        line.push_str(&note);
    }
    Verdict {
        line,
        fatal: false,
        slow: total > fast,
    }
}

/// What the listen backlog says of `in_flight` handshakes at once to a
/// loopback broker, when they exceed it.
pub fn backlog_note(in_flight: u64, loopback: bool) -> Option<String> {
    let backlog = read_u64(SOMAXCONN)?;
    (loopback && in_flight > backlog).then(|| {
        format!(
            "{} handshakes in flight exceed net.core.somaxconn {}: a broker listening with one queue drops the SYNs past it (retried after 1 s, 3 s, ...), lower --connect-window or raise net.core.somaxconn",
            crate::report::fmt_count(in_flight),
            crate::report::fmt_count(backlog)
        )
    })
}

/// Files the system still lets open (fs.file-max less those open).
fn files_free() -> Option<u64> {
    let s = std::fs::read_to_string(FILE_NR).ok()?;
    let f: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match f[..] {
        [open, _, max] => Some(max.saturating_sub(open)),
        _ => None,
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::loopback_sources;

    #[test]
    fn the_backlog_note_names_somaxconn_only_past_it_and_only_on_loopback() {
        let Some(backlog) = read_u64(SOMAXCONN) else {
            return; // no /proc here: nothing to compare with
        };
        let note = backlog_note(backlog + 1, true).expect("past somaxconn on loopback");
        assert!(note.contains("net.core.somaxconn"), "{note}");
        assert_eq!(backlog_note(backlog, true), None);
        assert_eq!(backlog_note(backlog + 1, false), None);
    }

    #[test]
    fn the_stock_range_has_14116_fast_ports() {
        let r = PortRange::parse("32768\t60999\n", "\n").unwrap();
        assert_eq!((r.fast(), r.all()), (14_116, 28_232));
        // The stall: 13 sources × the even half.
        assert_eq!(13 * r.fast(), 183_508);
        // Reserved ports leave the count; odd ones only the slow half.
        let r = PortRange::parse("32768 60999", "32768-32777,32779").unwrap();
        assert_eq!((r.fast(), r.all()), (14_111, 28_221));
        // An odd low end: the odd ports are the fast half.
        let r = PortRange::parse("1025 1030", "1026").unwrap();
        assert_eq!((r.fast(), r.all()), (3, 5));
        assert!(PortRange::parse("60999 32768", "").is_err());
        assert!(PortRange::parse("x", "").is_err());
        assert!(PortRange::parse("1 2", "a-b").is_err());
    }

    #[test]
    fn sources_fill_at_most_nine_tenths_of_the_fast_ports() {
        let stock = Ports::Kernel(PortRange::parse("32768 60999", "").unwrap());
        // 250,000 over 12,704 a source: 20 (the working --sources 20).
        assert_eq!(stock.sources_for(250_000), 20);
        assert_eq!(stock.sources_for(1), 1);
        let wide = Ports::Kernel(PortRange::parse("1024 65535", "").unwrap());
        assert_eq!(wide.sources_for(250_000), 9);
        let explicit = Ports::Explicit {
            lo: 1024,
            hi: 65535,
        };
        assert_eq!(explicit.sources_for(250_000), 5);
        assert_eq!(stock.sources_for(u64::MAX / 2), MAX_SOURCES);
    }

    #[test]
    fn the_verdict_names_the_setting_and_the_ceiling() {
        let stock = Ports::Kernel(PortRange::parse("32768 60999", "").unwrap());
        let v = check(250_000, &loopback_sources(13), &stock, 13, 256, true);
        assert!(!v.fatal && v.slow, "{v:?}");
        assert!(
            v.line.starts_with("250,000 connections exceed the fast-connect ceiling of 183,508 = 13 source addresses × net.ipv4.ip_local_port_range 32768-60999"),
            "{}",
            v.line
        );
        assert!(v.line.contains("--sources 20"), "{}", v.line);
        let v = check(400_000, &loopback_sources(13), &stock, 13, 256, true);
        assert!(v.fatal, "{v:?}");
        assert!(v.line.contains("port ceiling of 367,016"), "{}", v.line);
        let v = check(250_000, &loopback_sources(20), &stock, 20, 256, true);
        assert!(!v.slow && !v.fatal, "{v:?}");
        assert!(
            v.line.starts_with("ceiling 282,320 connections"),
            "{}",
            v.line
        );
        let mine = Ports::Explicit { lo: 2000, hi: 2999 };
        let v = check(1_001, &[], &mine, 1, 1, false);
        assert!(
            v.fatal && v.line.contains("--source-ports 2000-2999"),
            "{v:?}"
        );
        // Two broker addresses: each port carries two.
        let v = check(2_000, &[], &mine, 2, 1, false);
        assert!(!v.fatal, "{v:?}");
        assert!(
            v.line.starts_with(
                "ceiling 2,000 connections (2 (source, broker) address pairs × --source-ports"
            ),
            "{}",
            v.line
        );
        let v = check(2_001, &[], &mine, 2, 1, false);
        assert!(v.fatal, "{v:?}");
        // The kernel's choice stays counted per source.
        let v = check(250_000, &loopback_sources(20), &stock, 40, 256, true);
        assert!(
            v.line.starts_with("ceiling 282,320 connections"),
            "{}",
            v.line
        );
    }

    #[test]
    fn source_port_ranges_parse() {
        assert_eq!(parse_ports("1024-65535"), Ok((1024, 65535)));
        assert!(parse_ports("0-10").is_err());
        assert!(parse_ports("10-5").is_err());
        assert!(parse_ports("10").is_err());
    }
}
