//! What caps a server's connection count, said once at start-up: the
//! direct descriptor table per shard (the hard `RLIMIT_NOFILE` or
//! `--max-connections-per-shard`), and a listen backlog the kernel cuts to
//! `net.core.somaxconn` (a storm past it waits on SYN retries: 1 s, 3 s…).
//! One line each, naming the setting to raise, in the style of the
//! start-up errors (`uring.rs`).

/// What the kernel and the process allow, read once.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// The hard `RLIMIT_NOFILE` (each ring's table is capped at it).
    pub nofile: u64,
    /// `net.core.somaxconn`, if readable.
    pub somaxconn: Option<u64>,
}

impl Kernel {
    pub fn read(nofile: u64) -> Self {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Self { nofile, somaxconn }
    }
}

/// The start-up lines for `shards` shards of `table` slots each, listening
/// with `backlog`, configured for at most `per_shard` a shard.
pub fn notes(k: Kernel, shards: usize, table: u64, per_shard: u64, backlog: u64) -> Vec<String> {
    let total = table.saturating_mul(shards as u64);
    let why = if table < per_shard && table == k.nofile {
        format!(
            "the hard RLIMIT_NOFILE of {} caps each shard's table; raise it (ulimit -Hn, systemd LimitNOFILE=) or add shards for more",
            k.nofile
        )
    } else {
        "--max-connections-per-shard".to_string()
    };
    let mut out = vec![format!(
        "up to {total} connections: {shards} shards × {table} ({why})"
    )];
    if let Some(max) = k.somaxconn.filter(|&m| m < backlog) {
        out.push(format!(
            "net.core.somaxconn {max} cuts the listen backlog of {backlog} to {max} a shard: more than {} new connections at once wait on SYN retries (1 s, then 3 s); raise net.core.somaxconn (tuning/sysctl.conf)",
            max.saturating_mul(shards as u64)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_caps_the_count() {
        let k = Kernel {
            nofile: 20_000,
            somaxconn: Some(4096),
        };
        let n = notes(k, 16, 20_000, 1 << 20, 65_535);
        assert_eq!(n.len(), 2);
        assert!(
            n[0].starts_with(
                "up to 320000 connections: 16 shards × 20000 (the hard RLIMIT_NOFILE of 20000"
            ),
            "{}",
            n[0]
        );
        assert!(
            n[1].starts_with("net.core.somaxconn 4096 cuts the listen backlog of 65535"),
            "{}",
            n[1]
        );
        assert!(n[1].contains("more than 65536 new connections"), "{}", n[1]);
        // Configured smaller than the limit; a backlog the kernel allows.
        let n = notes(k, 2, 100, 100, 1024);
        assert_eq!(
            n,
            ["up to 200 connections: 2 shards × 100 (--max-connections-per-shard)"]
        );
    }
}
