//! The admin API (docs/operations.md, "Admin API"): on its own listener
//! (`--admin-listen`, loopback by default), what an operator needs to see
//! and do that `/metrics` cannot say without a label per connection or per
//! topic: which connections are slow, which topics exist, and a way to
//! disconnect one.
//!
//! Every shard holds some of the connections and owns some of the topics,
//! so a query is answered by all of them: the shard that took the request
//! asks the others by mail (`Mail::Host`, opaque to the broker), merges
//! their parts and answers when the last one is in. A topic's subscriber
//! count is a second round: the owners know their topics, every shard its
//! subscribers.
//!
//! Liveness (`/healthz`) and readiness (`/readyz`) and `/metrics` need no
//! token (probes and scrapers carry none); everything under `/admin/`
//! needs `Authorization: Bearer <token>` from `--admin-token-file`.

use super::api_keys::digest;
use crate::broker::Mail;
use crate::runtime::{ConnId, HttpReply, Io};
use crate::ws::handshake::Request;
use serde_json::{json, Value};
use slab::Slab;
use std::path::Path;
use std::sync::Arc;

/// Rows a listing returns unless `limit` says (and the most it may say):
/// 10,000 rows of ~200 bytes is a 2 MB answer.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 10_000;

/// Close code and reason for a connection an operator disconnects.
pub const DISCONNECT_CODE: u16 = 1008;
pub const DISCONNECT_REASON: &str = "disconnected by an operator";

/// The admin token, kept as its SHA-256 digest (as API keys are).
pub struct AdminToken([u8; 32]);

impl AdminToken {
    /// Read the token file: its one line, at least 16 characters. The
    /// error names the file, never the token.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < super::api_keys::MIN_KEY_LEN || token.contains(char::is_whitespace) {
            return Err(format!(
                "{}: the token must be one word of at least {} characters",
                path.display(),
                super::api_keys::MIN_KEY_LEN
            ));
        }
        Ok(Self(digest(token)))
    }

    fn admits(&self, bearer: Option<&str>) -> bool {
        bearer.is_some_and(|b| digest(b) == self.0)
    }
}

/// What `GET /admin/connections` sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    QueuedBytes,
    Age,
    Subscriptions,
    Dropped,
    Conflated,
}

impl SortBy {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued_bytes" => Self::QueuedBytes,
            "age" => Self::Age,
            "subscriptions" => Self::Subscriptions,
            "dropped" => Self::Dropped,
            "conflated" => Self::Conflated,
            _ => return None,
        })
    }

    fn key(self, r: &ConnRow) -> u64 {
        match self {
            Self::QueuedBytes => r.queued_bytes as u64,
            Self::Age => r.age_ms,
            Self::Subscriptions => r.subscriptions as u64,
            Self::Dropped => r.dropped,
            Self::Conflated => r.conflated,
        }
    }
}

/// A listing's order and size.
#[derive(Debug, Clone, Copy)]
pub struct Listing {
    pub sort: SortBy,
    pub descending: bool,
    pub limit: usize,
}

/// One connection, as listed.
#[derive(Debug, Clone)]
pub struct ConnRow {
    pub shard: usize,
    pub conn: ConnId,
    pub peer: Option<std::net::SocketAddr>,
    pub user: Option<Box<str>>,
    pub tls: bool,
    pub subscriptions: usize,
    pub queued_bytes: usize,
    pub dropped: u64,
    pub conflated: u64,
    pub age_ms: u64,
}

impl ConnRow {
    fn json(&self) -> Value {
        json!({
            "id": conn_id(self.shard, self.conn),
            "shard": self.shard,
            "peer": self.peer.map(|p| p.to_string()),
            "user": self.user.as_deref(),
            "tls": self.tls,
            "subscriptions": self.subscriptions,
            "queued_bytes": self.queued_bytes,
            "dropped": self.dropped,
            "conflated": self.conflated,
            "age_ms": self.age_ms,
        })
    }
}

/// A connection's id in the admin API: `shard.key.gen`.
pub fn conn_id(shard: usize, c: ConnId) -> String {
    format!("{shard}.{}.{}", c.key, c.gen)
}

fn parse_conn_id(s: &str) -> Option<(usize, ConnId)> {
    let mut it = s.split('.');
    let shard = it.next()?.parse().ok()?;
    let key = it.next()?.parse().ok()?;
    let gen = it.next()?.parse().ok()?;
    it.next().is_none().then_some((shard, ConnId { key, gen }))
}

/// One topic, as listed.
#[derive(Debug, Clone)]
pub struct TopicRow {
    pub topic: Box<str>,
    pub seq: u64,
    pub idle_ms: u64,
    pub retained_bytes: usize,
    pub subscribers: usize,
}

/// What shards send each other for the admin API (inside `Mail::Host`).
pub enum AdminMail {
    Conns {
        req: u32,
        listing: Listing,
    },
    ConnRows {
        req: u32,
        total: usize,
        rows: Vec<ConnRow>,
    },
    Topics {
        req: u32,
        prefix: Box<str>,
        limit: usize,
    },
    TopicRows {
        req: u32,
        rows: Vec<TopicRow>,
    },
    Count {
        req: u32,
        topics: Arc<[Box<str>]>,
    },
    Counts {
        req: u32,
        counts: Vec<usize>,
    },
    Disconnect {
        req: u32,
        conn: ConnId,
    },
    Disconnected {
        req: u32,
        ok: bool,
    },
}

/// A query waiting for the other shards' parts.
pub struct Gather {
    pub conn: ConnId,
    pub head: bool,
    pub waiting: usize,
    pub what: Gathering,
}

pub enum Gathering {
    Conns {
        listing: Listing,
        total: usize,
        rows: Vec<ConnRow>,
    },
    Topics {
        limit: usize,
        rows: Vec<TopicRow>,
        counting: bool,
    },
    Disconnect {
        ok: bool,
    },
}

/// The admin API's per-shard state.
#[derive(Default)]
pub struct Admin {
    pub token: Option<Arc<AdminToken>>,
    pub gathers: Slab<Gather>,
    /// The gather `start_gather` is starting (its own parts come in while
    /// it runs, and it answers them itself).
    pub starting: Option<u32>,
}

/// A JSON answer; `head` leaves the body out (its length stays).
pub fn json_reply(status: u16, body: &Value, head: bool) -> HttpReply {
    match super::publish::json_reply(status, &[], body, false) {
        HttpReply::Close(r) if head => HttpReply::Close(head_only(r)),
        reply => reply,
    }
}

/// A response without its body (for `HEAD`): everything up to the blank
/// line that ends the head.
pub fn head_only(r: bytes::Bytes) -> bytes::Bytes {
    match r.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => r.slice(..i + 4),
        None => r,
    }
}

fn error(status: u16, code: &str, message: &str, head: bool) -> HttpReply {
    json_reply(status, &json!({ "error": code, "message": message }), head)
}

/// `key=value` pairs of a query string (no percent-decoding: the values
/// the admin API takes are plain words, numbers and topic prefixes).
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn limit_of(query: Option<&str>) -> Result<usize, String> {
    match param(query, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!("limit must be a number from 1 to {MAX_LIMIT}")),
        },
    }
}

/// What an `/admin/...` request asks for, checked.
pub enum Ask {
    Conns(Listing),
    Topics {
        prefix: Box<str>,
        limit: usize,
    },
    Disconnect {
        shard: usize,
        conn: ConnId,
    },
    /// `--cluster`: the NATS link and the stream (no shard to ask).
    Cluster,
}

/// Route and check an `/admin/...` request: what to gather, or the
/// answer refusing it.
pub fn ask(request: &Request, token: Option<&AdminToken>, head: bool) -> Result<Ask, HttpReply> {
    let Some(token) = token else {
        let msg = "the admin API is off: start ringfan with --admin-token-file";
        return Err(error(404, "not_found", msg, head));
    };
    if !token.admits(request.bearer.as_deref()) {
        let msg = "admin token missing or wrong (Authorization: Bearer)";
        return Err(error(401, "unauthorized", msg, head));
    }
    let method = &*request.method;
    let query = request.query.as_deref();
    let bad = |m: String| error(400, "bad_request", &m, head);
    match (&*request.path, method) {
        ("/admin/connections", "GET" | "HEAD") => {
            let sort = match param(query, "sort") {
                None => SortBy::QueuedBytes,
                Some(s) => SortBy::parse(s).ok_or_else(|| {
                    bad(format!(
                        "sort must be queued_bytes, age, subscriptions, dropped or conflated, not '{s}'"
                    ))
                })?,
            };
            let descending = match param(query, "order") {
                None | Some("desc") => true,
                Some("asc") => false,
                Some(o) => return Err(bad(format!("order must be asc or desc, not '{o}'"))),
            };
            let limit = limit_of(query).map_err(bad)?;
            Ok(Ask::Conns(Listing {
                sort,
                descending,
                limit,
            }))
        }
        ("/admin/cluster", "GET" | "HEAD") => Ok(Ask::Cluster),
        ("/admin/topics", "GET" | "HEAD") => Ok(Ask::Topics {
            prefix: param(query, "prefix").unwrap_or("").into(),
            limit: limit_of(query).map_err(bad)?,
        }),
        (p, "DELETE") if p.starts_with("/admin/connections/") => {
            let id = &p["/admin/connections/".len()..];
            match parse_conn_id(id) {
                Some((shard, conn)) => Ok(Ask::Disconnect { shard, conn }),
                None => Err(bad(format!(
                    "'{id}' is not a connection id (shard.key.gen)"
                ))),
            }
        }
        ("/admin/connections" | "/admin/topics" | "/admin/cluster", _) => Err(json_reply(
            405,
            &json!({"error": "bad_op", "message": "use GET"}),
            head,
        )),
        _ => Err(error(404, "not_found", "no such admin endpoint", head)),
    }
}

/// This shard's connections, sorted and cut to the listing's limit, and
/// how many there were.
pub fn local_conns(
    broker: &crate::broker::Broker,
    io: &Io<'_, Mail>,
    listing: Listing,
) -> (usize, Vec<ConnRow>) {
    let shard = io.shard();
    let mut rows: Vec<ConnRow> = broker
        .connections()
        .into_iter()
        .filter_map(|v| {
            let conn = ConnId {
                key: v.client.slot,
                gen: v.client.gen,
            };
            let info = io.conn_info(conn)?;
            Some(ConnRow {
                shard,
                conn,
                peer: info.peer,
                user: v.user,
                tls: info.tls,
                subscriptions: v.subscriptions,
                queued_bytes: info.queued_bytes,
                dropped: v.dropped,
                conflated: v.conflated,
                age_ms: info.age_ms,
            })
        })
        .collect();
    let total = rows.len();
    sort_rows(&mut rows, listing);
    (total, rows)
}

/// Sort by the listing's key (ties by id, so pages are stable) and cut.
pub fn sort_rows(rows: &mut Vec<ConnRow>, listing: Listing) {
    rows.sort_by(|a, b| {
        let (ka, kb) = (listing.sort.key(a), listing.sort.key(b));
        let by = if listing.descending {
            kb.cmp(&ka)
        } else {
            ka.cmp(&kb)
        };
        by.then((a.shard, a.conn.key, a.conn.gen).cmp(&(b.shard, b.conn.key, b.conn.gen)))
    });
    rows.truncate(listing.limit);
}

/// The answer to a finished gather.
pub fn finished(g: Gather) -> HttpReply {
    match g.what {
        Gathering::Conns {
            total,
            mut rows,
            listing,
        } => {
            // Each shard sent its best `limit`; the best of those.
            sort_rows(&mut rows, listing);
            json_reply(
                200,
                &json!({
                    "total": total,
                    "connections": rows.iter().map(ConnRow::json).collect::<Vec<_>>(),
                }),
                g.head,
            )
        }
        Gathering::Topics {
            mut rows, limit, ..
        } => {
            rows.sort_by(|a, b| a.topic.cmp(&b.topic));
            let truncated = rows.len() > limit;
            rows.truncate(limit);
            let list: Vec<Value> = rows
                .iter()
                .map(|t| {
                    json!({
                        "topic": &*t.topic,
                        "seq": t.seq,
                        "subscribers": t.subscribers,
                        "idle_ms": t.idle_ms,
                        "retained_bytes": t.retained_bytes,
                    })
                })
                .collect();
            json_reply(
                200,
                &json!({ "topics": list, "truncated": truncated }),
                g.head,
            )
        }
        Gathering::Disconnect { ok: true } => {
            json_reply(200, &json!({ "disconnected": true }), g.head)
        }
        Gathering::Disconnect { ok: false } => error(
            404,
            "not_found",
            "no such connection (closed already, or never was)",
            g.head,
        ),
    }
}

/// Close a local connection for an operator. False if it is not open.
pub fn disconnect(io: &mut Io<'_, Mail>, conn: ConnId) -> bool {
    io.close(conn, DISCONNECT_CODE, DISCONNECT_REASON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::http;

    #[test]
    fn ids_round_trip_and_bad_ones_are_refused() {
        let c = ConnId { key: 7, gen: 42 };
        assert_eq!(parse_conn_id(&conn_id(3, c)), Some((3, c)));
        for bad in ["", "1", "1.2", "1.2.3.4", "a.b.c", "1.-2.3"] {
            assert_eq!(parse_conn_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn query_parameters() {
        let q = Some("sort=age&limit=5&prefix=md.");
        assert_eq!(param(q, "sort"), Some("age"));
        assert_eq!(param(q, "prefix"), Some("md."));
        assert_eq!(param(q, "order"), None);
        assert_eq!(param(Some("sorted=1"), "sort"), None);
        assert_eq!(limit_of(q), Ok(5));
        assert_eq!(limit_of(None), Ok(DEFAULT_LIMIT));
        assert!(limit_of(Some("limit=0")).is_err());
        assert!(limit_of(Some("limit=10001")).is_err());
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let r = http::response(200, &[], "application/json", b"{\"a\":1}\n", true);
        let h = head_only(r.clone());
        assert!(h.ends_with(b"\r\n\r\n"));
        assert!(std::str::from_utf8(&h)
            .unwrap()
            .contains("Content-Length: 8"));
        assert_eq!(h.len() + 8, r.len());
    }

    fn row(shard: usize, key: u32, queued: usize, age: u64) -> ConnRow {
        ConnRow {
            shard,
            conn: ConnId { key, gen: 1 },
            peer: None,
            user: None,
            tls: false,
            subscriptions: 0,
            queued_bytes: queued,
            dropped: 0,
            conflated: 0,
            age_ms: age,
        }
    }

    #[test]
    fn sorting_and_limits() {
        let mut rows = vec![row(0, 1, 10, 5), row(1, 1, 30, 1), row(0, 2, 30, 9)];
        let listing = Listing {
            sort: SortBy::QueuedBytes,
            descending: true,
            limit: 2,
        };
        sort_rows(&mut rows, listing);
        // Ties by id: shard 0 before shard 1.
        assert_eq!(
            rows.iter()
                .map(|r| (r.shard, r.conn.key))
                .collect::<Vec<_>>(),
            [(0, 2), (1, 1)]
        );
        let mut rows = vec![row(0, 1, 10, 5), row(1, 1, 30, 1), row(0, 2, 30, 9)];
        sort_rows(
            &mut rows,
            Listing {
                sort: SortBy::Age,
                descending: false,
                limit: 10,
            },
        );
        assert_eq!(rows.iter().map(|r| r.age_ms).collect::<Vec<_>>(), [1, 5, 9]);
    }
}
