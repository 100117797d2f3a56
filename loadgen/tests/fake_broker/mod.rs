//! A broker that misbehaves on purpose, for the tests. It speaks just enough
//! of the protocol for `fanout` (it acknowledges subscriptions and publishes
//! like ringfan and forwards each publish to every subscriber as a `msg`),
//! but the seqs it delivers for its n-th publish follow a script: skip one,
//! repeat one, swap two.
//!
//! Plain threads and blocking sockets on loopback; the frames are ringfan's
//! own sans-IO WebSocket core, server side.

use ringfan::ws::handshake::{self, Outcome};
use ringfan::ws::{Connection, Event, OpCode, Read, Role};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The seqs to deliver for publish `n` (0-based), in order; empty to lose it.
pub type Script = fn(usize) -> Vec<u64>;

/// Starts the broker on a free loopback port; it serves until the test
/// process ends.
pub fn start(script: Script) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(Shared {
        script,
        subscribers: Mutex::default(),
        published: Mutex::default(),
    });
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || serve(s, &shared));
        }
    });
    addr
}

struct Shared {
    script: Script,
    subscribers: Mutex<Vec<TcpStream>>,
    /// Publishes so far: the script's `n`.
    published: Mutex<usize>,
}

/// Completes the WebSocket handshake; returns what the client sent after it.
fn accept(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let cfg = handshake::Config::default();
    loop {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).unwrap_or(0);
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&b[..n]);
        match handshake::accept(&head, &cfg) {
            Outcome::Partial => continue,
            Outcome::Upgrade { consumed, upgrade } => {
                s.write_all(&upgrade.response).ok()?;
                return Some(head[consumed..].to_vec());
            }
            _ => return None,
        }
    }
}

fn text_frame(text: &str) -> Vec<u8> {
    ringfan::ws::frame::server_frame(OpCode::Text, text.as_bytes()).to_vec()
}

fn serve(mut s: TcpStream, shared: &Shared) {
    let Some(rest) = accept(&mut s) else {
        return;
    };
    let mut ws = Connection::new(Role::Server, 1 << 20);
    let mut buf = rest;
    let mut out = s.try_clone().unwrap();
    loop {
        let mut replies = Vec::new();
        let ok = read_frames(&mut s, &mut ws, &mut buf, |m| {
            let v: serde_json::Value = serde_json::from_slice(m).unwrap();
            let id = v["id"].as_u64().unwrap_or(0);
            match v["op"].as_str() {
                Some("sub") => {
                    let me = out.try_clone().unwrap();
                    shared.subscribers.lock().unwrap().push(me);
                }
                Some("pub") => deliver(shared, &v),
                _ => return,
            }
            replies.push(format!(r#"{{"op":"ack","id":{id}}}"#));
        });
        for r in replies {
            if out.write_all(&text_frame(&r)).is_err() {
                return;
            }
        }
        if !ok {
            // Closes the socket under every clone (the subscriber list holds
            // one), so the client sees the end now, not at its close timeout.
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Forwards a publish to every subscriber with the seqs the script gives.
fn deliver(shared: &Shared, publish: &serde_json::Value) {
    let topic = publish["topic"].as_str().unwrap_or("");
    let data = serde_json::to_string(&publish["data"]).unwrap();
    let mut n = shared.published.lock().unwrap();
    for seq in (shared.script)(*n) {
        let msg = format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"data":{data}}}"#);
        let f = text_frame(&msg);
        for sub in shared.subscribers.lock().unwrap().iter_mut() {
            let _ = sub.write_all(&f);
        }
    }
    *n += 1;
}

/// Reads what is there and hands each whole message to `on`; false once
/// the connection is closed or broken.
fn read_frames(
    s: &mut TcpStream,
    ws: &mut Connection,
    buf: &mut Vec<u8>,
    mut on: impl FnMut(&[u8]),
) -> bool {
    let mut chunk = [0u8; 4096];
    let n = match s.read(&mut chunk) {
        Ok(0) | Err(_) => return false,
        Ok(n) => n,
    };
    buf.extend_from_slice(&chunk[..n]);
    let mut off = 0;
    loop {
        match ws.read(&mut buf[off..]) {
            Ok(Read::Frame { consumed, event }) => {
                if let Some(Event::Message(m)) = event {
                    on(m.payload);
                } else if let Some(Event::Close { .. }) = event {
                    return false;
                }
                off += consumed;
            }
            Ok(Read::Incomplete { .. }) => break,
            Err(_) => return false,
        }
    }
    buf.drain(..off);
    true
}
