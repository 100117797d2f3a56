//! Replacing a broker on the same port (docs/operations.md "Upgrading with
//! zero downtime"). ringfan refuses a port another process already serves,
//! even one of its own (src/runtime/listener.rs: sharing it through
//! SO_REUSEPORT would silently split that process's traffic), so the new
//! binary starts once the old one has drained and exited. What that
//! procedure counts on, against the real binary on one fixed port:
//! the old broker's clients get 1001 (their cue to reconnect); a successor
//! started too early is refused with one line, not left half-bound; and once
//! the old process is gone the successor binds the port at once, although
//! the old connections are still closing, and serves the clients coming
//! back.

mod common;

use common::wsraw::{bounded, masked, RawWs, OP_TEXT};
use common::Broker;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now (the kernel's pick, released again).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe");
    l.local_addr().expect("probe address").port()
}

fn ringfan(addr: SocketAddr) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringfan"));
    cmd.args(["--listen", &addr.to_string(), "--no-pin", "--shards", "2"])
        .args(["--echo", "--drain-timeout", "3"]);
    cmd
}

/// Start ringfan on exactly `addr` and wait for its "listening on" line.
fn start_on(addr: SocketAddr) -> Broker {
    let mut child = ringfan(addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ringfan");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        let n = reader.read_line(&mut line).expect("read ringfan stdout");
        assert!(n > 0, "ringfan exited before listening on {addr}");
        assert!(Instant::now() < deadline, "ringfan did not start");
    }
    assert!(line.contains(&addr.to_string()), "{line}");
    // Keep reading stdout so the broker never blocks writing to it.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Broker {
        child,
        addr,
        tls_addr: None,
    }
}

async fn echo(ws: &mut RawWs, text: &str) {
    ws.send(&masked(OP_TEXT, text.as_bytes())).await;
    let f = ws.frame().await;
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, text.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successor_takes_the_port_once_the_old_broker_has_drained() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let mut old = start_on(addr);
    // Clients that never answer the server's close: they hold the drain
    // open for its whole --drain-timeout (3 s), the worst case.
    let mut clients = Vec::new();
    bounded(10, "connect to the old broker", async {
        for i in 0..4 {
            let mut ws = RawWs::connect(addr, "/echo").await;
            echo(&mut ws, &format!("old {i}")).await;
            clients.push(ws);
        }
    })
    .await;

    old.terminate();
    bounded(5, "1001 from the draining broker", async {
        for ws in &mut clients {
            assert_eq!(ws.frame().await.close_code(), Some(1001));
        }
    })
    .await;

    // Started while the old one drains: refused at once, with one line.
    let early = tokio::task::block_in_place(|| ringfan(addr).output()).expect("run successor");
    let err = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&format!("{addr} is already in use")), "{err}");

    let status = tokio::task::block_in_place(|| old.wait_exit(Duration::from_secs(10)))
        .expect("the old broker did not exit after its drain");
    assert!(status.success(), "old broker's exit: {status:?}");

    // The port is free for the successor now: the old connections, still
    // closing in the kernel (FIN_WAIT, TIME_WAIT), do not block it
    // (SO_REUSEADDR).
    let new = tokio::task::block_in_place(|| start_on(addr));
    bounded(10, "clients reconnect to the successor", async {
        for i in 0..4 {
            let mut ws = RawWs::connect(new.addr, "/echo").await;
            echo(&mut ws, &format!("new {i}")).await;
        }
    })
    .await;
}

/// The moment the old broker's process is gone, its port is free: a
/// successor started right after it exits binds at once. (An accept still
/// in flight in a shard's ring held the listening socket until the kernel
/// tore the ring down, after the exit: before `stop_accepting` in
/// src/runtime/accept.rs, 28 of 30 binds right after an exit failed, for
/// up to 11 ms, and the test above failed once in a while on it.)
#[test]
fn the_port_is_free_the_moment_the_old_broker_exits() {
    for round in 0..10 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let mut old = start_on(addr);
        old.terminate();
        let status = old.child.wait().expect("wait for the old broker");
        assert!(status.success(), "round {round}: {status:?}");
        // std's bind sets SO_REUSEADDR, as ringfan's does: only a socket
        // still listening on the port refuses it.
        if let Err(e) = TcpListener::bind(addr) {
            panic!("round {round}: {addr} still in use once the broker exited: {e}");
        }
    }
}
