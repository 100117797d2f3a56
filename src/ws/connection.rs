//! The protocol state machine of one open WebSocket, sans IO.
//!
//! Bytes in, events and bytes out. The caller owns the receive buffer; we
//! parse frames in it, unmask payloads in place and hand out slices of it,
//! so a message that arrived in one read is never copied. Only fragmented
//! messages are assembled, in a buffer of our own.
//!
//! The buffer contract: when `read` answers [`Read::Incomplete`], the bytes
//! at the front of the buffer belong to an unfinished frame whose payload we
//! may already have unmasked and validated in place (so that invalid UTF-8
//! fails fast, and so the work is spread over the reads). The caller must
//! pass those bytes back, unchanged and still at the front, with more data
//! appended. Moving them to another buffer is fine.

use super::close::{code, ProtocolError};
use super::deflate::{self, Agreed, InflateError};
use super::frame::{self, parse_close, parse_header, CloseBody, Header, OpCode, RSV1};
use super::mask::apply_mask;
use super::utf8::{self, Utf8Validator};
use bytes::Bytes;

/// Which end of the connection we are: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Default largest message (sum of its fragments' payloads).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// An assembly buffer larger than this is freed once its message is
/// handed out, not kept for the connection's life: one 16 MiB fragmented
/// message must not cost 16 MiB until the connection closes. 64 KiB, as
/// the runtime does for its receive buffer: below it, reuse saves the
/// allocations of a steady stream of fragmented messages.
pub const KEEP_ASSEMBLED: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Binary,
}

/// A complete data message. For `Text`, `payload` is valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub kind: MessageKind,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Message(Message<'a>),
    /// `pong` is the answer to send (None once we are closing).
    Ping {
        payload: &'a [u8],
        pong: Option<Bytes>,
    },
    Pong(&'a [u8]),
    /// The peer's close arrived. `reply` is our answering close frame, or
    /// None when this was the answer to ours: either way the close
    /// handshake is complete and the transport may be closed once `reply`
    /// is sent.
    Close {
        body: CloseBody<'a>,
        reply: Option<Bytes>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// The first `consumed` bytes of the buffer were one frame; it produced
    /// `event`, or nothing (a non-final fragment, or data after closing).
    Frame {
        consumed: usize,
        event: Option<Event<'a>>,
    },
    /// The buffer holds only part of the next frame. `frame_len` is the
    /// whole frame's size once its header is known, so the caller can make
    /// room for it in one step.
    Incomplete { frame_len: Option<usize> },
}

/// The connection failed (§7.1.7). Send `close` if any, then close the
/// transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub error: ProtocolError,
    pub close: Option<Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// We sent a close and wait for the peer's.
    CloseSent,
    /// Both closes were exchanged, or the connection failed.
    Closed,
}

#[derive(Debug)]
pub struct Connection {
    role: Role,
    state: State,
    /// u32, like `partial_done`: this struct is in every connection, and a
    /// message over 4 GiB is refused anyway.
    max_message: u32,
    /// Set while a fragmented message is open.
    fragmented: Option<MessageKind>,
    /// Boxed: only connections that send fragmented messages have one, and
    /// an empty `Vec` would cost every connection 24 bytes, a box 8 (the
    /// extra allocation is per fragmented message, not per connection).
    #[allow(clippy::box_collection)]
    assembled: Option<Box<Vec<u8>>>,
    /// The assembled message was handed out; clear it on the next read.
    assembled_delivered: bool,
    utf8: Utf8Validator,
    /// Payload bytes of the frame at the buffer's front that are already
    /// unmasked and validated (see the buffer contract above).
    partial_done: u32,
    /// permessage-deflate was negotiated (`ws::deflate`).
    deflate: Option<Agreed>,
    /// The fragmented message now open is compressed (its first frame had
    /// RSV1): its bytes are assembled as they came and inflated whole.
    compressed: bool,
    /// The message handed out was inflated: free its buffer once released
    /// whatever its size, so a connection that sent one compressed message
    /// (a browser's subscribe) keeps no buffer for its life.
    inflated_delivered: bool,
    /// The peer's Close frame was read: once ours is out too, the close
    /// handshake is complete and the transport can simply be closed
    /// (nothing more may come; see `handshake_closed`).
    peer_closed: bool,
}

impl Connection {
    pub fn new(role: Role, max_message: usize) -> Self {
        Self {
            role,
            state: State::Open,
            max_message: max_message.min(u32::MAX as usize) as u32,
            fragmented: None,
            assembled: None,
            assembled_delivered: false,
            utf8: Utf8Validator::new(),
            partial_done: 0,
            deflate: None,
            compressed: false,
            inflated_delivered: false,
            peer_closed: false,
        }
    }

    /// permessage-deflate was agreed in the handshake: compressed messages
    /// (RSV1) are accepted and inflated.
    pub fn set_deflate(&mut self, agreed: Option<Agreed>) {
        self.deflate = agreed;
    }

    pub fn deflate(&self) -> Option<Agreed> {
        self.deflate
    }

    pub fn server() -> Self {
        Self::new(Role::Server, DEFAULT_MAX_MESSAGE)
    }

    pub fn client() -> Self {
        Self::new(Role::Client, DEFAULT_MAX_MESSAGE)
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Closed by the close handshake (both Close frames exchanged: the
    /// peer's was read, ours was queued as its echo or before it), not by
    /// a failure. The peer may send nothing after its Close (RFC 6455
    /// §5.5.1), so once ours is written the transport can be closed at
    /// once, without a half-close and a wait for the peer's EOF.
    pub fn handshake_closed(&self) -> bool {
        self.state == State::Closed && self.peer_closed
    }

    /// Frame `payload` for sending from this end (masked when we are the
    /// client). The server's hot path builds shared frames with
    /// [`frame::server_frame`] instead.
    pub fn encode(&self, opcode: OpCode, payload: &[u8]) -> Bytes {
        match self.role {
            Role::Server => frame::server_frame(opcode, payload),
            Role::Client => frame::client_frame(opcode, payload, fastrand::u32(..).to_ne_bytes()),
        }
    }

    /// Start the close handshake. None if it was already started.
    pub fn close(&mut self, status: u16, reason: &str) -> Option<Bytes> {
        if self.state != State::Open {
            return None;
        }
        self.state = State::CloseSent;
        Some(self.encode(OpCode::Close, &frame::close_payload(status, reason)))
    }

    fn fail(&mut self, error: ProtocolError) -> Failure {
        let close = self.close(error.code, error.reason);
        self.state = State::Closed;
        Failure { error, close }
    }

    /// Bytes of a fragmented message assembled so far (held until it
    /// completes).
    pub fn buffered(&self) -> usize {
        if self.assembled_delivered {
            0
        } else {
            self.assembled_len()
        }
    }

    fn assembled_len(&self) -> usize {
        self.assembled.as_ref().map_or(0, |a| a.len())
    }

    /// Forget the fragmented message last handed out (its slice is no
    /// longer borrowed), freeing a buffer over [`KEEP_ASSEMBLED`].
    pub fn release_delivered(&mut self) {
        if self.assembled_delivered {
            self.assembled_delivered = false;
            if let Some(a) = &mut self.assembled {
                a.clear();
                if a.capacity() > KEEP_ASSEMBLED || self.inflated_delivered {
                    self.assembled = None;
                }
            }
            self.inflated_delivered = false;
        }
    }

    /// Decode the next frame from the front of `buf`.
    pub fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Read<'a>, Failure> {
        self.release_delivered();
        if self.state == State::Closed {
            // Nothing after the close handshake means anything.
            return Ok(Read::Frame {
                consumed: buf.len(),
                event: None,
            });
        }
        let header = match parse_header(buf) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Read::Incomplete { frame_len: None }),
            Err(e) => return Err(self.fail(e)),
        };
        match self.check(&header) {
            Ok(()) => {}
            Err(e) => return Err(self.fail(e)),
        }
        // check() bounded payload_len by max_message (or 125), so it fits.
        let payload_len = header.payload_len as usize;
        let frame_len = header.len + payload_len;
        let avail = (buf.len() - header.len).min(payload_len);
        let (_, rest) = buf.split_at_mut(header.len);
        let payload = &mut rest[..avail];

        if header.opcode.is_control() {
            // At most 125 bytes: wait for all of it, then handle it whole.
            if avail < payload_len {
                return Ok(Read::Incomplete {
                    frame_len: Some(frame_len),
                });
            }
            if let Some(m) = header.mask {
                apply_mask(payload, m, 0);
            }
            let payload: &'a [u8] = payload;
            return self.control(header.opcode, payload, frame_len);
        }

        let kind = match header.opcode {
            OpCode::Text => MessageKind::Text,
            OpCode::Binary => MessageKind::Binary,
            _ => self.fragmented.unwrap_or(MessageKind::Binary),
        };
        let whole_message = header.fin && header.opcode != OpCode::Continuation;
        let compressed = if header.opcode == OpCode::Continuation {
            self.compressed
        } else {
            header.rsv & RSV1 != 0
        };
        let complete = avail == payload_len;
        let done = self.partial_done as usize;
        let new = &mut payload[done..];
        if let Some(m) = header.mask {
            apply_mask(new, m, done);
        }
        // A compressed message's UTF-8 is checked once it is inflated.
        if kind == MessageKind::Text && !compressed {
            let ok = if whole_message && complete && done == 0 {
                // Fast path: the message is all here, validate it at once.
                utf8::validate(new)
            } else {
                self.utf8.feed(new).and_then(|()| {
                    if complete && header.fin {
                        self.utf8.finish()
                    } else {
                        Ok(())
                    }
                })
            };
            if ok.is_err() {
                self.utf8.reset();
                return Err(self.fail(ProtocolError {
                    code: code::INVALID_PAYLOAD,
                    reason: "invalid UTF-8 in text message",
                }));
            }
        }
        if !complete {
            // avail < payload_len <= max_message (a u32), checked above.
            self.partial_done = avail as u32;
            return Ok(Read::Incomplete {
                frame_len: Some(frame_len),
            });
        }
        self.partial_done = 0;
        let payload: &'a [u8] = payload;

        if self.state != State::Open {
            // We already sent a close: the peer's data is of no use, but
            // it is still checked above so a violation is still reported.
            if header.fin {
                self.fragmented = None;
                self.compressed = false;
                if let Some(a) = &mut self.assembled {
                    a.clear();
                }
            } else if header.opcode != OpCode::Continuation {
                self.fragmented = Some(kind);
                self.compressed = compressed;
            }
            return Ok(Read::Frame {
                consumed: frame_len,
                event: None,
            });
        }
        if whole_message && !compressed {
            return Ok(Read::Frame {
                consumed: frame_len,
                event: Some(Event::Message(Message { kind, payload })),
            });
        }
        if whole_message {
            // Inflated into the assembly buffer, free while no fragmented
            // message is open.
            let mut out = self.assembled.take().unwrap_or_default();
            if let Err(e) = self.inflate(kind, payload, &mut out) {
                return Err(self.fail(e));
            }
            self.assembled = Some(out);
        } else {
            self.assembled
                .get_or_insert_with(Box::default)
                .extend_from_slice(payload);
            if !header.fin {
                self.fragmented = Some(kind);
                self.compressed = compressed;
                return Ok(Read::Frame {
                    consumed: frame_len,
                    event: None,
                });
            }
            self.fragmented = None;
            if compressed {
                self.compressed = false;
                let packed = self.assembled.take().unwrap_or_default();
                let mut out = Box::default();
                let inflated = self.inflate(kind, &packed, &mut out);
                self.assembled = Some(packed);
                if let Err(e) = inflated {
                    return Err(self.fail(e));
                }
                self.assembled = Some(out);
            }
        }
        self.assembled_delivered = true;
        self.inflated_delivered = compressed;
        Ok(Read::Frame {
            consumed: frame_len,
            event: Some(Event::Message(Message {
                kind,
                payload: self.assembled.as_deref().map_or(&[], |a| &a[..]),
            })),
        })
    }

    /// Inflates one compressed message into `out`, bounded by the message
    /// limit, and checks a text message's UTF-8.
    fn inflate(
        &self,
        kind: MessageKind,
        packed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        deflate::inflate(packed, self.max_message as usize, out).map_err(|e| match e {
            InflateError::TooBig => ProtocolError {
                code: code::MESSAGE_TOO_BIG,
                reason: "message too big once inflated",
            },
            InflateError::Invalid => ProtocolError::protocol("invalid compressed data"),
        })?;
        if kind == MessageKind::Text && utf8::validate(out).is_err() {
            return Err(ProtocolError {
                code: code::INVALID_PAYLOAD,
                reason: "invalid UTF-8 in text message",
            });
        }
        Ok(())
    }

    /// The rules that depend on our state and role, not on the header alone.
    fn check(&self, h: &Header) -> Result<(), ProtocolError> {
        if h.rsv & RSV1 != 0 {
            if self.deflate.is_none() {
                return Err(ProtocolError::protocol("reserved bits set"));
            }
            if h.opcode.is_control() {
                return Err(ProtocolError::protocol("RSV1 set on a control frame"));
            }
            if h.opcode == OpCode::Continuation {
                return Err(ProtocolError::protocol("RSV1 set on a continuation frame"));
            }
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => {
                return Err(ProtocolError::protocol("client frame not masked"))
            }
            (Role::Client, true) => return Err(ProtocolError::protocol("server frame masked")),
            _ => {}
        }
        match (h.opcode, self.fragmented.is_some()) {
            (OpCode::Continuation, false) => {
                return Err(ProtocolError::protocol(
                    "continuation without a message to continue",
                ))
            }
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(ProtocolError::protocol(
                    "new message inside a fragmented message",
                ))
            }
            _ => {}
        }
        if !h.opcode.is_control() {
            let so_far = if h.opcode == OpCode::Continuation {
                self.assembled_len() as u64
            } else {
                0
            };
            if so_far.saturating_add(h.payload_len) > u64::from(self.max_message) {
                return Err(ProtocolError {
                    code: code::MESSAGE_TOO_BIG,
                    reason: "message too big",
                });
            }
        }
        Ok(())
    }

    fn control<'a>(
        &mut self,
        opcode: OpCode,
        payload: &'a [u8],
        consumed: usize,
    ) -> Result<Read<'a>, Failure> {
        let event = match opcode {
            OpCode::Ping => Event::Ping {
                payload,
                pong: (self.state == State::Open).then(|| self.encode(OpCode::Pong, payload)),
            },
            OpCode::Pong => Event::Pong(payload),
            _ => {
                let body = match parse_close(payload) {
                    Ok(b) => b,
                    Err(e) => return Err(self.fail(e)),
                };
                let reply = match self.state {
                    // Echo the peer's code (§5.5.1); an empty close gets an
                    // empty close back.
                    State::Open => Some(match body.code {
                        Some(c) => self.encode(OpCode::Close, &c.to_be_bytes()),
                        None => self.encode(OpCode::Close, &[]),
                    }),
                    _ => None,
                };
                self.state = State::Closed;
                self.peer_closed = true;
                Event::Close { body, reply }
            }
        };
        Ok(Read::Frame {
            consumed,
            event: Some(event),
        })
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "connection_deflate_tests.rs"]
mod deflate_tests;
