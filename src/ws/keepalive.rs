//! An open connection's protocol timers, sans IO and without a clock: the
//! caller says what time it is and gets back what to send and when to ask
//! again (the shape of quinn-proto's `handle_timeout`/`poll_timeout`).
//!
//! The rules (docs/protocol.md, "Keepalive and timeouts"):
//! - a peer silent for `idle_ping` gets a ping;
//! - one still silent `pong` after that ping is closed with 1001
//!   "ping timeout" (any bytes count as an answer, not only the pong: a
//!   peer busy sending is alive);
//! - after our close went out, the peer has `close` to answer with its own
//!   before we give up on the close handshake.
//!
//! Time is a plain number in whatever unit the caller picks, the same for
//! `now` and the timeouts (the runtime passes its 100 ms wheel ticks).

use super::close::code;
use super::connection::{Connection, State};
use super::frame::OpCode;
use bytes::Bytes;

/// A point in the caller's time.
pub type Time = u32;

/// How long each rule waits, in the caller's time unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle_ping: Time,
    pub pong: Time,
    pub close: Time,
}

/// What a due timer asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Send this ping, ahead of queued data.
    Ping(Bytes),
    /// The ping went unanswered: send this close (1001 "ping timeout", if
    /// the protocol still allows a close) ahead of any data, then end the
    /// connection.
    PingTimeout(Option<Bytes>),
    /// Our close went unanswered: stop waiting for the peer's and end the
    /// connection (drop what is queued).
    CloseTimeout,
}

/// When the peer was last heard from, and whether a ping is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    last_rx: Time,
    /// When our ping went out, or [`NOT_SENT`]: a sentinel, not an
    /// `Option` (8 bytes for 4), since every connection holds one.
    ping_sent: Time,
}

/// `Keepalive::ping_sent` when no ping is waiting for its pong (the
/// runtime's clock stops at `u32::MAX / 2` ticks).
const NOT_SENT: Time = Time::MAX;

impl Keepalive {
    /// A connection that opened at `now`.
    pub fn new(now: Time) -> Self {
        Self {
            last_rx: now,
            ping_sent: NOT_SENT,
        }
    }

    /// A ping of ours waits for its answer.
    pub fn awaiting_pong(&self) -> bool {
        self.ping_sent != NOT_SENT
    }

    /// Bytes arrived at `now`: the peer is alive.
    pub fn received(&mut self, now: Time) {
        self.last_rx = now;
        self.ping_sent = NOT_SENT;
    }

    /// When [`Keepalive::on_timeout`] has something to do next, for a
    /// connection in `state` whose close (if it sent one) went out at
    /// `close_sent`.
    fn ping_sent(&self) -> Option<Time> {
        (self.ping_sent != NOT_SENT).then_some(self.ping_sent)
    }

    pub fn next(&self, t: &Timeouts, state: State, close_sent: Time) -> Time {
        match (state, self.ping_sent()) {
            (State::CloseSent | State::Closed, _) => close_sent.saturating_add(t.close),
            (_, Some(sent)) => sent.saturating_add(t.pong),
            (_, None) => self.last_rx.saturating_add(t.idle_ping),
        }
    }

    /// Act on whatever is due at `now`. `ws` frames the ping or close;
    /// `close_sent` is when our close went out, if it did.
    pub fn on_timeout(
        &mut self,
        now: Time,
        t: &Timeouts,
        ws: &mut Connection,
        close_sent: Time,
    ) -> Option<Due> {
        if now < self.next(t, ws.state(), close_sent) {
            return None;
        }
        match (ws.state(), self.ping_sent()) {
            (State::CloseSent | State::Closed, _) => Some(Due::CloseTimeout),
            (State::Open, Some(_)) => {
                Some(Due::PingTimeout(ws.close(code::GOING_AWAY, "ping timeout")))
            }
            (State::Open, None) => {
                self.ping_sent = now.min(NOT_SENT - 1);
                Some(Due::Ping(ws.encode(OpCode::Ping, b"")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::{parse_close, parse_header};

    const T: Timeouts = Timeouts {
        idle_ping: 300,
        pong: 100,
        close: 50,
    };

    fn open() -> (Keepalive, Connection) {
        (Keepalive::new(1000), Connection::server())
    }

    fn opcode(frame: &Bytes) -> Option<OpCode> {
        parse_header(frame).ok().flatten().map(|h| h.opcode)
    }

    fn close_code(frame: &Bytes) -> Option<u16> {
        let h = parse_header(frame).ok()??;
        assert_eq!(h.opcode, OpCode::Close);
        parse_close(&frame[h.len..]).ok()?.code
    }

    #[test]
    fn silence_earns_a_ping_then_a_close() {
        let (mut k, mut ws) = open();
        assert_eq!(k.next(&T, ws.state(), 0), 1300);
        assert_eq!(k.on_timeout(1299, &T, &mut ws, 0), None);
        let Some(Due::Ping(ping)) = k.on_timeout(1300, &T, &mut ws, 0) else {
            panic!("no ping after idle_ping");
        };
        assert_eq!(opcode(&ping), Some(OpCode::Ping));
        // One ping per silence, and the pong deadline runs from it.
        assert_eq!(k.next(&T, ws.state(), 0), 1400);
        assert_eq!(k.on_timeout(1399, &T, &mut ws, 0), None);
        match k.on_timeout(1400, &T, &mut ws, 0) {
            Some(Due::PingTimeout(Some(f))) => assert_eq!(close_code(&f), Some(1001)),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
        assert_eq!(ws.state(), State::CloseSent);
    }

    #[test]
    fn any_bytes_answer_a_ping_and_restart_the_idle_clock() {
        let (mut k, mut ws) = open();
        assert!(matches!(
            k.on_timeout(1300, &T, &mut ws, 0),
            Some(Due::Ping(_))
        ));
        k.received(1350);
        assert_eq!(k.next(&T, ws.state(), 0), 1650);
        assert_eq!(k.on_timeout(1400, &T, &mut ws, 0), None);
        assert_eq!(ws.state(), State::Open);
        // A peer that keeps talking is never pinged.
        for now in (1400..3000).step_by(100) {
            k.received(now);
            assert_eq!(k.on_timeout(now, &T, &mut ws, 0), None);
        }
    }

    #[test]
    fn an_unanswered_close_times_out() {
        let (mut k, mut ws) = open();
        assert!(ws.close(code::GOING_AWAY, "server shutting down").is_some());
        // The close deadline replaces the idle one, from when it was sent.
        assert_eq!(k.next(&T, ws.state(), 1010), 1060);
        assert_eq!(k.on_timeout(1059, &T, &mut ws, 1010), None);
        assert_eq!(
            k.on_timeout(1060, &T, &mut ws, 1010),
            Some(Due::CloseTimeout)
        );
        // Bytes from the peer do not extend it: only its close ends it.
        k.received(1070);
        assert_eq!(
            k.on_timeout(1080, &T, &mut ws, 1010),
            Some(Due::CloseTimeout)
        );
    }

    #[test]
    fn a_late_deadline_still_acts_once_per_step() {
        // A shard that wakes long after the deadline (a slow turn) sends
        // the ping first; the close follows only a pong timeout later.
        let (mut k, mut ws) = open();
        assert!(matches!(
            k.on_timeout(5000, &T, &mut ws, 0),
            Some(Due::Ping(_))
        ));
        assert_eq!(k.on_timeout(5099, &T, &mut ws, 0), None);
        assert!(matches!(
            k.on_timeout(5100, &T, &mut ws, 0),
            Some(Due::PingTimeout(_))
        ));
    }
}
