//! `POST /publish`: backends publish over HTTP without holding a
//! WebSocket (docs/protocol.md, "HTTP publish API").
//!
//! The body is `{"topic":…,"data":…}` or `{"messages":[{"topic":…,
//! "data":…},…]}`; the answer carries the seq each message got. Who may
//! publish: an API key (`--publish-key-file`), or a JWT with `pub`
//! permissions when `--auth` is on; with neither configured, anyone, as
//! with a WebSocket `pub` under `--auth off`. Every refusal is JSON
//! `{"error":code,"message":…}` with the codes of the WebSocket `err`.

use super::api_keys::ApiKeys;
use super::auth::{Gate, Mode};
use crate::broker::auth::Authenticator;
use crate::broker::batch::{BatchError, BatchOutcome};
use crate::broker::permissions::Permissions;
use crate::broker::wire::ErrCode;
use crate::runtime::HttpReply;
use crate::ws::handshake::Request;
use crate::ws::http;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;

/// Most messages in one request: a batch is published in one loop turn,
/// and 10,000 publishes of ~1 µs each hold the shard's fan-out ~10 ms.
pub const MAX_BATCH: usize = 10_000;

/// Who may publish over HTTP, as configured.
#[derive(Clone, Default)]
pub struct PublishAuth {
    pub keys: Option<Arc<ApiKeys>>,
    pub gate: Option<Arc<Gate>>,
}

/// A request's refusal: its status, `err` code and message.
pub struct Refused {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Which message of a batch, when one was at fault.
    pub index: Option<usize>,
    /// Close the connection after it (a failed credential: a client that
    /// guesses keys pays a connection per guess).
    pub close: bool,
}

impl Refused {
    pub(super) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            index: None,
            close: false,
        }
    }

    pub(super) fn new_close(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            close: true,
            ..Self::new(status, code, message)
        }
    }

    /// The HTTP answer.
    pub fn reply(&self, keep_alive: bool) -> HttpReply {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        if let Some(i) = self.index {
            body["index"] = i.into();
        }
        let mut headers: Vec<(&str, &str)> = Vec::new();
        match self.status {
            401 => headers.push(("WWW-Authenticate", "Bearer")),
            405 => headers.push(("Allow", "POST")),
            429 | 503 => headers.push(("Retry-After", "1")),
            _ => {}
        }
        json_reply(self.status, &headers, &body, keep_alive && !self.close)
    }
}

pub(super) fn json_reply(
    status: u16,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    keep_alive: bool,
) -> HttpReply {
    let mut text = body.to_string();
    text.push('\n');
    let r = http::response(
        status,
        headers,
        "application/json",
        text.as_bytes(),
        !keep_alive,
    );
    match keep_alive {
        true => HttpReply::KeepAlive(r),
        false => HttpReply::Close(r),
    }
}

impl PublishAuth {
    /// What the request's credential may publish to.
    pub fn permissions(&self, request: &Request) -> Result<Arc<Permissions>, Refused> {
        let unauthorized = |m: String| Refused {
            close: true,
            ..Refused::new(401, ErrCode::Unauthorized.as_str(), m)
        };
        let Some(bearer) = request.bearer.as_deref() else {
            return match (&self.keys, &self.gate) {
                (None, None) => Ok(Arc::new(Permissions::all())),
                (_, Some(g)) if g.mode() == Mode::Optional => Ok(g.anonymous()),
                _ => Err(unauthorized(
                    "an API key or token is required (Authorization: Bearer)".into(),
                )),
            };
        };
        if let Some(perms) = self.keys.as_ref().and_then(|k| k.get(bearer)) {
            return Ok(perms);
        }
        match &self.gate {
            Some(g) => g
                .verify(bearer)
                .map(|grant| grant.perms)
                .map_err(|r| unauthorized(format!("invalid token: {}", r.message))),
            None if self.keys.is_some() => Err(unauthorized("unknown API key".into())),
            // No credentials configured: a bearer means nothing.
            None => Ok(Arc::new(Permissions::all())),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<Vec<Message<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message<'a> {
    #[serde(borrow)]
    topic: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A request's messages, borrowed from its body where JSON allows
/// (a topic with escapes is unescaped into its own string).
pub struct Parsed<'a> {
    pub messages: Vec<(Cow<'a, str>, &'a str)>,
    /// `{"messages":[…]}`: answered with `seqs`, not `seq`.
    pub batch: bool,
}

/// Parse a `/publish` body.
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, Refused> {
    let bad = |m: String| Refused::new(400, ErrCode::BadJson.as_str(), m);
    let b: Body<'_> = serde_json::from_slice(body).map_err(|e| bad(format!("body: {e}")))?;
    match (b.topic, b.data, b.messages) {
        (Some(topic), Some(data), None) => Ok(Parsed {
            messages: vec![(topic, data.get())],
            batch: false,
        }),
        (None, None, Some(list)) => {
            if list.is_empty() {
                return Err(bad("messages is empty".into()));
            }
            if list.len() > MAX_BATCH {
                return Err(Refused::new(
                    413,
                    ErrCode::TooLarge.as_str(),
                    format!(
                        "{} messages in one request (at most {MAX_BATCH})",
                        list.len()
                    ),
                ));
            }
            Ok(Parsed {
                messages: list.into_iter().map(|m| (m.topic, m.data.get())).collect(),
                batch: true,
            })
        }
        (None, None, None) => Err(bad(
            "expected {\"topic\":…,\"data\":…} or {\"messages\":[…]}".into(),
        )),
        (_, _, Some(_)) => Err(bad("messages goes without topic and data".into())),
        (Some(_), None, _) => Err(bad("missing field `data`".into())),
        (None, Some(_), _) => Err(bad("missing field `topic`".into())),
    }
}

/// The broker's refusal of a whole batch, as HTTP.
pub fn batch_refused(e: BatchError, batch: bool) -> Refused {
    let status = match e.code {
        ErrCode::TooLarge => 413,
        ErrCode::Forbidden => 403,
        ErrCode::RateLimited => 429,
        _ => 400,
    };
    Refused {
        index: batch.then_some(e.index),
        ..Refused::new(status, e.code.as_str(), e.message)
    }
}

/// The answer once every message was numbered or refused: 200 with the
/// seqs, or 429 when some were not published (their seq `null`: retry
/// exactly those).
pub fn outcome_reply(outcome: &BatchOutcome, batch: bool, keep_alive: bool) -> HttpReply {
    let seqs = |o: &BatchOutcome| -> serde_json::Value {
        match batch {
            true => o.seqs.to_vec().into(),
            false => o.seqs.first().copied().flatten().into(),
        }
    };
    let key = if batch { "seqs" } else { "seq" };
    match outcome.refused {
        None => json_reply(
            200,
            &[],
            &serde_json::json!({ key: seqs(outcome) }),
            keep_alive,
        ),
        // Cluster mode: not confirmed by the stream (issue #18).
        Some(why) if why == crate::broker::batch::UNAVAILABLE => {
            let body = serde_json::json!({
                "error": ErrCode::Unavailable.as_str(),
                "message": why,
                key: seqs(outcome),
            });
            json_reply(503, &[("Retry-After", "1")], &body, keep_alive)
        }
        Some(why) => {
            let body = serde_json::json!({
                "error": ErrCode::RateLimited.as_str(),
                "message": why,
                key: seqs(outcome),
            });
            json_reply(429, &[("Retry-After", "1")], &body, keep_alive)
        }
    }
}
