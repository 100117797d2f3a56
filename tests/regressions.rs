//! Bugs found in review, pinned so they stay fixed.

mod common;

use common::wsraw::{bounded, masked, RawWs, OP_BINARY, OP_CLOSE, OP_TEXT};
use common::{rss_kib, Broker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client that sends echo requests and never reads used to grow the
/// server by gigabytes; now its queue is capped and it is closed. Reading
/// from it normally pauses first (backpressure, `--max-backlog-read`, see
/// runtime_bounds.rs); here the pause is set above the hard cap, so this
/// pins the cap itself (whether a pause beat the cap depended on timing).
#[tokio::test]
async fn client_that_never_reads_is_cut_off() {
    let b = Broker::start(&[
        "--shards",
        "2",
        "--echo",
        "--max-backlog-bytes",
        "4194304",
        "--max-backlog-read",
        "67108864",
    ]);
    let before = rss_kib(b.child.id());
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(b.addr).await.unwrap();
    // Panics unless the server answers 101.
    let mut ws = RawWs::upgrade(stream, "/echo").await;
    let chunk = masked(OP_BINARY, &vec![7u8; 256 * 1024]);
    // Offer up to 256 MiB without reading. Once the server gives up on us
    // it discards our input (or resets), so writing may go on; what matters
    // is that its memory does not follow.
    for _ in 0..1024 {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            ws.stream.write_all(&chunk),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let grown = rss_kib(b.child.id()).saturating_sub(before);
    assert!(grown < 64 * 1024, "server RSS grew by {grown} KiB");
    // What we were sent: some echoes, then close 1008, then EOF (or a
    // reset, if the server's close timeout cut us off first).
    let mut close = None;
    while let Ok(Some(f)) = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            if let Some((f, n)) = common::wsraw::parse(&ws.buf) {
                ws.buf.drain(..n);
                return Some(f);
            }
            let mut chunk = vec![0u8; 1 << 16];
            match ws.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => ws.buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    {
        if f.opcode == OP_CLOSE {
            close = f.close_code();
            break;
        }
        assert_eq!(f.opcode, OP_BINARY);
    }
    assert_eq!(
        close,
        Some(1008),
        "expected close 1008 (send queue overflow)"
    );
}

/// A client that sends its last request and half-closes (shutdown write)
/// still gets its answers.
#[tokio::test]
async fn half_closed_peers_get_their_replies() {
    let b = Broker::start(&["--shards", "2", "--echo"]);
    for _ in 0..10 {
        let mut s = tokio::net::TcpStream::connect(b.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        bounded(10, "healthz after half-close", s.read_to_end(&mut out))
            .await
            .unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );

        let mut ws = RawWs::connect(b.addr, "/echo").await;
        let mut bytes = masked(OP_TEXT, b"hello");
        bytes.extend(masked(OP_CLOSE, &1000u16.to_be_bytes()));
        ws.send(&bytes).await;
        ws.stream.shutdown().await.unwrap();
        let echo = ws.frame().await;
        assert_eq!(
            (echo.opcode, echo.payload.as_slice()),
            (OP_TEXT, &b"hello"[..])
        );
        ws.expect_close(1000).await;
    }
}
