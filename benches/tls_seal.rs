//! Micro-benchmarks of `TlsSession`'s per-message paths on the server
//! side (issue #14): the unbuffered session the runtime uses against the
//! buffered one it replaced (`TlsSession::new_buffered`, kept for this).
//!
//! Groups (TLS 1.3, AES-256-GCM, aws-lc-rs; one established session each):
//! - `seal/1x100B`: one 100-byte WebSocket frame into one record;
//! - `seal/64x100B`: 64 such frames in one call (a turn's queue), one
//!   6,400-byte record;
//! - `feed/100B`: one record carrying 100 bytes from the client, decrypted
//!   into the caller's buffer (the client's sealing is outside the timing).
//!
//! Run with `cargo bench --bench tls_seal -- --warm-up-time 1
//! --measurement-time 3`; results are in `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rustls_pki_types::ServerName;

use ringfan::tls::{client_config, TlsError, TlsServer, TlsSession, TlsSettings, Trust};

const FRAME: usize = 100;

/// A server text frame of 100 bytes on the wire: FIN + text opcode, a
/// 7-bit length of 98, then JSON-ish payload.
fn ws_frame() -> [u8; FRAME] {
    let mut frame = [b'x'; FRAME];
    frame[0] = 0x81;
    frame[1] = (FRAME - 2) as u8;
    frame[2..9].copy_from_slice(b"{\"d\":\"x");
    frame[FRAME - 2..].copy_from_slice(b"\"}");
    frame
}

/// A self-signed certificate for `localhost` in a private temp directory
/// (the client trusts anything: `Trust::Insecure` still checks signatures).
fn server() -> (TlsServer, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ringfan-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let (chain, key_file) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&chain, cert.pem()).expect("write chain");
    std::fs::write(&key_file, key.serialize_pem()).expect("write key");
    let server = TlsServer::new(TlsSettings {
        certs: vec![(chain, key_file)],
    })
    .expect("server config");
    (server, dir)
}

/// A client session and a server session made by `new`, handshake done.
fn connected(
    server: &TlsServer,
    new: fn(Arc<rustls::ServerConfig>) -> Result<TlsSession, TlsError>,
) -> (TlsSession, TlsSession) {
    let config = client_config(Trust::Insecure).expect("client config");
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = TlsSession::client(config, name).expect("client");
    let mut s = new(server.config()).expect("server");
    let (mut to_s, mut to_c, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    c.pending(&mut to_s);
    for _ in 0..8 {
        s.feed(&to_s, &mut plain, &mut to_c).expect("server feed");
        to_s.clear();
        c.feed(&to_c, &mut plain, &mut to_s).expect("client feed");
        to_c.clear();
    }
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

type New = fn(Arc<rustls::ServerConfig>) -> Result<TlsSession, TlsError>;

const KINDS: [(&str, New); 2] = [
    ("established", TlsSession::new),
    ("buffered", TlsSession::new_buffered),
];

fn bench_seal(c: &mut Criterion) {
    let (server, dir) = server();
    let frame = ws_frame();
    let frames: Vec<&[u8]> = vec![&frame[..]; 64];
    let mut g = c.benchmark_group("seal");
    for (kind, new) in KINDS {
        let (_client, mut s) = connected(&server, new);
        let mut out = Vec::with_capacity(1 << 16);
        g.throughput(Throughput::Bytes(FRAME as u64));
        g.bench_function(BenchmarkId::new(kind, "1x100B"), |b| {
            b.iter(|| {
                out.clear();
                s.seal(black_box(&[&frame[..]]), &mut out).expect("seal");
                black_box(out.len())
            })
        });
        g.throughput(Throughput::Bytes(64 * FRAME as u64));
        g.bench_function(BenchmarkId::new(kind, "64x100B"), |b| {
            b.iter(|| {
                out.clear();
                s.seal(black_box(&frames), &mut out).expect("seal");
                black_box(out.len())
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

fn bench_feed(c: &mut Criterion) {
    let (server, dir) = server();
    let frame = ws_frame();
    let mut g = c.benchmark_group("feed");
    g.throughput(Throughput::Bytes(FRAME as u64));
    for (kind, new) in KINDS {
        let (mut client, mut s) = connected(&server, new);
        let mut plain = Vec::with_capacity(1 << 16);
        let mut out = Vec::with_capacity(1 << 16);
        g.bench_function(BenchmarkId::new(kind, "100B"), |b| {
            // Each record has the next sequence number: criterion makes a
            // batch of them in order, then feeds them in that order.
            b.iter_batched(
                || {
                    let mut record = Vec::with_capacity(256);
                    client
                        .seal(&[&frame[..]], &mut record)
                        .expect("client seal");
                    record
                },
                |record| {
                    plain.clear();
                    let feed = s.feed(&record, &mut plain, &mut out).expect("feed");
                    black_box(feed.plaintext)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_seal, bench_feed);
criterion_main!(benches);
