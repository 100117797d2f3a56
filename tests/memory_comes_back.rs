//! Memory that comes back (issue #11): a broker starts small whatever its
//! shard count, and the receive buffers a storm made it grow are handed
//! back once the storm is over.

mod common;

use common::wsraw::{bounded, masked, metric, RawWs, OP_PING, OP_TEXT};
use common::Broker;
use std::time::Duration;

/// Anonymous resident memory of `pid`, in KiB (what the process itself
/// holds: file-backed pages such as the binary's text are left out).
fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon")
}

/// Resident KiB of the mappings of exactly `size_kib` (the receive buffer
/// pool: `--recv-buffers-max` × `--recv-buffer-size`, a size nothing else
/// in the process has).
fn mapping_rss_kib(pid: u32, size_kib: u64) -> (usize, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let field = |l: &str, name: &str| -> Option<u64> {
        l.strip_prefix(name)?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    let (mut found, mut rss, mut in_it) = (0, 0, false);
    for l in smaps.lines() {
        if let Some(size) = field(l, "Size:") {
            in_it = size == size_kib;
            found += in_it as usize;
        } else if let Some(r) = field(l, "Rss:") {
            if in_it {
                rss += r;
            }
        }
    }
    (found, rss)
}

#[test]
fn sixteen_shards_start_small() {
    // Was ~208 MiB: 64 MiB of pre-touched receive buffers and ~140 MiB of
    // transparent huge pages under the allocator's per-thread segments.
    let b = Broker::start(&["--shards", "16"]);
    std::thread::sleep(Duration::from_millis(500));
    let kib = rss_anon_kib(b.child.id());
    assert!(kib < 48 * 1024, "16 shards start with {kib} KiB anonymous");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_buffers_grown_in_a_storm_are_handed_back() {
    const CONNS: usize = 1_500;
    // 2,048 buffers of 16 KiB: a 32 MiB pool mapping, 16 offered at start.
    const POOL_KIB: u64 = 2048 * 16;
    let b = Broker::start(&[
        "--shards",
        "1",
        "--recv-buffers",
        "16",
        "--recv-buffers-max",
        "2048",
    ]);
    let pid = b.child.id();
    let (found, rss) = mapping_rss_kib(pid, POOL_KIB);
    assert_eq!(found, 1, "the buffer pool mapping");
    // Nothing touched before the first receive.
    assert!(rss <= 64, "{rss} KiB of buffers resident at start");
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        conns.push(RawWs::connect(b.addr, "/ws").await);
    }
    // The storm: every connection publishes ~15 KiB at once, so far more
    // receives complete in one turn than 16 buffers hold.
    let data = "x".repeat(15_000);
    let msg = format!(r#"{{"op":"pub","topic":"storm","data":"{data}"}}"#);
    let frame = masked(OP_TEXT, msg.as_bytes());
    let writes = conns.iter_mut().map(|ws| ws.send(&frame));
    bounded(
        30,
        "the storm's writes",
        futures_util::future::join_all(writes),
    )
    .await;
    bounded(30, "every publish received", async {
        while metric(b.addr, "ringfan_messages_received_total").await < CONNS as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        metric(b.addr, "ringfan_recv_enobufs_total").await > 0,
        "the storm did not run the buffers dry; nothing to hand back"
    );
    let (_, peak) = mapping_rss_kib(pid, POOL_KIB);
    assert!(peak >= 512, "the storm touched only {peak} KiB of buffers");
    // Ten seconds without input (so no /metrics polling here: a request
    // is input too), then a tick: the buffers' memory goes.
    bounded(25, "buffer memory handed back", async {
        loop {
            let (_, now) = mapping_rss_kib(pid, POOL_KIB);
            if now <= peak / 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    // The connections are all still there.
    assert_eq!(
        metric(b.addr, "ringfan_connections_open").await,
        CONNS as u64 + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_input_keeps_only_a_quiet_pools_pages() {
    // The kernel takes offered buffers in turn, so a trickle of small
    // receives (pongs from 15,000 idle connections a shard) touches a page
    // of every buffer offered: 256 buffers, 1 MiB a shard. A quiet shard
    // offers 32, and the rest's pages go back although input never stops.
    const CONNS: usize = 300;
    const POOL_KIB: u64 = 2048 * 16;
    let b = Broker::start(&["--shards", "1", "--recv-buffers-max", "2048"]);
    let pid = b.child.id();
    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        conns.push(RawWs::connect(b.addr, "/ws").await);
    }
    let ping = masked(OP_PING, b"x");
    let start = std::time::Instant::now();
    let mut touched = 0;
    let mut i = 0;
    // Two pings every 20 ms, round the connections, for 16 s: never ten
    // seconds without input, so the idle release never runs.
    while start.elapsed() < Duration::from_secs(16) {
        for _ in 0..2 {
            bounded(5, "a ping", conns[i % CONNS].send(&ping)).await;
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if start.elapsed() < Duration::from_secs(5) {
            touched = touched.max(mapping_rss_kib(pid, POOL_KIB).1);
        }
    }
    // 400 small receives in the first 4 s went round all 256 buffers.
    assert!(touched >= 512, "the trickle touched only {touched} KiB");
    let (_, now) = mapping_rss_kib(pid, POOL_KIB);
    assert!(
        now <= 48 * 4,
        "{now} KiB of buffers resident after 16 s of trickle (peak {touched} KiB)"
    );
}
