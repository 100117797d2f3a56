//! What the generator sends: payloads carrying their send time, `pub` and
//! `sub` requests. Each writer appends to a caller-owned buffer so the send
//! path allocates nothing per message.

/// The smallest size [`write_payload`] can produce exactly for `t_ns`:
/// `{"t":N,"p":""}`.
pub fn payload_min_len(t_ns: u64) -> usize {
    13 + itoa::Buffer::new().format(t_ns).len()
}

/// 256 bytes of `abc…zabc…` padding; cycling letters rather than one repeated
/// byte keeps the payload from looking degenerate to anything on the path.
const PAD: [u8; 256] = {
    let mut a = [0u8; 256];
    let mut i = 0;
    while i < a.len() {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
};

/// Appends the JSON object `{"t":t_ns,"p":"abc…"}` of exactly `size` bytes,
/// or the minimal object `{"t":t_ns}` when `size` is below
/// [`payload_min_len`]. [`stamp`](super::stamp) reads `t_ns` back.
pub fn write_payload(buf: &mut Vec<u8>, t_ns: u64, size: usize) {
    let mut num = itoa::Buffer::new();
    let t = num.format(t_ns).as_bytes();
    let min = 13 + t.len();
    buf.reserve(size.max(min));
    buf.extend_from_slice(br#"{"t":"#);
    buf.extend_from_slice(t);
    if size < min {
        buf.push(b'}');
        return;
    }
    buf.extend_from_slice(br#","p":""#);
    let mut left = size - min;
    while left > 0 {
        let n = left.min(PAD.len());
        buf.extend_from_slice(PAD.get(..n).unwrap_or_default());
        left -= n;
    }
    buf.extend_from_slice(br#""}"#);
}

/// Appends `{"op":"pub","topic":"…","data":…,"id":N}` (no `id` when `None`).
/// `data` must already be JSON; it is copied verbatim.
pub fn write_pub(buf: &mut Vec<u8>, topic: &str, id: Option<u64>, data: &[u8]) {
    buf.reserve(48 + topic.len() + data.len());
    buf.extend_from_slice(br#"{"op":"pub","topic":"#);
    write_str(buf, topic);
    buf.extend_from_slice(br#","data":"#);
    buf.extend_from_slice(data);
    if let Some(id) = id {
        buf.extend_from_slice(br#","id":"#);
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }
    buf.push(b'}');
}

/// Appends `{"op":"sub","topics":[…],"id":N}`, with `"snapshot":true` when
/// asked for.
pub fn write_sub(buf: &mut Vec<u8>, topics: &[&str], id: u64, snapshot: bool) {
    buf.extend_from_slice(br#"{"op":"sub","topics":["#);
    for (i, t) in topics.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, t);
    }
    buf.extend_from_slice(br#"],"id":"#);
    buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    if snapshot {
        buf.extend_from_slice(br#","snapshot":true"#);
    }
    buf.push(b'}');
}

/// Appends `s` as a JSON string. Protocol topics and symbols never need
/// escaping, so that case is one check and a copy; anything else is escaped
/// correctly rather than producing invalid JSON.
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        buf.extend_from_slice(s.as_bytes());
    } else {
        for c in s.bytes() {
            match c {
                b'"' => buf.extend_from_slice(br#"\""#),
                b'\\' => buf.extend_from_slice(br"\\"),
                b'\n' => buf.extend_from_slice(br"\n"),
                b'\r' => buf.extend_from_slice(br"\r"),
                b'\t' => buf.extend_from_slice(br"\t"),
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    buf.extend_from_slice(br"\u00");
                    buf.push(HEX[usize::from(c >> 4)]);
                    buf.push(HEX[usize::from(c & 0xf)]);
                }
                _ => buf.push(c),
            }
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::fast::parse_fast;
    use crate::msg::stamp;
    use crate::msg::tests::msg;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn payload_sizes() {
        for t in [0, 7, 1_234_567_890_123, u64::MAX] {
            let min = payload_min_len(t);
            for size in [0, 1, min - 1, min, min + 1, 64, 1000, 70_000] {
                let mut buf = b"prefix".to_vec();
                write_payload(&mut buf, t, size);
                let p = &buf[6..];
                if size >= min {
                    assert_eq!(p.len(), size);
                } else {
                    assert_eq!(p, format!(r#"{{"t":{t}}}"#).as_bytes());
                }
                let v: Value = serde_json::from_slice(p).unwrap();
                assert_eq!(v["t"].as_u64(), Some(t));
                assert_eq!(stamp(p), Some(t));
                assert!(p
                    .iter()
                    .skip(min - 2)
                    .take(size.saturating_sub(min))
                    .all(u8::is_ascii_lowercase));
            }
        }
    }

    #[test]
    fn writers() {
        let mut buf = Vec::new();
        write_pub(&mut buf, "md.NASDAQ.AAPL", Some(3), br#"{"bid":1}"#);
        assert_eq!(
            buf,
            br#"{"op":"pub","topic":"md.NASDAQ.AAPL","data":{"bid":1},"id":3}"#
        );
        buf.clear();
        write_pub(&mut buf, "a", None, b"null");
        assert_eq!(buf, br#"{"op":"pub","topic":"a","data":null}"#);
        buf.clear();
        write_sub(&mut buf, &["md.NASDAQ.AAPL", "md.*.MSFT"], 1, true);
        assert_eq!(
            buf,
            br#"{"op":"sub","topics":["md.NASDAQ.AAPL","md.*.MSFT"],"id":1,"snapshot":true}"#
        );
        buf.clear();
        write_sub(&mut buf, &[], 2, false);
        assert_eq!(buf, br#"{"op":"sub","topics":[],"id":2}"#);
        buf.clear();
        write_str(&mut buf, "q\"b\\n\n\u{1}é");
        let s: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(s, "q\"b\\n\n\u{1}é");
    }

    proptest! {
        #[test]
        fn payload_roundtrip(t in any::<u64>(), size in 0usize..2048) {
            let mut buf = Vec::new();
            write_payload(&mut buf, t, size);
            if size >= payload_min_len(t) {
                prop_assert_eq!(buf.len(), size);
            }
            let v: Value = serde_json::from_slice(&buf).unwrap();
            prop_assert_eq!(v["t"].as_u64(), Some(t));
            prop_assert_eq!(stamp(&buf), Some(t));
            let framed = {
                let mut m = msg("a", 1, "");
                m.pop();
                m.extend_from_slice(&buf);
                m.push(b'}');
                m
            };
            prop_assert!(parse_fast(&framed).is_some());
        }
    }
}
