//! The inbound path: bytes a connection received, through its opening
//! handshake (server or client side) and the WebSocket core, to the
//! application's callbacks and the answers the protocol itself sends
//! (pongs, closes).

use super::app::{App, ConnId};
use super::close_reason::SEND_QUEUE_OVERFLOW;
use super::config::Config;
use super::conn::Phase;
use super::io::Io;
use super::mailbox::Mailbox;
use super::table::ConnTable;
use crate::metrics::inc;
use crate::ws::close::code;
use crate::ws::handshake::{self, Outcome};
use crate::ws::keepalive::Keepalive;
use crate::ws::{http, Connection, Event, Read, Role};
use bytes::Bytes;

/// A receive delivered `data` (the kernel's buffer) for connection `key`:
/// the data path of `Shard::on_recv` after the kernel copied the bytes,
/// which needs the connection table but not the ring (the fuzz harness in
/// `inbound_check` calls it too). Bytes are parsed in place when nothing
/// was kept from earlier reads, else after what was; an unfinished rest
/// is kept in the connection's `rx`. False when nothing was parsed: the
/// connection is gone, or its reading is paused (backpressure) and the
/// bytes, delivered before the cancel landed, are kept for the resume.
pub(super) fn delivered<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    data: &mut [u8],
) -> bool {
    match table.conns.get(key as usize) {
        None => false,
        // A PROXY protocol header comes before anything, TLS included.
        Some(c) if c.awaiting_proxy() => {
            super::proxied::delivered(app, table, mail, config, key, data)
        }
        // Ciphertext: decrypted first, then here again as plaintext.
        Some(c) if c.tls() => super::tls::delivered(app, table, mail, config, key, data),
        Some(_) => delivered_plain(app, table, mail, config, key, data),
    }
}

/// [`delivered`] for plaintext: a plain connection's bytes, or what a TLS
/// connection's session decrypted.
pub(super) fn delivered_plain<A: App>(
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
    if c.read_paused() {
        c.rx.extend_from_slice(data);
        return false;
    }
    if c.phase == Phase::Handshake
        && !c.outbound()
        && !ConnTable::head_skips_budget(c.admin(), table.admin_budget)
        && (c.deferred() || table.handshake_budget == 0)
    {
        // This turn's handshakes are spent: keep the bytes for the next.
        c.rx.extend_from_slice(data);
        if !c.deferred() {
            c.set_deferred(true);
            table.deferred.push(key);
            inc(&table.my_stats().handshakes_deferred_total, 1);
        }
        return false;
    }
    // Detach the buffered bytes so the application may use `Io` (which
    // reaches every connection, including this one) while we hand it
    // slices of them.
    let mut rx = c.rx.take();
    if rx.is_empty() {
        // The common case: parse in place in the kernel's buffer; copy
        // only an unfinished tail.
        let used = received(app, table, mail, config, key, data);
        if used < data.len() {
            rx.extend_from_slice(&data[used..]);
        }
    } else {
        rx.extend_from_slice(data);
        received_buffered(app, table, mail, config, key, &mut rx);
    }
    if let Some(c) = table.conns.get_mut(key as usize) {
        c.rx.put(rx);
    }
    true
}

/// Bytes for connection `key` in `buf` (the kernel's buffer, or the
/// connection's own when a frame straddled reads). Returns how many were
/// used; the rest is an unfinished head or frame to keep.
fn received<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    buf: &mut [u8],
) -> usize {
    let Some(c) = table.conns.get_mut(key as usize) else {
        return buf.len();
    };
    let id = ConnId { key, gen: c.gen };
    let mut used = 0;
    if c.phase == Phase::Handshake && c.outbound() {
        match client_handshake(app, table, mail, id, buf) {
            Step::Wait | Step::Next(_) => return 0,
            Step::Done => return buf.len(),
            Step::Opened(consumed) => used = consumed,
        }
    }
    // Requests, one after another on a keep-alive connection, until one
    // upgrades, closes, is unfinished, or waits for its answer.
    while let Some(c) = table.conns.get(key as usize) {
        if !matches!(c.phase, Phase::Handshake | Phase::Http) || c.outbound() {
            break;
        }
        if used == buf.len() {
            return used;
        }
        match super::http::may_parse(c, table.max_backlog_read, config, buf.len() - used) {
            Ok(true) => {}
            Ok(false) => return used,
            Err(()) => {
                // Pipelined past a request still waiting for its answer.
                if let Some(c) = table.conns.get_mut(key as usize) {
                    c.phase = Phase::Dead;
                    c.tx.clear();
                }
                table.mark(key);
                return buf.len();
            }
        }
        match server_handshake(app, table, mail, config, id, &buf[used..]) {
            Step::Wait => return used,
            Step::Done => return buf.len(),
            Step::Next(consumed) => used += consumed,
            Step::Opened(consumed) => {
                used += consumed;
                break;
            }
        }
    }
    let Some(c) = table.conns.get_mut(key as usize) else {
        return buf.len();
    };
    if c.phase != Phase::Open {
        // Closing: input is read only to notice EOF.
        return buf.len();
    }
    // The stand-in keeps the role and the deflate agreement: `Io::send_text`
    // frames by the one and `Io::deflate` reads the other while the
    // application handles a message from this very connection.
    let mut stand_in = Connection::new(c.ws.role(), 0);
    stand_in.set_deflate(c.ws.deflate());
    let mut ws = std::mem::replace(&mut c.ws, stand_in);
    used += read_frames(app, table, mail, id, &mut ws, &mut buf[used..]);
    // A large fragmented message was handed out: free its buffer now
    // rather than at the next frame, which may never come.
    ws.release_delivered();
    if let Some(c) = table.conns.get_mut(key as usize) {
        c.ws = ws;
    }
    used
}

/// [`received`] for the connection's own buffer `rx` (bytes kept from
/// earlier reads, with or without new ones appended): keeps only the
/// unfinished rest, and lets go of a buffer a large message grew.
pub(super) fn received_buffered<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    key: u32,
    rx: &mut Vec<u8>,
) {
    let used = received(app, table, mail, config, key, rx);
    rx.drain(..used);
    if rx.is_empty() && rx.capacity() > KEEP_RX {
        *rx = Vec::new();
    }
}

/// A connection's own receive buffer is freed once empty above this: a
/// large message passed, and an idle connection holds no buffer.
pub(super) const KEEP_RX: usize = 64 * 1024;

/// Where an opening handshake stands after the bytes so far.
enum Step {
    /// The head is not complete: keep the bytes, read more.
    Wait,
    /// Answered (refused, or plain HTTP) or failed: the rest is not read.
    Done,
    /// Open; the head took this many bytes, frames may follow.
    Opened(usize),
    /// A plain request (head and body) took this many bytes and was
    /// answered or is waiting for its answer; another may follow.
    Next(usize),
}

/// A client's request head: upgrade, answer plain HTTP, or refuse.
fn server_handshake<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    config: &Config,
    id: ConnId,
    buf: &[u8],
) -> Step {
    let key = id.key;
    let refused = |table: &mut ConnTable, response: Bytes| {
        inc(&table.my_stats().handshakes_rejected_total, 1);
        super::log::refused(table, key, &response);
        respond(table, key, response);
        Step::Done
    };
    let outcome = handshake::accept(buf, &config.handshake);
    let waiting_body = matches!(&outcome, Outcome::Http { consumed, request }
        if request.content_length <= config.max_request_body
            && buf.len() - consumed < request.content_length);
    if waiting_body {
        return Step::Wait;
    }
    if !matches!(outcome, Outcome::Partial) {
        let admin = table.conns.get(key as usize).is_some_and(|c| c.admin());
        table.spend_head(admin);
    }
    if let Outcome::Upgrade { consumed, .. } | Outcome::Http { consumed, .. } = outcome {
        // Behind a trusted proxy the client is known (and counted) now.
        if let Err(response) = super::proxied::at_head(table, config, key, &buf[..consumed]) {
            return refused(table, response);
        }
    }
    let (consumed, upgrade) = match outcome {
        Outcome::Partial => return Step::Wait,
        Outcome::Reject { response, .. } => return refused(table, response),
        Outcome::Http { consumed, request } => {
            if request.content_length > config.max_request_body {
                let max = config.max_request_body;
                let msg = format!("request body over {max} bytes (--max-request-body)");
                return refused(table, http::json_error(413, &[], "too_large", &msg));
            }
            let end = consumed + request.content_length;
            let reply = app.http(&mut Io { table, mail }, id, &request, &buf[consumed..end]);
            return match super::http::answered(table, id, reply) {
                true => Step::Next(end),
                false => Step::Done,
            };
        }
        Outcome::Upgrade { .. }
            if table
                .conns
                .get(key as usize)
                .is_some_and(|c| c.phase == Phase::Http) =>
        {
            // One protocol per connection: a keep-alive connection that
            // made plain requests stays plain.
            let msg = "upgrade on a connection that made plain HTTP requests; open a new one";
            return refused(table, http::error(400, &[], msg));
        }
        Outcome::Upgrade { .. } if table.draining => {
            return refused(table, http::error(503, &[], "server is shutting down"));
        }
        Outcome::Upgrade { .. } if table.conns.len() > table.max_upgraded => {
            inc(&table.my_stats().upgrades_refused_full_total, 1);
            let retry = [("Retry-After", "1")];
            let response = http::error(503, &retry, "server at connection capacity");
            return refused(table, response);
        }
        Outcome::Upgrade { consumed, upgrade } => (consumed, upgrade),
    };
    let accepted = match app.upgrade(&mut Io { table, mail }, id, &upgrade) {
        Ok(accepted) => accepted,
        Err(response) => return refused(table, response),
    };
    let now = table.now;
    let Some(c) = table.conns.get_mut(key as usize) else {
        return Step::Done;
    };
    c.ws = Connection::new(Role::Server, accepted.max_message);
    c.ws.set_deflate(upgrade.deflate);
    c.phase = Phase::Open;
    c.set_opened(true);
    c.keepalive = Keepalive::new(now);
    // As control: a write delay must not hold the handshake.
    c.tx.push_control(upgrade.response);
    inc(&table.my_stats().websocket_upgrades_total, 1);
    table.mark(key);
    Step::Opened(consumed)
}

/// The server's response head to our upgrade request (client mode).
fn client_handshake<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    id: ConnId,
    buf: &[u8],
) -> Step {
    let key = id.key;
    let verdict = table.outbound.get(&key).and_then(|o| {
        o.handshake
            .as_ref()
            .map(|h| (h.verify(buf), o.dial.max_message))
    });
    let now = table.now;
    let Some(c) = table.conns.get_mut(key as usize) else {
        return Step::Done;
    };
    match verdict {
        Some((Ok(None), _)) => Step::Wait,
        Some((Ok(Some(accepted)), max)) => {
            table.outbound.remove(&key);
            c.ws = Connection::new(Role::Client, max);
            c.ws.set_deflate(accepted.deflate);
            c.phase = Phase::Open;
            c.set_opened(true);
            c.set_dialing(false);
            c.keepalive = Keepalive::new(now);
            inc(&table.my_stats().websocket_upgrades_total, 1);
            table.mark(key);
            app.connected(&mut Io { table, mail }, id);
            Step::Opened(accepted.consumed)
        }
        Some((Err(e), _)) => {
            c.phase = Phase::Dead;
            c.tx.clear();
            if let Some(o) = table.outbound.get_mut(&key) {
                o.error = Some(format!("handshake: {e}"));
            }
            table.mark(key);
            Step::Done
        }
        None => Step::Done,
    }
}

/// Queue an HTTP response and close after it.
pub(super) fn respond(table: &mut ConnTable, key: u32, response: Bytes) {
    if let Some(c) = table.conns.get_mut(key as usize) {
        c.tx.push(response);
        c.phase = Phase::Flushing;
        c.since = table.now;
        table.mark(key);
    }
}

/// Decode frames from `buf` and act on them: messages go to the
/// application, pings are answered, closes are answered or completed.
fn read_frames<A: App>(
    app: &mut A,
    table: &mut ConnTable,
    mail: &mut Mailbox<A::Mail>,
    id: ConnId,
    ws: &mut Connection,
    buf: &mut [u8],
) -> usize {
    let mut off = 0;
    let limit = table.max_backlog_read;
    while off < buf.len() {
        // Backpressure: a connection whose answers (pongs, acks, echoes)
        // pile up is not read further; the rest waits, whole frames
        // unparsed, until its backlog drains (`Shard::resume_read`).
        if off > 0
            && table
                .conns
                .get(id.key as usize)
                .is_some_and(|c| c.backlog() > limit)
        {
            break;
        }
        match ws.read(&mut buf[off..]) {
            Ok(Read::Frame { consumed, event }) => {
                off += consumed;
                let Some(event) = event else { continue };
                match event {
                    Event::Message(m) => {
                        inc(&table.my_stats().messages_received_total, 1);
                        if table.conn(id).is_some_and(|c| !c.has_close_req()) {
                            app.message(&mut Io { table, mail }, id, m);
                        }
                    }
                    Event::Ping { pong: Some(p), .. } => {
                        let cap = table.max_backlog;
                        if let Some(c) = table.conn(id) {
                            if c.backlog() + super::conn::cost(p.len()) > cap {
                                c.set_close_req(code::POLICY_VIOLATION, SEND_QUEUE_OVERFLOW);
                            } else {
                                c.tx.push_control(p);
                            }
                            table.mark(id.key);
                        }
                    }
                    Event::Ping { pong: None, .. } | Event::Pong(_) => {}
                    Event::Close { reply, body } => {
                        if let Some(c) = table.conn(id) {
                            c.close_code = body.code.unwrap_or(1005);
                            // Answers already queued still go out first:
                            // a client that sends and then closes gets its
                            // replies.
                            if let Some(r) = reply {
                                c.tx.push(r);
                            }
                            table.mark(id.key);
                        }
                    }
                }
            }
            Ok(Read::Incomplete { .. }) => break,
            Err(failure) => {
                inc(&table.my_stats().protocol_errors_total, 1);
                if let Some(c) = table.conn(id) {
                    c.close_code = failure.error.code;
                    // After what was already answered; nothing follows it.
                    if let Some(f) = failure.close {
                        c.tx.push(f);
                    }
                    table.mark(id.key);
                }
                return buf.len();
            }
        }
    }
    off
}
