//! The real broker, in process on real sockets, for the load generator's
//! tests: the same setup the binary makes, with `/echo` on (the echo
//! scenario needs it) and room enough that no test meets a limit by
//! accident. [`ringfan_tls`] serves `wss://` too, with a throwaway CA.

// Every test file compiles this module; only `wss.rs` uses the TLS half,
// so the others would warn that it is unused.
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use ringfan::broker::{Broker, BrokerConfig, BrokerStats, SlowPolicy};
use ringfan::runtime::{Config, Server, TlsListen};
use ringfan::server::{Node, Routes};
use ringfan::tls::{TlsServer, TlsSettings};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub fn ringfan(shards: usize) -> Server {
    start(Config {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        shards,
        pin: false,
        ..Config::default()
    })
}

fn start(config: Config) -> Server {
    let shards = config.shards;
    let broker = BrokerConfig {
        policy: SlowPolicy::Disconnect,
        max_queued: 8 << 20,
        max_message: 1 << 20,
        max_subscriptions: 1024,
        max_lvc_bytes: 64 << 20,
        ..BrokerConfig::default()
    };
    let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
    Server::start(config, move |_| {
        Node::new(
            Broker::new(broker.clone(), stats.clone()),
            Routes {
                echo: true,
                ..Routes::default()
            },
        )
    })
    .expect("broker starts")
}

/// The real broker with a TLS listener on 127.0.0.1, serving a leaf for
/// `localhost` and 127.0.0.1 signed by a CA made for it.
pub struct TlsBroker {
    pub server: Server,
    /// PEM of the CA that signed the server's certificate (for `--ca`).
    pub ca: PathBuf,
    /// PEM of another CA, which signed nothing the server serves.
    pub stranger_ca: PathBuf,
    /// Removed with the broker.
    dir: TempDir,
}

/// `plain`: a `ws://` listener beside the TLS one (else TLS only, as
/// `--listen off`).
pub fn ringfan_tls(shards: usize, plain: bool) -> TlsBroker {
    let dir = TempDir::new();
    let ca = Ca::new("ringfan test CA");
    let (chain, key) = ca.leaf(&dir, &["localhost", "127.0.0.1"]);
    let ca_path = dir.write("ca.pem", &ca.pem);
    let stranger_ca = dir.write("stranger-ca.pem", &Ca::new("stranger CA").pem);
    let tls = TlsServer::new(TlsSettings {
        certs: vec![(chain, key)],
    })
    .expect("the test certificate loads");
    let server = start(Config {
        listen: plain.then(|| "127.0.0.1:0".parse().unwrap()),
        tls: Some(TlsListen {
            addr: "127.0.0.1:0".parse().unwrap(),
            server: Arc::new(tls),
        }),
        shards,
        pin: false,
        ..Config::default()
    });
    TlsBroker {
        server,
        ca: ca_path,
        stranger_ca,
        dir,
    }
}

impl TlsBroker {
    /// `wss://localhost:PORT{path}`: the name the certificate carries.
    pub fn url(&self, path: &str) -> String {
        let port = self.server.tls_addr().expect("a TLS listener").port();
        format!("wss://localhost:{port}{path}")
    }

    /// TLS handshakes completed so far (full and resumed), all shards.
    pub fn handshakes(&self) -> u64 {
        self.server
            .stats()
            .iter()
            .map(|s| {
                s.tls_handshakes_full.load(Ordering::Relaxed)
                    + s.tls_handshakes_resumed.load(Ordering::Relaxed)
            })
            .sum()
    }

    /// TLS handshakes that failed (an alert was sent), all shards.
    pub fn failed_handshakes(&self) -> u64 {
        self.server
            .stats()
            .iter()
            .map(|s| s.tls_handshakes_failed.load(Ordering::Relaxed))
            .sum()
    }

    pub fn stop(self) {
        self.server.shutdown();
        self.server.join();
    }
}

/// A CA generated at test time. Each has its own name: two CAs with
/// rcgen's default name would look like one issuer to the verifier, which
/// then reports a bad signature instead of an unknown issuer.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names` (an address becomes an IP SAN): `(chain, key)`.
    fn leaf(&self, dir: &TempDir, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf params");
        let key = KeyPair::generate().expect("a leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("a leaf");
        (
            dir.write("chain.pem", &cert.pem()),
            dir.write("key.pem", &key.serialize_pem()),
        )
    }
}

/// A private directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lg-tls-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
