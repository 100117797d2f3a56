//! End-to-end tests of the baseline broker: the real binary on an ephemeral
//! port, driven by tokio-tungstenite clients.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const STEP: Duration = Duration::from_secs(10);

/// The running binary; killed on drop so a failing test leaves nothing behind.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringfan-baseline"))
            .args(["--listen", "127.0.0.1:0", "--threads", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ringfan-baseline");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(STEP) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("no listening line within {STEP:?}");
            }
        };
        let addr = line
            .trim()
            .strip_prefix("ringfan-baseline: listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected start line {line:?}"))
            .to_owned();
        assert!(line.trim().ends_with("(2 threads)"), "{line:?}");
        Server { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    async fn connect(&self, path: &str) -> Client {
        let (ws, _) = timeout(STEP, connect_async(self.url(path)))
            .await
            .expect("connect timed out")
            .expect("connect");
        ws
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(ws: &mut Client, text: &str) {
    timeout(STEP, ws.send(Message::text(text)))
        .await
        .expect("send timed out")
        .expect("send");
}

/// The next text frame, as a string.
async fn recv(ws: &mut Client) -> String {
    loop {
        let msg = timeout(STEP, ws.next())
            .await
            .expect("recv timed out")
            .expect("stream ended")
            .expect("recv");
        match msg {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

async fn expect_ack(ws: &mut Client, id: u64) {
    let reply = recv(ws).await;
    assert_eq!(reply, format!(r#"{{"op":"ack","id":{id}}}"#));
}

#[derive(Deserialize)]
struct Msg<'a> {
    op: &'a str,
    topic: &'a str,
    seq: u64,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct Err {
    op: String,
    id: Option<u64>,
    code: String,
}

fn data_for(i: u64) -> String {
    // Odd spacing and key order: must come back byte for byte.
    format!(r#"{{ "i" : {i},"s":"x\u0041 y" , "a":[1, 2.50,null] }}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_in_order_with_acks() {
    let server = Server::start();
    let mut subs = Vec::new();
    for n in 0..2u64 {
        let mut ws = server.connect("/ws").await;
        send(
            &mut ws,
            &format!(r#"{{"op":"sub","topics":["a.b"],"id":{n}}}"#),
        )
        .await;
        expect_ack(&mut ws, n).await;
        subs.push(ws);
    }
    let mut publisher = server.connect("/ws").await;
    for i in 1..=100u64 {
        let req = format!(
            r#"{{"op":"pub","topic":"a.b","data":{},"id":{i}}}"#,
            data_for(i)
        );
        send(&mut publisher, &req).await;
    }
    for i in 1..=100u64 {
        expect_ack(&mut publisher, i).await;
    }
    for ws in &mut subs {
        for i in 1..=100u64 {
            let text = recv(ws).await;
            let msg: Msg<'_> = serde_json::from_str(&text).expect("msg is JSON");
            assert_eq!(msg.op, "msg");
            assert_eq!(msg.topic, "a.b");
            assert_eq!(msg.seq, i);
            assert_eq!(msg.data.get(), data_for(i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsub_stops_delivery() {
    let server = Server::start();
    let mut sub = server.connect("/ws").await;
    send(&mut sub, r#"{"op":"sub","topic":"t.one","id":1}"#).await;
    expect_ack(&mut sub, 1).await;
    send(&mut sub, r#"{"op":"sub","topic":"t.two","id":2}"#).await;
    expect_ack(&mut sub, 2).await;

    let mut publisher = server.connect("/ws").await;
    send(
        &mut publisher,
        r#"{"op":"pub","topic":"t.one","data":1,"id":1}"#,
    )
    .await;
    expect_ack(&mut publisher, 1).await;
    assert_eq!(
        recv(&mut sub).await,
        r#"{"op":"msg","topic":"t.one","seq":1,"data":1}"#
    );

    send(&mut sub, r#"{"op":"unsub","topics":["t.one"],"id":3}"#).await;
    expect_ack(&mut sub, 3).await;
    send(
        &mut publisher,
        r#"{"op":"pub","topic":"t.one","data":2,"id":2}"#,
    )
    .await;
    expect_ack(&mut publisher, 2).await;
    // A marker on a topic still subscribed: nothing from t.one may come first.
    send(
        &mut publisher,
        r#"{"op":"pub","topic":"t.two","data":null}"#,
    )
    .await;
    assert_eq!(
        recv(&mut sub).await,
        r#"{"op":"msg","topic":"t.two","seq":1,"data":null}"#
    );

    // The seq carries on across the gap in subscription.
    send(&mut sub, r#"{"op":"sub","topic":"t.one","id":4}"#).await;
    expect_ack(&mut sub, 4).await;
    send(
        &mut publisher,
        r#"{"op":"pub","topic":"t.one","data":"three"}"#,
    )
    .await;
    assert_eq!(
        recv(&mut sub).await,
        r#"{"op":"msg","topic":"t.one","seq":3,"data":"three"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors() {
    let server = Server::start();
    let mut ws = server.connect("/ws").await;

    send(&mut ws, r#"{"op":"sub","topic":"#).await;
    let e: Err = serde_json::from_str(&recv(&mut ws).await).expect("err is JSON");
    assert_eq!(
        (e.op.as_str(), e.code.as_str(), e.id),
        ("err", "bad_json", None)
    );

    send(&mut ws, r#"{"op":"jump","id":7}"#).await;
    let e: Err = serde_json::from_str(&recv(&mut ws).await).expect("err is JSON");
    assert_eq!((e.code.as_str(), e.id), ("bad_op", Some(7)));

    send(&mut ws, r#"{"op":"pub","topic":"x","id":8}"#).await;
    let e: Err = serde_json::from_str(&recv(&mut ws).await).expect("err is JSON");
    assert_eq!((e.code.as_str(), e.id), ("bad_op", Some(8)));

    timeout(STEP, ws.send(Message::binary(vec![1u8, 2, 3])))
        .await
        .expect("send timed out")
        .expect("send");
    let e: Err = serde_json::from_str(&recv(&mut ws).await).expect("err is JSON");
    assert_eq!((e.code.as_str(), e.id), ("bad_op", None));

    // The connection still works after all that.
    send(&mut ws, r#"{"op":"sub","topic":"ok","id":9}"#).await;
    expect_ack(&mut ws, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_echoes() {
    let server = Server::start();
    let mut ws = server.connect("/echo").await;
    for text in ["hello", "", "{\"not\":\"parsed\"}"] {
        send(&mut ws, text).await;
        assert_eq!(recv(&mut ws).await, text);
    }
    let blob: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    timeout(STEP, ws.send(Message::binary(blob.clone())))
        .await
        .expect("send timed out")
        .expect("send");
    let back = timeout(STEP, ws.next())
        .await
        .expect("recv timed out")
        .expect("stream ended")
        .expect("recv");
    assert_eq!(back, Message::binary(blob));
    timeout(STEP, ws.close(None))
        .await
        .expect("close timed out")
        .expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_is_404() {
    let server = Server::start();
    let result = timeout(STEP, connect_async(server.url("/nope")))
        .await
        .expect("connect timed out");
    match result {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 404),
        Err(e) => panic!("expected HTTP 404, got {e}"),
        Ok(_) => panic!("expected HTTP 404, got a WebSocket"),
    }
}

#[test]
fn sigterm_exits_cleanly() {
    let mut server = Server::start();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
