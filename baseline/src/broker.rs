//! Per-connection tasks and the shared topic table.
//!
//! Each `/ws` connection gets a reader (the connection's own task) that parses
//! requests and a writer task that drains an unbounded channel of frames into
//! the socket. Publishing locks the one topic table, bumps the topic's seq,
//! serialises the `msg` once and hands a clone to every subscriber's channel.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{accept_hdr_async, WebSocketStream};

type Ws = WebSocketStream<TcpStream>;
type Outbox = UnboundedSender<Message>;

#[derive(Default)]
struct Topic {
    seq: u64,
    subscribers: HashMap<u64, Outbox>,
}

/// All topics, by exact name. Topics are kept once created so their seq
/// carries on across subscriber churn.
#[derive(Clone, Default)]
pub struct State {
    topics: Arc<Mutex<HashMap<String, Topic>>>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Topic>> {
        // A panic elsewhere cannot leave the map half-updated in a way that
        // matters here, so keep serving rather than propagate the poison.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self, conn: u64, outbox: &Outbox, topics: &[String]) {
        let mut map = self.lock();
        for name in topics {
            map.entry(name.clone())
                .or_default()
                .subscribers
                .insert(conn, outbox.clone());
        }
    }

    fn unsubscribe<'a>(&self, conn: u64, topics: impl IntoIterator<Item = &'a String>) {
        let mut map = self.lock();
        for name in topics {
            if let Some(topic) = map.get_mut(name) {
                topic.subscribers.remove(&conn);
            }
        }
    }

    fn publish(&self, topic: &str, data: &RawValue) {
        let mut map = self.lock();
        let entry = match map.get_mut(topic) {
            Some(t) => t,
            None => map.entry(topic.to_owned()).or_default(),
        };
        entry.seq += 1;
        let msg = Msg {
            op: "msg",
            topic,
            seq: entry.seq,
            data,
        };
        let frame = match serde_json::to_string(&msg) {
            Ok(s) => Message::text(s),
            Err(e) => {
                eprintln!("ringfan-baseline: cannot encode msg: {e}");
                return;
            }
        };
        for outbox in entry.subscribers.values() {
            // A closed channel means the subscriber is going away; its reader
            // removes it from the table shortly.
            let _ = outbox.send(frame.clone());
        }
    }
}

/// A client request; unknown fields are ignored.
#[derive(Deserialize)]
struct Req<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    id: Option<u64>,
    /// `Some` even for JSON `null`: null is data, absence is an error.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Serialize)]
struct Msg<'a> {
    op: &'static str,
    topic: &'a str,
    seq: u64,
    data: &'a RawValue,
}

#[derive(Serialize)]
struct ErrReply<'a> {
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    code: &'static str,
    message: &'a str,
}

fn ack(outbox: &Outbox, id: Option<u64>) {
    if let Some(id) = id {
        let _ = outbox.send(Message::text(format!(r#"{{"op":"ack","id":{id}}}"#)));
    }
}

fn err(outbox: &Outbox, id: Option<u64>, code: &'static str, message: &str) {
    let reply = ErrReply {
        op: "err",
        id,
        code,
        message,
    };
    if let Ok(s) = serde_json::to_string(&reply) {
        let _ = outbox.send(Message::text(s));
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    PubSub,
    Echo,
}

// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
pub async fn handle_connection(stream: TcpStream, state: State, conn: u64) {
    let _ = stream.set_nodelay(true);
    let mut endpoint = None;
    let handshake = accept_hdr_async(stream, |req: &Request, resp: Response| {
        match req.uri().path() {
            "/ws" => endpoint = Some(Endpoint::PubSub),
            "/echo" => endpoint = Some(Endpoint::Echo),
            _ => {
                let mut not_found = ErrorResponse::new(Some("not found\n".to_owned()));
                *not_found.status_mut() = StatusCode::NOT_FOUND;
                return Err(not_found);
            }
        }
        Ok(resp)
    })
    .await;
    let ws = match handshake {
        Ok(ws) => ws,
        Err(_) => return, // bad request, 404, or the peer went away
    };
    match endpoint {
        Some(Endpoint::PubSub) => pubsub(ws, state, conn).await,
        Some(Endpoint::Echo) => echo(ws).await,
        None => {}
    }
}

async fn echo(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(_) => break,
            // Pings are answered by tungstenite itself.
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    }
    let _ = ws.close(None).await;
}

async fn pubsub(ws: Ws, state: State, conn: u64) {
    let (sink, mut stream) = ws.split();
    let (outbox, inbox) = unbounded_channel();
    tokio::spawn(writer(sink, inbox));

    let mut subscribed: HashSet<String> = HashSet::new();
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(text) => {
                handle_request(&state, conn, &outbox, &mut subscribed, text.as_str())
            }
            Message::Binary(_) => err(&outbox, None, "bad_op", "binary frames are not supported"),
            Message::Close(_) => break,
            _ => {}
        }
    }

    state.unsubscribe(conn, &subscribed);
    // With the table's clones gone, dropping ours ends the writer once it has
    // sent what is queued.
    drop(outbox);
}

/// Drains the connection's channel into the socket, flushing once the channel
/// is momentarily empty rather than once per frame.
async fn writer(mut sink: SplitSink<Ws, Message>, mut inbox: UnboundedReceiver<Message>) {
    while let Some(msg) = inbox.recv().await {
        if sink.feed(msg).await.is_err() {
            return;
        }
        while let Ok(msg) = inbox.try_recv() {
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

fn handle_request(
    state: &State,
    conn: u64,
    outbox: &Outbox,
    subscribed: &mut HashSet<String>,
    text: &str,
) {
    let req: Req<'_> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let code = if e.is_syntax() || e.is_eof() {
                "bad_json"
            } else {
                "bad_op"
            };
            err(outbox, salvage_id(text), code, &e.to_string());
            return;
        }
    };
    let id = req.id;
    match req.op.as_ref() {
        "sub" | "unsub" => {
            let topics = match (req.topics, req.topic) {
                (Some(list), None) if !list.is_empty() => list,
                (None, Some(one)) => vec![one],
                _ => {
                    err(outbox, id, "bad_op", "need exactly one of topic or topics");
                    return;
                }
            };
            if req.op == "sub" {
                state.subscribe(conn, outbox, &topics);
                subscribed.extend(topics);
            } else {
                state.unsubscribe(conn, &topics);
                for t in &topics {
                    subscribed.remove(t);
                }
            }
            ack(outbox, id);
        }
        "pub" => match (req.topic, req.data) {
            (Some(topic), Some(data)) => {
                state.publish(&topic, data);
                ack(outbox, id);
            }
            _ => err(outbox, id, "bad_op", "pub needs topic and data"),
        },
        other => err(outbox, id, "bad_op", &format!("unknown op {other:?}")),
    }
}

/// Best effort to find `id` in a request that failed to parse as a whole.
fn salvage_id(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|i| i.id)
}
