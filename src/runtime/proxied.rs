//! Connections that come through a proxy: the PROXY protocol header at
//! the start of each connection (`--proxy-protocol`), and the client a
//! trusted HTTP proxy names in the request head (`--trusted-proxy`).
//! Either way the connection's [`Peer`] becomes the real client's
//! address, which is what the per-address limits count (`peer.rs`) and
//! what [`Io::peer`](super::Io::peer) tells the application (logs, the
//! admin view). The parsing is sans IO in `crate::proxy`.
//!
//! # When the client is counted
//!
//! A connection is counted against `--max-connections-per-ip` and
//! `--max-handshakes-per-ip` once, when its address is final, and
//! released once, when it goes (`Shard::release`, by `Peer::counted`):
//! - direct: when `SO_PEERNAME` answers (`Shard::on_peer`);
//! - with the PROXY protocol: when the header is read (the socket's peer
//!   is the proxy, never counted);
//! - from a trusted proxy (its socket peer, or the PROXY source, is in a
//!   `--trusted-proxy` network): when the request head is read, under the
//!   address its forwarded header names.
//!
//! The address is only ever replaced before it is counted, so a count is
//! always released under the address it was taken for.

use super::app::App;
use super::config::Config;
use super::conn::Phase;
use super::inbound;
use super::mailbox::Mailbox;
use super::peer::{self, Peer};
use super::table::ConnTable;
use crate::metrics::inc;
use crate::proxy::{forwarded, header};
use bytes::Bytes;

/// Bytes for connection `key` while its PROXY header is not complete
/// (`Conn::awaiting_proxy`): the same contract as `inbound::delivered`,
/// which calls it first. The header's bytes are kept in `rx` until it is
/// complete (at most 16 + 4 KiB, `header::parse`'s caps); what follows it
/// goes on to TLS or HTTP as if it had arrived alone. A connection whose
/// first bytes are not a PROXY header is closed without an answer: its
/// peer is a proxy that broke the protocol, or a client that went around
/// the proxy, and neither would read an HTTP error.
pub(super) fn delivered<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    data: &mut [u8],
) -> bool {
    let Some(c) = table.conns.get_mut(key as usize) else {
        return false;
    };
    // The header's first bytes, from earlier receives: joined with these.
    let mut kept = c.rx.take();
    let parsed = if kept.is_empty() {
        header::parse(data)
    } else {
        kept.extend_from_slice(data);
        header::parse(&kept)
    };
    let (found, consumed) = match parsed {
        Ok(None) => {
            if kept.is_empty() {
                kept.extend_from_slice(data);
            }
            c.rx.put(kept);
            return true;
        }
        Err(_) => {
            inc(&table.stats[table.me].proxy_header_errors_total, 1);
            c.phase = Phase::Dead;
            c.rx.clear();
            c.tx.clear();
            table.mark(key);
            return true;
        }
        Ok(Some(h)) => h,
    };
    c.set_awaiting_proxy(false);
    if let Some(a) = found.addresses {
        debug_assert!(!c.peer.counted(), "a counted peer was re-attributed");
        c.peer = Peer::from_addr(a.source);
    }
    if c.phase == Phase::Handshake {
        if let Err(response) = peer::settle(table, &config.proxy, key) {
            inc(&table.my_stats().handshakes_rejected_total, 1);
            // As in `Shard::on_peer`: answered before the request; over
            // TLS, once the TLS handshake that follows is done.
            inbound::respond(table, key, response);
        }
    }
    let rest = if kept.is_empty() {
        &mut data[consumed..]
    } else {
        &mut kept[consumed..]
    };
    if rest.is_empty() {
        return true;
    }
    inbound::delivered(app, table, mail, config, key, rest)
}

/// A complete request head (`head`, its bytes) of connection `key` is
/// about to be acted on: if its peer is a trusted proxy, the client its
/// forwarded header names becomes the peer, and is counted. `Err`: the
/// 429 to answer. Once per connection: later requests on a kept-alive
/// connection change nothing (the connection stays counted under its
/// first client).
pub(super) fn at_head(
    table: &mut ConnTable,
    config: &Config,
    key: u32,
    head: &[u8],
) -> Result<(), Bytes> {
    let Some(c) = table.conns.get_mut(key as usize) else {
        return Ok(());
    };
    if !c.await_forwarded() {
        return Ok(());
    }
    c.set_await_forwarded(false);
    if let Some(via) = c.peer.addr() {
        let p = &config.proxy;
        let values = forwarded::values_in_head(head, p.scheme);
        let client = forwarded::client(via, &p.trusted, p.scheme, &values);
        if client != via {
            debug_assert!(!c.peer.counted(), "a counted peer was re-attributed");
            c.peer = Peer::from_addr(client);
        }
    }
    peer::admit(table, key)
}
