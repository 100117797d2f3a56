//! Plain HTTP requests with bodies and keep-alive (`POST /publish` from a
//! backend): what happens between the request head (parsed by the
//! handshake, `ws::handshake::accept`) and the next request.
//!
//! A backend publishing thousands of batches a second cannot pay a TCP
//! (and TLS) handshake per request: a connection that was answered with
//! [`HttpReply::KeepAlive`] stays, in [`Phase::Http`], and its next
//! request is parsed like the first. It is no longer a handshake in
//! progress (not shed under a connection storm, not held to the
//! handshake deadline); it is closed after `Config::http_keepalive` of
//! idleness. Refusals the runtime makes itself (a body over
//! `Config::max_request_body`, a malformed head) close: the request's
//! framing cannot be trusted after them.
//!
//! An answer that waits on other shards ([`HttpReply::Later`]: the seq of
//! a topic another shard numbers) comes through [`Io::http_reply`];
//! until then later requests on the connection wait unread in its `rx`
//! (bounded, see [`may_parse`]), so answers keep the requests' order.

use super::app::{ConnId, HttpReply};
use super::config::Config;
use super::conn::{Conn, Phase};
use super::inbound::respond;
use super::io::Io;
use super::table::ConnTable;
use crate::metrics::inc;
use crate::ws::handshake::MAX_HEAD;
use crate::ws::http;

/// Whether a connection's next request may be parsed now. `pending` is
/// how many unparsed bytes it has. Not while its previous request waits
/// for its answer, nor while its answers pile up unread (the backpressure
/// of `Config::max_backlog_read`, as for WebSocket frames); `Err` when it
/// sent more than a whole request beyond one that waits (a client that
/// pipelines without bound is closed, not buffered).
pub(super) fn may_parse(
    c: &Conn,
    max_backlog_read: usize,
    config: &Config,
    pending: usize,
) -> Result<bool, ()> {
    if c.phase != Phase::Http {
        return Ok(true);
    }
    if c.http_waiting() {
        return match pending > MAX_HEAD + config.max_request_body {
            true => Err(()),
            false => Ok(false),
        };
    }
    Ok(c.backlog() <= max_backlog_read)
}

/// Queue the application's answer to a request on connection `id`. True
/// when the connection goes on to its next request (kept alive, or
/// waiting for a later answer), false when it closes after this one.
pub(super) fn answered(table: &mut ConnTable, id: ConnId, reply: HttpReply) -> bool {
    let (response, keep) = match reply {
        HttpReply::Close(r) => (r, false),
        HttpReply::KeepAlive(r) => (r, true),
        HttpReply::Later => {
            let now = table.now;
            if let Some(c) = table.conn(id) {
                c.phase = Phase::Http;
                c.set_http_waiting(true);
                c.since = now;
            }
            return true;
        }
    };
    if http::status_of(&response).is_some_and(|s| s >= 400) {
        inc(&table.my_stats().handshakes_rejected_total, 1);
        super::log::refused(table, id.key, &response);
    }
    if !keep {
        respond(table, id.key, response);
        return false;
    }
    let (now, draining) = (table.now, table.draining);
    let Some(c) = table.conn(id) else {
        return false;
    };
    c.tx.push(response);
    c.since = now;
    // Shutting down, or the client half-closed after its request: this
    // was the last answer.
    let last = draining || c.eof();
    c.phase = if last { Phase::Flushing } else { Phase::Http };
    table.mark(id.key);
    !last
}

impl<M> Io<'_, M> {
    /// The answer to a request the application took with
    /// [`HttpReply::Later`] (`Later` again is ignored). False if the
    /// connection is gone or was not waiting for one. Requests the client
    /// sent meanwhile are parsed in a later loop turn.
    pub fn http_reply(&mut self, id: ConnId, reply: HttpReply) -> bool {
        let Some(c) = self.table.conn(id) else {
            return false;
        };
        if c.phase != Phase::Http || !c.http_waiting() || matches!(reply, HttpReply::Later) {
            return false;
        }
        c.set_http_waiting(false);
        if answered(self.table, id, reply) {
            if let Some(c) = self.table.conn(id) {
                if c.rx.len() > 0 && !c.deferred() {
                    c.set_deferred(true);
                    self.table.deferred.push(id.key);
                }
            }
        }
        true
    }
}
