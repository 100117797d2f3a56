//! One connection's TLS, sans-IO: the runtime feeds received ciphertext and
//! sends the ciphertext this returns.
//!
//! # Buffered `ServerConnection`, not `UnbufferedServerConnection`
//!
//! This wraps rustls' buffered [`ServerConnection`]. The unbuffered API
//! would let an idle connection own no TLS buffers at all (the runtime's
//! own receive and send buffers would hold the records), but it turns each
//! call into a state machine of borrowed `ConnectionState` variants that
//! the caller must drive record by record; that is the next step, not this
//! one.
//!
//! What the buffered connection costs an idle, established connection is
//! measured by `tls::idle_memory_tests::idle_session_memory` (a counting
//! allocator; aws-lc-rs provider): `size_of::<TlsSession>()` is 1,176 B;
//! its heap is 792 B when new and 5,262 B (TLS 1.3) / 5,150 B (TLS 1.2)
//! once the handshake is done and a message went each way, so about
//! 6.4 KB per idle connection. About 4 KiB of that heap is rustls'
//! deframer buffer: it reads in 4 KiB steps and, when empty, shrinks back
//! to 4 KiB but never to zero (`msgs/deframer/buffers.rs`,
//! `prepare_read`). The rest (about 1.1 KB) is the record layer's AEAD key
//! contexts and the handshake-completed state, which any API must keep.
//!
//! Moving to the unbuffered API would drop the deframer buffer (the
//! runtime's receive buffer would hold partial records, and those are
//! already per-turn or provided-buffer memory) and the inline send and
//! plaintext queues, bringing an idle TLS connection to roughly 1.5-2 KB
//! over plain, inside the 3 KB target; the buffered one is about
//! 6.4 KB over, which misses it.
//!
//! # Limits on what a peer can make us hold
//!
//! rustls bounds the deframer to one maximum-size record plus a header and
//! refuses larger records; plaintext is drained into the caller's buffer
//! after every record, so the received-plaintext queue never grows; our own
//! outgoing buffer limit is lifted (`set_buffer_limit(None)`)
//! because [`TlsSession::seal`] moves everything into the caller's buffer
//! before returning, and the caller bounds what it queues.

use std::fmt;
use std::io::{IoSlice, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
pub use rustls::HandshakeKind;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// What one [`TlsSession::feed`] produced, besides bytes appended to the
/// caller's buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    /// Plaintext bytes appended to the caller's buffer.
    pub plaintext: usize,
    /// The handshake finished during this call (true once per session):
    /// the moment to start the WebSocket upgrade and count the handshake.
    pub handshake_completed: bool,
    /// The peer sent `close_notify`; nothing more will be decrypted.
    pub peer_closed: bool,
}

/// A fatal TLS error. `alert` holds the ciphertext (a fatal alert record)
/// to send before closing. During the handshake it is never empty (the
/// session writes a plaintext alert when rustls queued none); after it, it
/// may be: rustls queues no alert for some errors (too many TLS 1.2
/// renegotiation requests) and we cannot forge an encrypted one, so the
/// caller just closes.
#[derive(Debug)]
pub struct TlsError {
    pub error: rustls::Error,
    pub alert: Vec<u8>,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}", self.error)
    }
}

impl std::error::Error for TlsError {}

pub struct TlsSession {
    /// Server side for accepted connections; client side for the runtime's
    /// outbound ones (the load generator's `wss://`).
    conn: Connection,
    /// Whether `handshake_completed` was already reported.
    reported_handshake: bool,
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(|error| TlsError {
            error,
            alert: Vec::new(),
        })?;
        Ok(Self::wrap(conn.into()))
    }

    /// The client side, connecting to `name` (checked against the server's
    /// certificate by `config`'s verifier). Its first flight (the
    /// ClientHello) is ready at once: seal nothing and call
    /// [`TlsSession::pending`] to get it.
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Result<Self, TlsError> {
        let conn = ClientConnection::new(config, name).map_err(|error| TlsError {
            error,
            alert: Vec::new(),
        })?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(mut conn: Connection) -> Self {
        conn.set_buffer_limit(None);
        Self {
            conn,
            reported_handshake: false,
        }
    }

    /// Move whatever the session has to send (a client's ClientHello)
    /// into `out`.
    pub fn pending(&mut self, out: &mut Vec<u8>) {
        self.drain_tls(out);
    }

    /// Process received ciphertext: decrypted application data is appended
    /// to `plaintext`, and anything to send back (handshake messages,
    /// tickets, alerts) to `out`. Any amount of input is fine, from one byte
    /// to many records; a partial record is kept for the next call.
    pub fn feed(
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

    /// Encrypt `plaintext` (everything queued for this connection in a turn)
    /// into `out`. The slices are treated as one stream, so they fill
    /// records up to 16 KiB regardless of how they are split.
    pub fn seal(&mut self, plaintext: &[&[u8]], out: &mut Vec<u8>) -> Result<(), TlsError> {
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

    /// Queue a `close_notify` alert into `out`; seal nothing after this.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.conn.send_close_notify();
        self.drain_tls(out);
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The SNI the client sent, once the ClientHello was processed (the
    /// server side; `None` on the client side).
    pub fn sni(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(c) => c.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// Full, full after a HelloRetryRequest, or resumed; `None` until the
    /// handshake completes.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.conn.handshake_kind()
    }

    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    pub fn alpn(&self) -> Option<&[u8]> {
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

/// A fatal alert record (TLS 1.2 framing, which TLS 1.3 also uses for
/// unencrypted alerts) whose description matches the error's class.
fn plaintext_fatal_alert(error: &rustls::Error) -> [u8; 7] {
    let description = match error {
        rustls::Error::InvalidMessage(_) => rustls::AlertDescription::DecodeError,
        rustls::Error::PeerMisbehaved(_) => rustls::AlertDescription::IllegalParameter,
        rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            rustls::AlertDescription::UnexpectedMessage
        }
        _ => rustls::AlertDescription::HandshakeFailure,
    };
    // ContentType alert (21), version 3.3, length 2, level fatal (2).
    [21, 3, 3, 0, 2, 2, u8::from(description)]
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSession")
            .field("handshaking", &self.is_handshaking())
            .field("sni", &self.sni())
            .field("kind", &self.handshake_kind())
            .finish()
    }
}
