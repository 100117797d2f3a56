//! `--static DIR` against the real binary over real sockets: content
//! types, the index, 404s (no listings), traversal attempts (raw request
//! lines, so that no client library normalises them away), HEAD, 405,
//! 304 on a matching ETag, keep-alive, the size bound, SIGHUP reload,
//! symlinks leading out of DIR, and the same files over TLS.

mod common;

use common::Broker;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A response: status, headers (names lower-cased), body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse every response in `raw` (a keep-alive connection's answers, in
/// order); a `HEAD` answer has no body whatever its Content-Length, so
/// `heads` says which ones answered a HEAD.
fn parse_all(mut raw: &[u8], heads: &[bool]) -> Vec<Resp> {
    let mut out = Vec::new();
    for &head in heads {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(raw).expect("a well-formed response") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response: {raw:?}"),
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let status = r.code.expect("status");
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().expect("a number"))
            .unwrap_or(0);
        let len = if head || status == 304 { 0 } else { len };
        assert!(raw.len() >= n + len, "short body");
        out.push(Resp {
            status,
            headers,
            body: raw[n..n + len].to_vec(),
        });
        raw = &raw[n + len..];
    }
    assert!(raw.is_empty(), "bytes after the responses: {raw:?}");
    out
}

/// Send `raw` (one or more requests) and read until the server closes.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(raw).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    out
}

/// One request (closing), its response.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> Resp {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    let got = exchange(addr, raw.as_bytes());
    parse_all(&got, &[method == "HEAD"]).remove(0)
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, "")
}

/// A directory to serve, removed on drop.
struct Site(PathBuf);

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const INDEX: &str = "<!doctype html><title>board</title>\n";

fn site() -> Site {
    let root = std::env::temp_dir().join(format!(
        "ringfan-static-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let dir = root.join("www");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let w = |p: &str, b: &[u8]| std::fs::write(dir.join(p), b).unwrap();
    w("index.html", INDEX.as_bytes());
    for name in [
        "app.js",
        "m.mjs",
        "s.css",
        "d.json",
        "i.svg",
        "p.png",
        "favicon.ico",
        "t.txt",
        "app.js.map",
        "f.woff2",
        "blob.bin",
        "noext",
    ] {
        w(name, name.as_bytes());
    }
    w("sub/index.html", b"sub index\n");
    w("sub/a b.txt", b"spaced\n");
    w(".secret", b"hidden\n");
    w("big.bin", &vec![7u8; (1 << 20) + 1]);
    // Outside DIR, and a symlink to it from inside: not served.
    std::fs::write(root.join("outside.txt"), b"outside\n").unwrap();
    std::os::unix::fs::symlink(root.join("outside.txt"), dir.join("out.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
    // A symlink to a file inside is served.
    std::os::unix::fs::symlink(dir.join("t.txt"), dir.join("alias.txt")).unwrap();
    Site(root)
}

fn start(site: &Site) -> Broker {
    let dir = site.0.join("www");
    Broker::start(&["--shards", "1", "--static", dir.to_str().unwrap()])
}

#[test]
fn files_are_served_with_their_content_types() {
    let s = site();
    let b = start(&s);
    for (path, ty) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/m.mjs", "text/javascript; charset=utf-8"),
        ("/s.css", "text/css; charset=utf-8"),
        ("/d.json", "application/json"),
        ("/i.svg", "image/svg+xml"),
        ("/p.png", "image/png"),
        ("/favicon.ico", "image/x-icon"),
        ("/t.txt", "text/plain; charset=utf-8"),
        ("/app.js.map", "application/json"),
        ("/f.woff2", "font/woff2"),
        ("/blob.bin", "application/octet-stream"),
        ("/noext", "application/octet-stream"),
        ("/index.html", "text/html; charset=utf-8"),
    ] {
        let r = get(b.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("etag").is_some_and(|e| e.len() == 18), "{path}");
        if path != "/index.html" {
            assert_eq!(r.body, &path.as_bytes()[1..], "{path}");
        }
    }
    // A query string does not change the file; escapes are decoded.
    assert_eq!(get(b.addr, "/t.txt?v=3").body, b"t.txt");
    assert_eq!(get(b.addr, "/sub/a%20b.txt").body, b"spaced\n");
    // The endpoints keep their answers.
    assert_eq!(get(b.addr, "/healthz").body, b"ok\n");
    assert_eq!(get(b.addr, "/ws").status, 426);
    assert_eq!(get(b.addr, "/metrics").status, 200);
}

#[test]
fn index_redirects_and_no_listings() {
    let s = site();
    let b = start(&s);
    let root = get(b.addr, "/");
    assert_eq!(root.status, 200);
    assert_eq!(root.body, INDEX.as_bytes());
    assert_eq!(
        root.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(get(b.addr, "/sub/").body, b"sub index\n");
    let moved = get(b.addr, "/sub");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/sub/"));
    // A directory without index.html: no listing.
    assert_eq!(get(b.addr, "/empty/").status, 404);
    assert_eq!(get(b.addr, "/empty").status, 404);
    assert_eq!(get(b.addr, "/nope.html").status, 404);
    assert_eq!(get(b.addr, "/index.html/").status, 404);
    // Dot files are not served.
    assert_eq!(get(b.addr, "/.secret").status, 404);
}

#[test]
fn traversal_attempts_are_refused() {
    let s = site();
    let b = start(&s);
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e/",
        "/%2E%2E%2Foutside.txt",
        "/sub/../../outside.txt",
        "/./index.html",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/index.html%00.txt",
        "/%00",
        "/..%5c..%5coutside.txt",
        "/bad%zzescape",
    ] {
        let r = get(b.addr, path);
        assert!(
            r.status == 400 || r.status == 404,
            "{path}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.body.starts_with(b"outside"), "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{path}"
        );
    }
    // Absolute-form and asterisk targets.
    assert_eq!(get(b.addr, "*").status, 400);
    // Symlinks leading out of DIR (to a file, to /etc) are not served; one
    // to a file inside is.
    assert_eq!(get(b.addr, "/out.txt").status, 404);
    assert_eq!(get(b.addr, "/etc/passwd").status, 404);
    assert_eq!(get(b.addr, "/alias.txt").body, b"t.txt");
}

#[test]
fn head_405_304_413_and_keep_alive() {
    let s = site();
    let b = start(&s);
    let full = get(b.addr, "/app.js");
    let head = request(b.addr, "HEAD", "/app.js", "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("6"));
    assert_eq!(head.header("etag"), full.header("etag"));
    assert_eq!(head.header("content-type"), full.header("content-type"));
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = request(b.addr, method, "/app.js", "Content-Length: 0\r\n");
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    let etag = full.header("etag").unwrap();
    let same = request(
        b.addr,
        "GET",
        "/app.js",
        &format!("If-None-Match: W/\"x\", {etag}\r\n"),
    );
    assert_eq!(same.status, 304);
    assert_eq!(same.header("etag"), Some(etag));
    assert_eq!(same.header("content-length"), None);
    let other = request(b.addr, "GET", "/app.js", "If-None-Match: \"0\"\r\n");
    assert_eq!(other.status, 200);
    let big = get(b.addr, "/big.bin");
    assert_eq!(big.status, 413);
    // Three requests on one connection, answered in order; the last asks
    // to close.
    let raw = b"GET /t.txt HTTP/1.1\r\nHost: t\r\n\r\n\
                HEAD /s.css HTTP/1.1\r\nHost: t\r\n\r\n\
                GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let got = parse_all(&exchange(b.addr, raw), &[false, true, false]);
    assert_eq!(got[0].body, b"t.txt");
    assert_eq!(got[0].header("connection"), None);
    assert_eq!(got[1].status, 200);
    assert_eq!(got[2].body, INDEX.as_bytes());
    assert_eq!(got[2].header("connection"), Some("close"));
}

#[test]
fn sighup_reloads_the_files() {
    let s = site();
    let b = start(&s);
    let path = s.0.join("www/t.txt");
    let before = get(b.addr, "/t.txt");
    std::fs::write(&path, b"changed").unwrap();
    std::fs::write(s.0.join("www/new.txt"), b"new").unwrap();
    // Read at start-up: unchanged until SIGHUP.
    assert_eq!(get(b.addr, "/t.txt").body, b"t.txt");
    assert_eq!(get(b.addr, "/new.txt").status, 404);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(b.addr, "/t.txt");
        if r.body == b"changed" {
            assert_ne!(r.header("etag"), before.header("etag"));
            break;
        }
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(b.addr, "/new.txt").body, b"new");
}

#[test]
fn a_missing_directory_refuses_to_start() {
    let bin = env!("CARGO_BIN_EXE_ringfan");
    let out = std::process::Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--static",
            "/nonexistent/ringfan",
        ])
        .output()
        .expect("run ringfan");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--static") && err.contains("/nonexistent/ringfan"),
        "{err}"
    );
}

/// The same files over the TLS listener.
#[test]
fn files_are_served_over_tls() {
    let s = site();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&leaf_key)
        .unwrap();
    let (chain, key) = (s.0.join("chain.pem"), s.0.join("key.pem"));
    std::fs::write(&chain, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let dir = s.0.join("www");
    let b = Broker::start(&[
        "--shards",
        "1",
        "--listen-tls",
        "127.0.0.1:0",
        "--tls-cert",
        path_str(&chain),
        "--tls-key",
        path_str(&key),
        "--static",
        path_str(&dir),
    ]);
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(leaf.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(Arc::new(client), name).unwrap();
    let tcp = TcpStream::connect(b.tls_addr.expect("tls address")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n\
          GET /%2e%2e/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    // The server closes after the 400; close_notify or not, what came is
    // what we judge.
    let _ = tls.read_to_end(&mut raw);
    let got = parse_all(&raw, &[false, false]);
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].body, INDEX.as_bytes());
    assert_eq!(got[1].status, 400);
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}
