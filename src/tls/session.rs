//! One connection's TLS, sans-IO: the runtime feeds received ciphertext and
//! sends the ciphertext this returns.
//!
//! # Server side: unbuffered during the handshake, established after
//!
//! Accepted connections run their handshake on rustls'
//! `UnbufferedServerConnection` (`tls/unbuffered.rs`): between calls a
//! session owns no input buffer (an incomplete record is kept, sized to
//! fit, only until it completes) and no output buffer (records go straight
//! into the caller's `out`). As soon as the handshake is over and rustls
//! holds nothing more (tickets sent), the session moves to
//! `tls/established.rs`: rustls' record protection from the extracted
//! secrets, and the little TLS left after a handshake done by hand. The
//! client side (the load generator's outbound `wss://`) stays on the
//! buffered `ClientConnection` (`tls/buffered.rs`), where a few KB per
//! connection do not matter.
//!
//! What an idle, established server connection costs is measured by
//! `tls::idle_memory_tests::idle_session_memory` (a counting allocator,
//! aws-lc-rs, a message each way after the handshake):
//!
//! | | TLS 1.3 | TLS 1.2 |
//! |---|---:|---:|
//! | `size_of::<TlsSession>()` | 152 B | 152 B |
//! | heap when idle | 1,138 B | 96 B |
//! | **idle, all told** | **1,290 B** | **248 B** |
//! | unbuffered connection kept after the handshake, idle | 2,592 B | 2,230 B |
//! | buffered `ServerConnection`, idle | 6,438 B | 6,326 B |
//!
//! The test fails above 3,000 B (the target is at most 3 KB over a
//! plain connection, in RSS). TLS 1.3's heap is rustls' `KernelConnection`
//! (560 B inline, most of it QUIC state every rustls connection carries,
//! and the key schedule behind it), kept for KeyUpdate; TLS 1.2 has none.
//! The two AEAD key contexts are AWS-LC's, allocated with C `malloc`, and
//! not in these figures; docs/benchmarks.md has the RSS.
//!
//! # Limits on what a peer can make us hold
//!
//! A server session holds at most one maximum-size record of input,
//! 16,645 B: a header announcing a longer body than TLS allows (2^14 +
//! 256) is refused as soon as it arrives, and so is a handshake message
//! split over records that would need more (the buffered connection
//! allowed 64 KiB for those; no client handshake message to this server
//! comes near: a ClientHello is 0.3-2 KB). Plaintext goes into the
//! caller's buffer record by record and [`TlsSession::seal`] encrypts into
//! the caller's `out` before returning; the caller bounds both.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::ServerName;
pub use rustls::HandshakeKind;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::buffered::Buffered;
use super::established::Established;
use super::unbuffered::UnbufferedServer;

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
    inner: Inner,
}

enum Inner {
    /// Accepted connections during their handshake: rustls' unbuffered
    /// API. Boxed: it is 1,176 B and only handshaking sessions have it.
    Server(Box<UnbufferedServer>),
    /// Accepted connections once the handshake is over (`established`):
    /// the variant that sets the session's size.
    Established(Established),
    /// The runtime's outbound connections (the load generator's `wss://`),
    /// and a buffered server kept for comparison.
    Buffered(Box<Buffered>),
    /// The handover from rustls failed (it cannot, once
    /// `ready_to_establish` holds; kept so a surprise is an error, not a
    /// panic).
    Failed(Box<rustls::Error>),
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr, $failed:ident => $f:expr) => {
        match $self {
            Inner::Server($s) => $e,
            Inner::Established($s) => $e,
            Inner::Buffered($s) => $e,
            Inner::Failed($failed) => $f,
        }
    };
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let server = UnbufferedServer::new(config).map_err(|error| TlsError {
            error,
            alert: Vec::new(),
        })?;
        Ok(Self {
            inner: Inner::Server(Box::new(server)),
        })
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
        Ok(Self {
            inner: Inner::Buffered(Box::new(Buffered::new(conn.into()))),
        })
    }

    /// A server session on rustls' buffered `ServerConnection`, the
    /// implementation [`TlsSession::new`] replaced: only for the benches
    /// and the idle-memory test that compare the two.
    #[doc(hidden)]
    pub fn new_buffered(config: Arc<ServerConfig>) -> Result<Self, TlsError> {
        let conn = ServerConnection::new(config).map_err(|error| TlsError {
            error,
            alert: Vec::new(),
        })?;
        Ok(Self {
            inner: Inner::Buffered(Box::new(Buffered::new(conn.into()))),
        })
    }

    /// Move whatever the session has to send (a client's ClientHello)
    /// into `out`.
    pub fn pending(&mut self, out: &mut Vec<u8>) {
        dispatch!(&mut self.inner, s => s.pending(out), _e => ());
        self.settle();
    }

    /// Process received ciphertext: decrypted application data is appended
    /// to `plaintext`, and anything to send back (handshake messages,
    /// tickets, alerts) to `out`. Any amount of input is fine, from one byte
    /// to many records; a partial record is kept for the next call.
    pub fn feed(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Feed, TlsError> {
        let fed = dispatch!(&mut self.inner, s => s.feed(ciphertext, plaintext, out), e => Err(failed(e)));
        self.settle();
        fed
    }

    /// Encrypt `plaintext` (everything queued for this connection in a turn)
    /// into `out`. The slices are treated as one stream, so they fill
    /// records up to 16 KiB regardless of how they are split.
    pub fn seal(&mut self, plaintext: &[&[u8]], out: &mut Vec<u8>) -> Result<(), TlsError> {
        let sealed = dispatch!(&mut self.inner, s => s.seal(plaintext, out), e => Err(failed(e)));
        self.settle();
        sealed
    }

    /// Queue a `close_notify` alert into `out`; seal nothing after this.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        dispatch!(&mut self.inner, s => s.close_notify(out), _e => ())
    }

    pub fn is_handshaking(&self) -> bool {
        match &self.inner {
            Inner::Server(s) => s.is_handshaking(),
            Inner::Buffered(s) => s.is_handshaking(),
            Inner::Established(_) | Inner::Failed(_) => false,
        }
    }

    /// The SNI the client sent, once the ClientHello was processed (the
    /// server side; `None` on the client side).
    pub fn sni(&self) -> Option<&str> {
        dispatch!(&self.inner, s => s.sni(), _e => None)
    }

    /// Full, full after a HelloRetryRequest, or resumed; `None` until the
    /// handshake completes.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        dispatch!(&self.inner, s => s.handshake_kind(), _e => None)
    }

    pub fn resumed(&self) -> bool {
        self.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        dispatch!(&self.inner, s => s.protocol_version(), _e => None)
    }

    pub fn alpn(&self) -> Option<&[u8]> {
        dispatch!(&self.inner, s => s.alpn(), _e => None)
    }

    /// Capacity of the input an unbuffered server session holds between
    /// calls (0 for the buffered ones, whose buffer is rustls' own).
    #[cfg(test)]
    pub(super) fn held_capacity(&self) -> usize {
        match &self.inner {
            Inner::Server(s) => s.held_capacity(),
            Inner::Established(s) => s.held_capacity(),
            Inner::Buffered(_) | Inner::Failed(_) => 0,
        }
    }
}

impl TlsSession {
    /// Moves a server session whose handshake is over out of rustls'
    /// connection into [`Established`] (see `tls/established.rs`).
    fn settle(&mut self) {
        let Inner::Server(s) = &self.inner else {
            return;
        };
        if !s.ready_to_establish() {
            return;
        }
        let Inner::Server(s) = std::mem::replace(
            &mut self.inner,
            Inner::Failed(Box::new(rustls::Error::HandshakeNotComplete)),
        ) else {
            return;
        };
        self.inner = match (*s).establish().and_then(Established::new) {
            Ok(e) => Inner::Established(e),
            Err(error) => Inner::Failed(Box::new(error)),
        };
    }

    /// See `Established::limit_tx_records` (tests).
    #[cfg(test)]
    pub(super) fn limit_tx_records(&mut self, records: u64) {
        if let Inner::Established(e) = &mut self.inner {
            e.limit_tx_records(records);
        }
    }

    /// The session is past rustls' connection (tests).
    #[cfg(test)]
    pub(super) fn is_established(&self) -> bool {
        matches!(self.inner, Inner::Established(_))
    }
}

/// The error of a session whose handover failed; no alert: there are no
/// keys to encrypt one with.
fn failed(error: &rustls::Error) -> TlsError {
    TlsError {
        error: error.clone(),
        alert: Vec::new(),
    }
}

/// A fatal alert record (TLS 1.2 framing, which TLS 1.3 also uses for
/// unencrypted alerts) whose description matches the error's class.
pub(super) fn plaintext_fatal_alert(error: &rustls::Error) -> [u8; 7] {
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
