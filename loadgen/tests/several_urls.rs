//! Several `--url`s (issue #18: the nodes of a cluster): the real
//! `ringfan-loadgen` binary spreads subscribers over them round-robin and
//! publishes where `--publish-url` says, and the seq checks hold end to
//! end. First against one broker reached two ways (ws:// and wss://, so
//! that its TLS handshake counter shows where the connections went), then
//! against three ringfan nodes joined through a real `nats-server -js`
//! (publisher on A, subscribers on B and C: every delivery crosses NATS).
//!
//! Without nats-server the cluster test prints a loud skip note and
//! passes, unless NATS_SERVER_REQUIRED=1 (as the broker's own tests).

mod bounded;
mod real_broker;

use bounded::run_bounded;
use real_broker::ringfan_tls;
use ringfan::broker::{Broker, BrokerConfig, BrokerStats, SlowPolicy};
use ringfan::cluster::{Bridge, ClusterConfig};
use ringfan::runtime::{inboxes, Config, Server};
use ringfan::server::{Node, Routes};
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs the binary with `args` (plus --json and --quiet), asserts exit 0,
/// returns the JSON report.
fn run(args: &[&str]) -> Value {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let json = std::env::temp_dir().join(format!(
        "lg-urls-it-{}-{}.json",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let mut all = args.to_vec();
    all.extend_from_slice(&["--json", json.to_str().expect("UTF-8"), "--quiet"]);
    let (out, took) = run_bounded(&all, LIMIT);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(took < LIMIT, "killed after {took:?}\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "{args:?}:\n{stdout}\n{stderr}");
    let report = serde_json::from_slice(&std::fs::read(&json).expect("the report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    report
}

/// Every connection opened, every delivery owed arrived, once, in seq
/// order, without a gap. The deliveries.
fn whole(r: &Value) -> u64 {
    let c = &r["counts"];
    assert_eq!(r["problems"], serde_json::json!([]), "{r}");
    assert_eq!(c["connections_opened"], c["connections_target"], "{r}");
    assert!(c["delivered"].as_u64().unwrap_or(0) > 0, "{r}");
    assert_eq!(c["delivered"], c["expected_deliveries"], "{r}");
    for k in ["lost", "duplicated", "out_of_order", "gaps", "errors"] {
        assert_eq!(c[k], 0, "{k}: {r}");
    }
    c["delivered"].as_u64().unwrap()
}

/// 10 subscribers on 2 topics (5 each), 40 publishes (add --publishers).
const FANOUT: [&str; 11] = [
    "fanout",
    "--subscribers",
    "10",
    "--topics",
    "2",
    "--rate",
    "40",
    "--duration",
    "1s",
    "--warmup",
    "0s",
];

#[test]
fn subscribers_and_publishers_spread_over_the_urls_given() {
    // One broker, a ws:// and a wss:// listener: the TLS handshakes count
    // the connections sent to the second URL.
    let broker = ringfan_tls(2, true);
    let plain = format!(
        "ws://127.0.0.1:{}/ws",
        broker.server.local_addr().unwrap().port()
    );
    let tls = broker.url("/ws");
    let urls = format!("{plain},{tls}");
    let mut args = FANOUT.to_vec();
    args.extend_from_slice(&["--publishers", "2", "--url", &urls, "--insecure"]);
    let r = run(&args);
    assert_eq!(whole(&r), 40 * 5, "{r}");
    assert_eq!(r["params"]["common"]["url"], urls.as_str());
    assert_eq!(r["target"], urls.as_str());
    // 10 subscribers and 2 publishers round-robin: 5 + 1 on wss://.
    assert_eq!(broker.handshakes(), 6);

    // Repeated --url, publishers all on the second (by index).
    let mut args = FANOUT.to_vec();
    args.extend_from_slice(&["--publishers", "2", "--url", &plain, "--url", &tls]);
    args.extend_from_slice(&["--publish-url", "1"]);
    args.push("--insecure");
    let r = run(&args);
    assert_eq!(whole(&r), 40 * 5, "{r}");
    assert_eq!(broker.handshakes(), 6 + 5 + 2);
    assert_eq!(
        r["params"]["common"]["publish_url"],
        serde_json::json!(["1"])
    );
    broker.stop();
}

// ---- a three-node cluster through nats-server ----

fn nats_server_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let bin = on_path.or_else(|| {
        // Debian installs it in /usr/sbin, which a non-root PATH lacks.
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    });
    if bin.is_none() {
        assert_ne!(
            std::env::var("NATS_SERVER_REQUIRED").as_deref(),
            Ok("1"),
            "nats-server not found and NATS_SERVER_REQUIRED=1"
        );
        eprintln!("\n!!!!! SKIPPED: nats-server not found (apt-get install nats-server) !!!!!\n");
    }
    bin
}

/// `nats-server -js` on a free loopback port with its own store; killed
/// (and the store removed) on drop.
struct Nats {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    fn start(bin: &Path) -> Nats {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().unwrap().port()
        };
        let dir = std::env::temp_dir().join(format!("lg-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a store dir");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, port, dir }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One ringfan node joined to NATS, wired as the binary's `--cluster`.
struct ClusterNode {
    server: Server,
    bridge: Bridge,
}

impl ClusterNode {
    fn start(nats: &Nats, shards: usize) -> ClusterNode {
        let cfg = ClusterConfig {
            urls: vec![format!("nats://127.0.0.1:{}", nats.port)],
            storage_file: false,
            ..ClusterConfig::default()
        };
        let (senders, boxes) = inboxes(shards, 65_536).expect("inboxes");
        let owner = Arc::new(move |t: &str| ringfan::broker::engine::owner_of(t, shards));
        let sink = ringfan::server::cluster::bridge_sink(senders);
        let bridge = Bridge::start(cfg, owner, shards, sink).expect("joins NATS");
        let link = ringfan::server::cluster::Link {
            sender: bridge.sender(),
            node: fastrand::u64(..),
            // The bridge's default publish timeout (10 s).
            publish_timeout: std::time::Duration::from_secs(10),
            max_payload: bridge.max_payload(),
        };
        let broker = BrokerConfig {
            policy: SlowPolicy::Disconnect,
            max_queued: 8 << 20,
            ..BrokerConfig::default()
        };
        let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
        let config = Config {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            shards,
            pin: false,
            ..Config::default()
        };
        let server = Server::start_with_inboxes(config, boxes, move |shard| {
            let link = ringfan::server::cluster::broker_link(&link, shard);
            Node::new(
                Broker::new(broker.clone(), stats.clone()).with_cluster(link),
                Routes::default(),
            )
        })
        .expect("the node starts");
        ClusterNode { server, bridge }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.server.local_addr().unwrap())
    }

    fn stop(self) {
        self.server.shutdown();
        self.server.join();
        self.bridge.shutdown();
    }
}

#[test]
fn publishing_on_one_node_delivers_gapless_on_the_others_through_nats() {
    let Some(bin) = nats_server_bin() else { return };
    let nats = Nats::start(&bin);
    let (a, b, c) = (
        ClusterNode::start(&nats, 2),
        ClusterNode::start(&nats, 1),
        ClusterNode::start(&nats, 2),
    );
    let bc = format!("{},{}", b.url(), c.url());
    let mut args = FANOUT.to_vec();
    let at_a = a.url();
    args.extend_from_slice(&["--publishers", "2", "--url", &bc, "--publish-url", &at_a]);
    args.extend_from_slice(&["--data", "quote"]);
    let r = run(&args);
    // Independent brokers would deliver nothing on B and C: each of the
    // 40 publishes reached its topic's 5 subscribers there, numbered by
    // the stream, with no gap or duplicate.
    assert_eq!(whole(&r), 40 * 5, "{r}");
    // And through any node: publishers round-robin over A, B and C, with
    // subscribers on all three.
    let abc = format!("{},{bc}", a.url());
    let mut args = FANOUT.to_vec();
    args.extend_from_slice(&["--url", &abc, "--publishers", "3"]);
    let r = run(&args);
    assert_eq!(whole(&r), 40 * 5, "{r}");
    for n in [a, b, c] {
        n.stop();
    }
}
