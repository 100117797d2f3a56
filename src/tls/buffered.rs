//! [`super::TlsSession`] over rustls' buffered `Connection`: the client
//! side (the load generator's outbound `wss://`, where a few KB per
//! connection do not matter), and the server side kept only so benches and
//! the idle-memory test can compare it with the unbuffered one
//! ([`super::unbuffered`]).
//!
//! rustls copies received ciphertext into its deframer buffer (4 KiB
//! steps, never shrunk to zero) and queues what it encrypts as one `Vec`
//! per record until `write_tls` copies it out; see the `session` module
//! docs for what that costs an idle connection.

use std::io::{IoSlice, Read, Write};

use rustls::Connection;

use super::session::{plaintext_fatal_alert, Feed, HandshakeKind, TlsError};

pub(super) struct Buffered {
    conn: Connection,
    /// Whether `handshake_completed` was already reported.
    reported_handshake: bool,
}

impl Buffered {
    pub(super) fn new(mut conn: Connection) -> Self {
        // `seal` moves everything into the caller's buffer before
        // returning and the caller bounds what it queues, so rustls' own
        // limit on queued output would only make `seal` fail spuriously.
        conn.set_buffer_limit(None);
        Self {
            conn,
            reported_handshake: false,
        }
    }

    pub(super) fn pending(&mut self, out: &mut Vec<u8>) {
        self.drain_tls(out);
    }

    pub(super) fn feed(
        &mut self,
        mut ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Feed, TlsError> {
        let mut feed = Feed::default();
        while !ciphertext.is_empty() {
            // Reading from a slice cannot fail with I/O errors; the only
            // errors are rustls refusing more input (buffer full, or after
            // close_notify), which processing below resolves or reports.
            let n = match self.conn.read_tls(&mut ciphertext) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(rustls::Error::General(e.to_string()))),
            };
            match self.conn.process_new_packets() {
                Ok(state) => feed.peer_closed |= state.peer_has_closed(),
                Err(error) => return Err(self.fail(error)),
            }
            feed.plaintext += self.drain_plaintext(plaintext);
            if n == 0 {
                // rustls takes no more input once the peer has closed.
                break;
            }
        }
        if !self.reported_handshake && !self.conn.is_handshaking() {
            self.reported_handshake = true;
            feed.handshake_completed = true;
        }
        self.drain_tls(out);
        Ok(feed)
    }

    pub(super) fn seal(&mut self, plaintext: &[&[u8]], out: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut slices: Vec<IoSlice<'_>> = plaintext
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| IoSlice::new(s))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = match self.conn.writer().write_vectored(rest) {
                Ok(n) => n,
                Err(e) => return Err(self.fail(rustls::Error::General(e.to_string()))),
            };
            self.drain_tls(out);
            if n == 0 {
                // With no buffer limit rustls takes everything unless the
                // connection already failed or we already sent close_notify.
                return Err(self.fail(rustls::Error::General(
                    "connection no longer accepts data".into(),
                )));
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    pub(super) fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain_tls(out);
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    pub(super) fn sni(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(c) => c.server_name(),
            Connection::Client(_) => None,
        }
    }

    pub(super) fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    pub(super) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    pub(super) fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn drain_plaintext(&mut self, plaintext: &mut Vec<u8>) -> usize {
        let before = plaintext.len();
        // `read_to_end` stops at WouldBlock (nothing buffered) or at EOF
        // (close_notify); both are normal here, so the error is ignored.
        let _ = self.conn.reader().read_to_end(plaintext);
        plaintext.len() - before
    }

    fn drain_tls(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec never fails.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    fn fail(&mut self, error: rustls::Error) -> TlsError {
        let mut alert = Vec::new();
        self.drain_tls(&mut alert);
        if alert.is_empty() && self.conn.is_handshaking() {
            // rustls does not queue an alert for every deframing error (a
            // record announcing an oversized handshake message gets none).
            // Before the handshake completes our records are still
            // plaintext as far as a confused peer is concerned, so say
            // why in a plaintext fatal alert rather than just hanging up.
            alert.extend_from_slice(&plaintext_fatal_alert(&error));
        }
        TlsError { error, alert }
    }
}
