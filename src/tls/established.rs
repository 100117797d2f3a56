//! The server side of [`super::TlsSession`] once its handshake is over:
//! just the two record keys, their sequence numbers and the flags TLS needs
//! after the handshake, about a tenth of what rustls' connection keeps.
//!
//! # Why leave rustls' connection after the handshake
//!
//! An idle subscriber spends its life established. rustls'
//! `UnbufferedServerConnection` keeps, for the life of the connection, its
//! whole handshake machinery: 1,176 B inline and 1,054-1,416 B of heap
//! when idle (640 B of that an index of handshake fragments allocated for
//! 16 and never shrunk), 2,230-2,592 B all told, most of it never used
//! again. Once the handshake is done, rustls hands the traffic secrets and
//! the sequence numbers over (`dangerous_into_kernel_connection`, the API
//! it offers for kTLS, which does the same job in the kernel), and this
//! type carries on with rustls' own record protection
//! (`MessageEncrypter`/`MessageDecrypter` from the negotiated suite, the
//! same AES-GCM code rustls would run) and does the rest of TLS after the
//! handshake itself:
//! - record framing, the record size limits, sequence numbers;
//! - alerts: close_notify both ways, fatal alerts received, fatal alerts
//!   sent encrypted for every error (rustls' connection could not send
//!   one for some);
//! - TLS 1.3 KeyUpdate, received (new receive key; our own KeyUpdate before
//!   our next record when the peer asks) and sent at the suite's
//!   confidentiality limit (2^24.5 records for AES-GCM); rustls'
//!   `KernelConnection`, kept boxed for TLS 1.3 only, derives the secrets;
//! - TLS 1.2: renegotiation refused (one no_renegotiation warning, then a
//!   fatal alert, as rustls does) and the connection closed at the
//!   confidentiality limit, which TLS 1.2 cannot rekey.
//!
//! The same handover is where kTLS would plug in (docs/architecture.md):
//! the secrets would go to the kernel instead of into the two keys here.
//!
//! # What an idle session holds
//!
//! No input buffer (a record that arrives in pieces is kept, sized to fit,
//! only until it is whole), no output buffer (records go into the caller's
//! `out`, or become it when it is empty), the two keys and, for TLS 1.3,
//! the key schedule. Measured in `tls::idle_memory_tests`.

use std::mem;

use rustls::crypto::cipher::{
    InboundOpaqueMessage, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, Error, HandshakeKind, HandshakeType,
    InvalidMessage, PeerMisbehaved, ProtocolVersion, SupportedCipherSuite,
};

use super::session::{Feed, TlsError};
use super::unbuffered::{with_input_scratch, MAX_HELD};

/// TLS record header: type, version, length.
const HEADER: usize = 5;

/// The longest record body TLS allows (RFC 8446 section 5.2).
const MAX_RECORD_BODY: usize = MAX_HELD - HEADER;

/// Plaintext per record: full records up to 2^14 bytes.
const RECORD_PLAINTEXT: usize = 16_384;

/// KeyUpdates a peer may send with no application data between them
/// (BoringSSL's `kMaxKeyUpdates`, rustls' limit too): each costs us a key
/// derivation, so an endless stream of them is refused.
const KEY_UPDATES_WITHOUT_DATA: u8 = 32;

/// Renegotiation requests (TLS 1.2 ClientHellos after the handshake)
/// answered with a no_renegotiation warning before the next one is fatal:
/// one, as rustls allows.
const RENEGOTIATIONS_WARNED: u8 = 1;

/// A sequence number past which nothing is sent or accepted: the last
/// values are never reached in practice (2^64 records), but a wrap would
/// reuse a nonce, so they are a hard stop.
const SEQ_HARD_LIMIT: u64 = u64::MAX - 1;

/// Handshake message header: type and a 24-bit length.
const HS_HEADER: usize = 4;

pub(super) struct Established {
    tx: Box<dyn MessageEncrypter>,
    rx: Box<dyn MessageDecrypter>,
    tx_seq: u64,
    rx_seq: u64,
    /// Records the current send key may protect (the suite's
    /// confidentiality limit); TLS 1.3 rekeys there, TLS 1.2 closes.
    tx_limit: u64,
    suite: SupportedCipherSuite,
    /// TLS 1.3: derives the next traffic secrets for KeyUpdate. `None` for
    /// TLS 1.2, which has no KeyUpdate.
    kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    /// A record that arrived in part, from its header on; capacity 0 when
    /// empty, and never more than the record's length.
    held: Vec<u8>,
    sni: Option<Box<str>>,
    alpn: Option<Box<[u8]>>,
    kind: HandshakeKind,
    /// The error that ended the session; boxed so a live session pays 8 B.
    failed: Option<Box<Error>>,
    key_updates_left: u8,
    renegotiations_left: u8,
    /// The peer asked for our KeyUpdate: it goes before our next record.
    key_update_due: bool,
    peer_closed: bool,
    sent_close: bool,
}

/// What the handshake left: the state [`Established::new`] starts from.
pub(super) struct Handover {
    pub kernel: KernelConnection<ServerConnectionData>,
    pub secrets: rustls::ExtractedSecrets,
    pub held: Vec<u8>,
    pub sni: Option<Box<str>>,
    pub alpn: Option<Box<[u8]>>,
    pub kind: HandshakeKind,
}

impl Established {
    pub(super) fn new(h: Handover) -> Result<Self, Error> {
        let suite = h.kernel.negotiated_cipher_suite();
        let (tx_seq, tx_secrets) = h.secrets.tx;
        let (rx_seq, rx_secrets) = h.secrets.rx;
        let mut tx = encrypter(suite, tx_secrets)?;
        prime(&mut *tx, tx_seq)?;
        let rx = decrypter(suite, rx_secrets)?;
        let tls13 = suite.tls13().is_some();
        Ok(Self {
            tx,
            rx,
            tx_seq,
            rx_seq,
            tx_limit: confidentiality_limit(suite),
            suite,
            kernel: tls13.then(|| Box::new(h.kernel)),
            held: h.held,
            sni: h.sni,
            alpn: h.alpn,
            kind: h.kind,
            failed: None,
            key_updates_left: KEY_UPDATES_WITHOUT_DATA,
            renegotiations_left: RENEGOTIATIONS_WARNED,
            key_update_due: false,
            peer_closed: false,
            sent_close: false,
        })
    }

    fn tls13(&self) -> bool {
        self.kernel.is_some()
    }

    pub(super) fn pending(&mut self, _out: &mut Vec<u8>) {
        // Nothing is ever queued: records go out from the call that made
        // them.
    }

    pub(super) fn feed(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Feed, TlsError> {
        if let Some(error) = &self.failed {
            return Err(refail(error));
        }
        let mut feed = Feed {
            peer_closed: self.peer_closed,
            ..Feed::default()
        };
        if self.peer_closed || ciphertext.is_empty() {
            // Nothing after close_notify counts (RFC 8446 section 6.1).
            return Ok(feed);
        }
        match self.read(ciphertext, plaintext, out, &mut feed) {
            Ok(()) => Ok(feed),
            Err(error) => Err(self.fail(error)),
        }
    }

    fn read(
        &mut self,
        mut input: &[u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
        feed: &mut Feed,
    ) -> Result<(), Error> {
        if !self.held.is_empty() {
            // Complete the record held from earlier calls, growing `held`
            // to exactly the record's length once its header is known, so
            // a record arriving a byte at a time holds at most one record.
            let mut held = mem::take(&mut self.held);
            if held.len() < HEADER {
                let take = (HEADER - held.len()).min(input.len());
                held.extend_from_slice(&input[..take]);
                input = &input[take..];
                if held.len() < HEADER {
                    self.held = held;
                    return Ok(());
                }
            }
            let total = record_len(&held)?;
            held.reserve_exact(total - held.len());
            let take = (total - held.len()).min(input.len());
            held.extend_from_slice(&input[..take]);
            input = &input[take..];
            if held.len() < total {
                self.held = held;
                return Ok(());
            }
            self.open(&mut held, plaintext, out, feed)?;
            if self.peer_closed {
                return Ok(());
            }
        }
        // Whole records are decrypted in place in a per-thread copy (one
        // copy, as rustls' own deframer makes); a partial one at the end
        // is kept, sized to fit.
        let mut whole = 0;
        while input.len() - whole >= HEADER {
            let len = record_len(&input[whole..])?;
            if input.len() - whole < len {
                break;
            }
            whole += len;
        }
        if whole > 0 {
            with_input_scratch(|buf| {
                buf.extend_from_slice(&input[..whole]);
                let mut at = 0;
                while at < whole && !self.peer_closed {
                    let len = record_len(&buf[at..])?;
                    self.open(&mut buf[at..at + len], plaintext, out, feed)?;
                    at += len;
                }
                Ok::<(), Error>(())
            })?;
        }
        if !self.peer_closed && whole < input.len() {
            self.held = input[whole..].to_vec();
        }
        Ok(())
    }

    /// Decrypts and acts on one whole record (header included).
    fn open(
        &mut self,
        record: &mut [u8],
        plaintext: &mut Vec<u8>,
        out: &mut Vec<u8>,
        feed: &mut Feed,
    ) -> Result<(), Error> {
        let typ = ContentType::from(record[0]);
        let version = ProtocolVersion::from(u16::from_be_bytes([record[1], record[2]]));
        // TLS 1.3 protects every record as application data; its real type
        // is inside. TLS 1.2 shows it, and after the handshake only these
        // three may come.
        let expected = if self.tls13() {
            matches!(typ, ContentType::ApplicationData)
        } else {
            matches!(
                typ,
                ContentType::ApplicationData | ContentType::Alert | ContentType::Handshake
            )
        };
        if !expected {
            return Err(Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData],
                got_type: typ,
            });
        }
        if self.rx_seq >= SEQ_HARD_LIMIT {
            return Err(Error::DecryptError);
        }
        let message = InboundOpaqueMessage::new(typ, version, &mut record[HEADER..]);
        let plain = self.rx.decrypt(message, self.rx_seq)?;
        self.rx_seq += 1;
        if plain.payload.len() > RECORD_PLAINTEXT {
            return Err(Error::PeerSentOversizedRecord);
        }
        match plain.typ {
            ContentType::ApplicationData => {
                self.key_updates_left = KEY_UPDATES_WITHOUT_DATA;
                plaintext.extend_from_slice(plain.payload);
                feed.plaintext += plain.payload.len();
                Ok(())
            }
            ContentType::Alert => self.alert_received(plain.payload, feed),
            ContentType::Handshake => self.handshake_received(plain.payload, out),
            other => Err(Error::InappropriateMessage {
                expect_types: vec![ContentType::ApplicationData],
                got_type: other,
            }),
        }
    }

    fn alert_received(&mut self, payload: &[u8], feed: &mut Feed) -> Result<(), Error> {
        let &[level, description] = payload else {
            return Err(Error::InvalidMessage(InvalidMessage::MessageTooShort));
        };
        let description = AlertDescription::from(description);
        if description == AlertDescription::CloseNotify {
            self.peer_closed = true;
            feed.peer_closed = true;
            self.held = Vec::new();
            return Ok(());
        }
        // TLS 1.2 warnings carry on; TLS 1.3 has only two alerts that are
        // not fatal whatever their level (RFC 8446 section 6).
        let warning = level == 1;
        if warning && (!self.tls13() || description == AlertDescription::UserCanceled) {
            return Ok(());
        }
        Err(Error::AlertReceived(description))
    }

    /// Handshake messages after the handshake: TLS 1.3 KeyUpdate, TLS 1.2
    /// renegotiation requests. Each must be whole in its record: no
    /// client sends these split (a KeyUpdate is 5 bytes), and holding
    /// fragments across records is state an idle session would carry.
    fn handshake_received(&mut self, mut messages: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if messages.is_empty() {
            return Err(Error::InvalidMessage(InvalidMessage::InvalidEmptyPayload));
        }
        while !messages.is_empty() {
            let Some((header, rest)) = messages.split_first_chunk::<HS_HEADER>() else {
                return Err(Error::InvalidMessage(InvalidMessage::MessageTooShort));
            };
            let len = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            if rest.len() < len {
                return Err(Error::InvalidMessage(InvalidMessage::MessageTooShort));
            }
            let (body, next) = rest.split_at(len);
            messages = next;
            match HandshakeType::from(header[0]) {
                HandshakeType::KeyUpdate if self.tls13() => {
                    // A key change must end its record (RFC 8446 section 5.1).
                    if !next.is_empty() {
                        return Err(PeerMisbehaved::KeyEpochWithPendingFragment.into());
                    }
                    let requested = match body {
                        [0] => false,
                        [1] => true,
                        _ => return Err(Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate)),
                    };
                    self.key_updates_left = self
                        .key_updates_left
                        .checked_sub(1)
                        .ok_or(PeerMisbehaved::TooManyKeyUpdateRequests)?;
                    self.update_rx()?;
                    self.key_update_due |= requested;
                }
                HandshakeType::ClientHello if !self.tls13() => {
                    self.renegotiations_left = self
                        .renegotiations_left
                        .checked_sub(1)
                        .ok_or(PeerMisbehaved::TooManyRenegotiationRequests)?;
                    self.write_alert(1, AlertDescription::NoRenegotiation, out)?;
                }
                other => {
                    return Err(Error::InappropriateHandshakeMessage {
                        expect_types: vec![if self.tls13() {
                            HandshakeType::KeyUpdate
                        } else {
                            HandshakeType::ClientHello
                        }],
                        got_type: other,
                    })
                }
            }
        }
        Ok(())
    }

    fn update_rx(&mut self) -> Result<(), Error> {
        let kernel = self.kernel.as_mut().ok_or(Error::HandshakeNotComplete)?;
        let (seq, secrets) = kernel.update_rx_secret()?;
        self.rx = decrypter(self.suite, secrets)?;
        self.rx_seq = seq;
        Ok(())
    }

    /// Encrypts the slices as one stream into `out`: records of 16 KiB
    /// whatever the split (rustls' `OutboundChunks` reads across slices,
    /// so short frames are not copied together first).
    pub(super) fn seal(&mut self, plaintext: &[&[u8]], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if let Some(error) = &self.failed {
            return Err(refail(error));
        }
        let total: usize = plaintext.iter().map(|s| s.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let result = if self.sent_close {
            Err(Error::General("connection no longer accepts data".into()))
        } else {
            let mut start = 0;
            let mut result = Ok(());
            while start < total && result.is_ok() {
                let end = (start + RECORD_PLAINTEXT).min(total);
                let chunk = OutboundChunks::Multiple {
                    chunks: plaintext,
                    start,
                    end,
                };
                result = self.write(ContentType::ApplicationData, chunk, out);
                start = end;
            }
            result
        };
        result.map_err(|error| self.fail(error))
    }

    pub(super) fn close_notify(&mut self, out: &mut Vec<u8>) {
        if self.sent_close || self.failed.is_some() {
            return;
        }
        self.sent_close = true;
        // A failure here leaves nothing to say: the caller closes anyway.
        let _ = self.write_alert(1, AlertDescription::CloseNotify, out);
    }

    fn write_alert(
        &mut self,
        level: u8,
        description: AlertDescription,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let alert = [level, u8::from(description)];
        self.write(ContentType::Alert, OutboundChunks::Single(&alert), out)
    }

    /// Protects one record, first sending our KeyUpdate when one is due
    /// (asked for, or the key's confidentiality limit reached).
    fn write(
        &mut self,
        typ: ContentType,
        payload: OutboundChunks<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if self.key_update_due || self.tx_seq >= self.tx_limit {
            self.update_tx(out)?;
        }
        self.encrypt(typ, payload, out)
    }

    fn encrypt(
        &mut self,
        typ: ContentType,
        payload: OutboundChunks<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if self.tx_seq >= SEQ_HARD_LIMIT {
            return Err(Error::EncryptError);
        }
        let message = OutboundPlainMessage {
            typ,
            // TLS 1.3 records also say 1.2 (its legacy_record_version).
            version: ProtocolVersion::TLSv1_2,
            payload,
        };
        let record = self.tx.encrypt(message, self.tx_seq)?.encode();
        self.tx_seq += 1;
        if out.capacity() == 0 {
            // The usual case in fan-out (the runtime's buffer is taken by
            // each send): the record becomes the buffer, no copy.
            *out = record;
        } else {
            out.extend_from_slice(&record);
        }
        Ok(())
    }

    /// TLS 1.3: a KeyUpdate under the old key, then the new key. TLS 1.2
    /// cannot rekey: at the limit the connection ends.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Some(kernel) = self.kernel.as_mut() else {
            return Err(Error::General(
                "TLS 1.2 confidentiality limit reached: closing".into(),
            ));
        };
        let (seq, secrets) = kernel.update_tx_secret()?;
        let next = encrypter(self.suite, secrets)?;
        // KeyUpdate, length 1, update_not_requested.
        let key_update = [u8::from(HandshakeType::KeyUpdate), 0, 0, 1, 0];
        self.encrypt(
            ContentType::Handshake,
            OutboundChunks::Single(&key_update),
            out,
        )?;
        self.tx = next;
        self.tx_seq = seq;
        self.tx_limit = confidentiality_limit(self.suite);
        self.key_update_due = false;
        Ok(())
    }

    pub(super) fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    pub(super) fn handshake_kind(&self) -> Option<HandshakeKind> {
        Some(self.kind)
    }

    pub(super) fn protocol_version(&self) -> Option<ProtocolVersion> {
        Some(if self.tls13() {
            ProtocolVersion::TLSv1_3
        } else {
            ProtocolVersion::TLSv1_2
        })
    }

    pub(super) fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    #[cfg(test)]
    pub(super) fn held_capacity(&self) -> usize {
        self.held.capacity()
    }

    /// Lowers the send key's confidentiality limit to `records` from now,
    /// so tests reach it (the real one is 2^24.5 records for AES-GCM).
    #[cfg(test)]
    pub(super) fn limit_tx_records(&mut self, records: u64) {
        self.tx_limit = self.tx_seq + records;
    }

    /// Ends the session with an encrypted fatal alert for `error` (none
    /// for an alert the peer sent: it has closed already).
    fn fail(&mut self, error: Error) -> TlsError {
        self.held = Vec::new();
        let mut alert = Vec::new();
        if let Some(description) = alert_for(&error) {
            if !self.sent_close {
                let _ = self.encrypt(
                    ContentType::Alert,
                    OutboundChunks::Single(&[2, u8::from(description)]),
                    &mut alert,
                );
            }
        }
        // Records this call already made (a KeyUpdate, a warning) stay in
        // `out`, ahead of the alert, where the caller appends it.
        self.failed = Some(Box::new(error.clone()));
        TlsError { error, alert }
    }
}

/// The same error again for a session that failed: its alert went out
/// with the first failure.
fn refail(error: &Error) -> TlsError {
    TlsError {
        error: error.clone(),
        alert: Vec::new(),
    }
}

/// The whole length of the record starting `buf` (which holds at least its
/// header): refused from the header alone if it announces a body longer
/// than TLS allows, rather than waiting for 64 KiB, or if it is not TLS.
fn record_len(buf: &[u8]) -> Result<usize, Error> {
    if buf[1] != 3 {
        return Err(Error::InvalidMessage(
            InvalidMessage::UnknownProtocolVersion,
        ));
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len > MAX_RECORD_BODY {
        return Err(Error::InvalidMessage(InvalidMessage::MessageTooLarge));
    }
    Ok(HEADER + len)
}

/// The fatal alert an error is answered with, following rustls' choices
/// during the handshake; `None` when the peer's own alert ended it.
fn alert_for(error: &Error) -> Option<AlertDescription> {
    Some(match error {
        Error::AlertReceived(_) => return None,
        Error::DecryptError => AlertDescription::BadRecordMac,
        Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
        Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate) => {
            AlertDescription::IllegalParameter
        }
        Error::InvalidMessage(_) => AlertDescription::DecodeError,
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } => {
            AlertDescription::UnexpectedMessage
        }
        Error::PeerMisbehaved(PeerMisbehaved::TooManyRenegotiationRequests) => {
            AlertDescription::HandshakeFailure
        }
        Error::PeerMisbehaved(_) => AlertDescription::UnexpectedMessage,
        _ => AlertDescription::InternalError,
    })
}

fn confidentiality_limit(suite: SupportedCipherSuite) -> u64 {
    match suite {
        SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
    }
}

fn key_iv(
    secrets: ConnectionTrafficSecrets,
) -> Result<(rustls::crypto::cipher::AeadKey, rustls::crypto::cipher::Iv), Error> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(Error::General("unsupported cipher for handover".into())),
    }
}

fn encrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Box<dyn MessageEncrypter>, Error> {
    let (key, iv) = key_iv(secrets)?;
    Ok(match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.encrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            // The extracted IV is the fixed part and the explicit nonce
            // together (AES-GCM: 4 + 8 bytes; ChaCha20: 12 + 0).
            let (fixed, explicit) = iv
                .as_ref()
                .split_at(s.aead_alg.key_block_shape().fixed_iv_len);
            s.aead_alg.encrypter(key, fixed, explicit)
        }
    })
}

fn decrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Box<dyn MessageDecrypter>, Error> {
    let (key, iv) = key_iv(secrets)?;
    Ok(match suite {
        SupportedCipherSuite::Tls13(s) => s.aead_alg.decrypter(key, iv),
        SupportedCipherSuite::Tls12(s) => {
            let fixed = &iv.as_ref()[..s.aead_alg.key_block_shape().fixed_iv_len];
            s.aead_alg.decrypter(key, fixed)
        }
    })
}

/// rustls' aws-lc-rs AES-GCM sealing key (`TlsRecordSealingKey`, used for
/// TLS 1.2 and 1.3 alike) learns the nonce's mask from the first record it
/// seals, assuming that record's sequence number is 0, and then refuses
/// any nonce not above the last one. Handed over at sequence number N > 0
/// (the handshake's Finished, the TLS 1.3 tickets), a fresh key would take
/// record N for record 0 and fail or misnumber every record after. Sealing
/// one empty record at 0 first teaches it the right mask. The record is
/// thrown away: its nonce was used by the real record 0 already, but a
/// ciphertext that never leaves the process reveals nothing.
fn prime(tx: &mut dyn MessageEncrypter, seq: u64) -> Result<(), Error> {
    if seq > 0 {
        tx.encrypt(
            OutboundPlainMessage {
                typ: ContentType::ApplicationData,
                version: ProtocolVersion::TLSv1_2,
                payload: OutboundChunks::new_empty(),
            },
            0,
        )?;
    }
    Ok(())
}
