//! Frame headers (RFC 6455 §5.2): parsing straight from the receive buffer,
//! and encoding frames into a single `Bytes` so the same allocation can be
//! queued on any number of sockets.

use super::close::{code, ProtocolError};
use super::mask::apply_mask;
use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Largest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1 in [`Header::rsv`]: set on the first frame of a message that
/// permessage-deflate compressed (RFC 7692 section 6).
pub const RSV1: u8 = 0b100;

/// Largest header: 2 + 8 (64-bit length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1..3 as the low three bits.
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header occupies on the wire.
    pub len: usize,
}

impl Header {
    /// Header plus payload, if it fits in memory at all.
    pub fn frame_len(&self) -> Option<usize> {
        usize::try_from(self.payload_len)
            .ok()
            .and_then(|p| p.checked_add(self.len))
    }
}

/// Parse a header from the front of `buf`. `Ok(None)`: not all of it is
/// here yet. Checks only what the header alone decides: reserved bits,
/// opcode, control frame shape, length encoding.
#[inline]
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    let fin = b0 & 0x80 != 0;
    let rsv = (b0 >> 4) & 0x7;
    if rsv & !RSV1 != 0 {
        // RSV1 is permessage-deflate's; whether it may be set depends on
        // the connection (`Connection::check`). No extension uses the others.
        return Err(ProtocolError::protocol("reserved bits set"));
    }
    let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::protocol("unknown opcode"))?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    let (payload_len, mut len) = match len7 {
        126 => match buf.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let n = u64::from_be_bytes(a);
                if n >> 63 != 0 {
                    return Err(ProtocolError::protocol("64-bit length has top bit set"));
                }
                (n, 10)
            }
            None => return Ok(None),
        },
        n => (n as u64, 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::protocol("fragmented control frame"));
        }
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::protocol(
                "control frame payload over 125 bytes",
            ));
        }
    }
    let mask = if masked {
        match buf.get(len..len + 4) {
            Some(m) => {
                len += 4;
                Some([m[0], m[1], m[2], m[3]])
            }
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        len,
    }))
}

/// Bytes a header takes for this payload length.
#[inline]
pub fn header_len(payload_len: usize, masked: bool) -> usize {
    let base = match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

/// Append a header to `dst`.
#[inline]
pub fn put_header(
    dst: &mut impl BufMut,
    fin: bool,
    opcode: OpCode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) {
    dst.put_u8(if fin { 0x80 } else { 0 } | opcode as u8);
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload_len {
        0..=125 => dst.put_u8(m | payload_len as u8),
        126..=0xffff => {
            dst.put_u8(m | 126);
            dst.put_u16(payload_len as u16);
        }
        _ => {
            dst.put_u8(m | 127);
            dst.put_u64(payload_len as u64);
        }
    }
    if let Some(k) = mask {
        dst.put_slice(&k);
    }
}

/// A server frame (unmasked, FIN set) whose payload is the concatenation of
/// `parts`, in one allocation. The broker builds its `msg` frames this way:
/// envelope and the publisher's bytes go straight into the frame, with no
/// intermediate payload buffer.
pub fn server_frame_parts(opcode: OpCode, parts: &[&[u8]]) -> Bytes {
    frame_with(opcode, 0, parts)
}

/// A server frame of `parts` with the reserved bits `rsv` (RSV1..3 as the
/// low three bits, as in [`Header::rsv`]).
fn frame_with(opcode: OpCode, rsv: u8, parts: &[&[u8]]) -> Bytes {
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let mut b = BytesMut::with_capacity(header_len(payload_len, false) + payload_len);
    put_header(&mut b, true, opcode, payload_len, None);
    b[0] |= rsv << 4;
    for p in parts {
        b.put_slice(p);
    }
    b.freeze()
}

/// A server frame (unmasked, FIN and RSV1 set) carrying a message that
/// permessage-deflate compressed (`payload` is the compressed bytes).
pub fn server_frame_deflated(opcode: OpCode, payload: &[u8]) -> Bytes {
    frame_with(opcode, RSV1, &[payload])
}

/// A server frame (unmasked, FIN set) carrying `payload`.
pub fn server_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    server_frame_parts(opcode, &[payload])
}

/// A client frame (masked with `mask`, FIN set) carrying `payload`.
pub fn client_frame(opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Bytes {
    let mut b = BytesMut::with_capacity(header_len(payload.len(), true) + payload.len());
    put_header(&mut b, true, opcode, payload.len(), Some(mask));
    let start = b.len();
    b.put_slice(payload);
    apply_mask(&mut b[start..], mask, 0);
    b.freeze()
}

/// The payload of a close frame: code then reason, the reason cut to fit
/// the 125-byte control limit on a character boundary.
pub fn close_payload(status: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut p = Vec::with_capacity(2 + cut);
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..cut]);
    p
}

/// A server close frame with `status` and `reason`.
pub fn server_close(status: u16, reason: &str) -> Bytes {
    server_frame(OpCode::Close, &close_payload(status, reason))
}

/// What a received close frame said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseBody<'a> {
    /// None when the frame had no payload (reported as 1005 by APIs).
    pub code: Option<u16>,
    pub reason: &'a str,
}

/// Validate a received close frame's payload (§5.5.1, §7.4).
pub fn parse_close(payload: &[u8]) -> Result<CloseBody<'_>, ProtocolError> {
    match payload {
        [] => Ok(CloseBody {
            code: None,
            reason: "",
        }),
        [_] => Err(ProtocolError::protocol("close payload of 1 byte")),
        [hi, lo, rest @ ..] => {
            let c = u16::from_be_bytes([*hi, *lo]);
            if !super::close::is_valid_on_wire(c) {
                return Err(ProtocolError::protocol("invalid close code"));
            }
            let reason = simdutf8::basic::from_utf8(rest).map_err(|_| ProtocolError {
                code: code::INVALID_PAYLOAD,
                reason: "close reason is not UTF-8",
            })?;
            Ok(CloseBody {
                code: Some(c),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(bytes: &[u8]) -> Result<Option<Header>, ProtocolError> {
        parse_header(bytes)
    }

    #[test]
    fn short_masked_text() {
        let h = hdr(&[0x81, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.len, 6);
    }

    #[test]
    fn incomplete_headers_need_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 9, 9, 9, 9];
        for n in 0..full.len() {
            assert_eq!(hdr(&full[..n]), Ok(None), "prefix {n}");
        }
        let h = hdr(&full).unwrap().unwrap();
        assert_eq!(h.payload_len, 65536);
        assert_eq!(h.len, 14);
    }

    #[test]
    fn sixteen_bit_length() {
        let h = hdr(&[0x02, 126, 0x01, 0x00]).unwrap().unwrap();
        assert!(!h.fin);
        assert_eq!(h.payload_len, 256);
        assert_eq!(h.mask, None);
    }

    #[test]
    fn rsv_bits_rejected() {
        for rsv in [0x20u8, 0x10, 0x70, 0x60] {
            let e = hdr(&[0x81 | rsv, 0x80, 0, 0, 0, 0]).unwrap_err();
            assert_eq!(e.code, 1002);
        }
        // RSV1 is left to the connection, which knows about deflate.
        let h = hdr(&[0xc1, 0x80, 0, 0, 0, 0]).unwrap().unwrap();
        assert_eq!(h.rsv, RSV1);
    }

    #[test]
    fn reserved_opcodes_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let e = hdr(&[0x80 | op, 0x80, 0, 0, 0, 0]).unwrap_err();
            assert_eq!(e.code, 1002, "opcode {op}");
        }
    }

    #[test]
    fn control_frame_rules() {
        // Ping with 126 bytes (16-bit length form).
        assert_eq!(hdr(&[0x89, 0xFE, 0, 126]).unwrap_err().code, 1002);
        // Fragmented ping.
        assert_eq!(hdr(&[0x09, 0x80]).unwrap_err().code, 1002);
        // 125 is fine.
        assert!(hdr(&[0x8A, 0x80 | 125, 0, 0, 0, 0]).unwrap().is_some());
    }

    #[test]
    fn top_bit_of_64_bit_length() {
        let e = hdr(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, 1002);
    }

    #[test]
    fn encode_round_trips_every_length_form() {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            let f = server_frame(OpCode::Binary, &payload);
            let h = hdr(&f).unwrap().unwrap();
            assert_eq!(h.len, header_len(len, false));
            assert_eq!(h.payload_len as usize, len);
            assert_eq!(&f[h.len..], &payload[..]);

            let c = client_frame(OpCode::Text, &payload, [1, 2, 3, 4]);
            let h = hdr(&c).unwrap().unwrap();
            assert_eq!(h.len, header_len(len, true));
            let mut p = c[h.len..].to_vec();
            apply_mask(&mut p, [1, 2, 3, 4], 0);
            assert_eq!(p, payload);
        }
    }

    #[test]
    fn parts_concatenate() {
        let f = server_frame_parts(OpCode::Text, &[b"{\"a\":", b"1", b"}"]);
        assert_eq!(&f[..], b"\x81\x07{\"a\":1}");
    }

    #[test]
    fn close_payload_parsing() {
        assert_eq!(parse_close(&[]).unwrap().code, None);
        assert_eq!(parse_close(&[3]).unwrap_err().code, 1002);
        assert_eq!(parse_close(&[0x03, 0xED]).unwrap_err().code, 1002); // 1005
        assert_eq!(parse_close(&[0x03, 0xE8, 0xff]).unwrap_err().code, 1007);
        let b = parse_close(b"\x0f\xa0bye").unwrap(); // 4000
        assert_eq!(b.code, Some(4000));
        assert_eq!(b.reason, "bye");
    }

    #[test]
    fn close_reason_truncated_on_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let p = close_payload(1000, &reason);
        assert!(p.len() <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }
}
