//! The runtime's log events ([`crate::logs`]): the refusals and closes it
//! decides itself, named with what only it knows (the peer address). Each
//! is one call from where the decision is made; nothing here runs per
//! message.

use super::app::ConnId;
use super::close_reason::SEND_QUEUE_OVERFLOW;
use super::recv_rate::TOO_SLOW;
use super::table::ConnTable;
use crate::logs::{self, ConnLabel, Who};
use crate::ws::http;
use std::net::SocketAddr;

/// Who connection `key` of this shard is, as far as the runtime knows.
pub(super) fn who(table: &ConnTable, key: u32) -> Who<'static> {
    let c = table.conns.get(key as usize);
    Who {
        conn: c.map(|c| ConnLabel {
            shard: table.me,
            key,
            gen: c.gen,
        }),
        peer: c.and_then(|c| c.peer.addr()),
        user: None,
    }
}

/// Connection `key` is answered `response`, an HTTP error, and closed.
pub(super) fn refused(table: &ConnTable, key: u32, response: &[u8]) {
    let status = http::status_of(response).unwrap_or(0);
    logs::handshake_refused(&who(table, key), status, response);
}

/// A close the flush is about to send (`status`, `reason`). Only the
/// runtime's own reasons are logged here (send queue overflow, receive too
/// slow); the application logs those it asks for, knowing more (the
/// user).
pub(super) fn closing(
    shard: usize,
    id: ConnId,
    peer: Option<SocketAddr>,
    status: u16,
    reason: &str,
) {
    if reason != SEND_QUEUE_OVERFLOW && reason != TOO_SLOW {
        return;
    }
    let who = Who {
        conn: Some(ConnLabel {
            shard,
            key: id.key,
            gen: id.gen,
        }),
        peer,
        user: None,
    };
    logs::policy_close(&who, status, reason);
}
