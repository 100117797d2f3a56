//! The JSON of protocol.md: parsing client requests (borrowing from the
//! receive buffer, `data` kept as the publisher's raw bytes) and building the
//! server's messages without re-serialising anything.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::topic::TopicError;
use crate::ws::{frame, OpCode};

/// Error codes of protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    BadJson,
    BadOp,
    BadTopic,
    Forbidden,
    TooLarge,
    RateLimited,
    Internal,
    /// (new, issue #13) a token was missing or not valid.
    Unauthorized,
    /// (new, issue #18) cluster mode: the publish could not be confirmed
    /// stored (NATS unreachable, or the stream without a leader).
    Unavailable,
}

impl ErrCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadOp => "bad_op",
            Self::BadTopic => "bad_topic",
            Self::Forbidden => "forbidden",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A request as it appears on the wire; unknown fields are ignored so that
/// clients of a later protocol version still work.
#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    topics: Option<Vec<Cow<'a, str>>>,
    /// Kept raw so that a bad one is answered as such (see [`read_id`]).
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    snapshot: bool,
    /// The `auth` op's token.
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
    /// `Some` even for `null`: null is data, absence is an error.
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Sub {
        topics: Vec<Cow<'a, str>>,
        id: Option<u64>,
        snapshot: bool,
    },
    Unsub {
        topics: Vec<Cow<'a, str>>,
        id: Option<u64>,
    },
    Pub {
        topic: Cow<'a, str>,
        /// The publisher's bytes exactly, as they arrived.
        data: &'a str,
        id: Option<u64>,
    },
    /// (new, issue #13) a token, first or fresh.
    Auth {
        token: Cow<'a, str>,
        id: Option<u64>,
    },
}

impl Request<'_> {
    /// The request's `id`, if it has one.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Sub { id, .. } | Self::Unsub { id, .. } | Self::Pub { id, .. } => *id,
            Self::Auth { id, .. } => *id,
        }
    }
}

/// A request that could not be understood; `id` when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: Option<u64>,
    pub code: ErrCode,
    pub message: String,
}

/// Most bytes of a client's string that an `err` message quotes: enough to
/// recognise it, while a 300 KB `op` is answered in ~100 bytes, not 300 KB.
pub const QUOTE_MAX: usize = 64;

/// Most bytes of an `err` message, whatever it is built from: a parser
/// message quoting the client is cut here (its position kept).
pub const MESSAGE_MAX: usize = 256;

/// `s` cut to at most `max` bytes at a character boundary, with `…` (3
/// bytes more) when something was cut.
pub fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// The `bad_topic` message for `topic` breaking a rule: which one of a
/// request's topics it was, quoted up to [`QUOTE_MAX`] bytes.
pub fn bad_topic(topic: &str, e: TopicError) -> String {
    format!("bad topic '{}': {}", cut(topic, QUOTE_MAX), e.message())
}

/// A serde_json message for the client, at most [`MESSAGE_MAX`] bytes. Its
/// "invalid type: string \"…\"" quotes the client's value whole (a 300 KB
/// string where `snapshot` wants a bool): the message is cut, the position
/// after it kept.
fn parser_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    if full.len() <= MESSAGE_MAX {
        return full;
    }
    // serde_json says "{message} at line L column C", or just the message
    // when it has no position (line 0).
    let at = format!(" at line {} column {}", e.line(), e.column());
    let (head, at) = match full.strip_suffix(at.as_str()) {
        Some(head) if e.line() > 0 => (head, at.as_str()),
        _ => (full.as_str(), ""),
    };
    let keep = MESSAGE_MAX - at.len() - '…'.len_utf8();
    format!("{}{at}", cut(head, keep))
}

const BAD_ID: &str = "id must be an unsigned integer";

/// The request's `id`: absent (or `null`), or an integer 0 … 2^64−1.
/// Anything else (`-1`, `1.0`, `"7"`, 2^64) cannot be echoed as an id, so
/// the `err` says what was wrong and carries none.
fn read_id(raw: Option<&RawValue>) -> Result<Option<u64>, Rejected> {
    match raw {
        None => Ok(None),
        Some(v) => v.get().parse().map(Some).map_err(|_| Rejected {
            id: None,
            code: ErrCode::BadOp,
            message: BAD_ID.into(),
        }),
    }
}

/// Best effort to find the request's `id` in JSON that failed to parse as
/// a whole, so the error still correlates.
fn salvage_id(text: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<u64>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|i| i.id)
}

/// Does `data` (valid JSON: the parser took it) nest arrays and objects
/// more than `max` deep? Once per publish, never per delivery. Most data
/// has fewer than `max` brackets in all: one counting pass (vectorised)
/// settles it; only the rest get the exact scan, which skips strings.
pub fn nests_deeper(data: &[u8], max: usize) -> bool {
    // `[` is 0x5B, `{` 0x7B: `b | 0x20 == b'{'` is both and nothing else.
    // Summed in u8 lanes per 255-byte chunk (cannot overflow), which the
    // compiler vectorises: ~6 ns for 100 bytes, where counting into usize
    // took ~58 ns (`cargo bench --bench broker -- data_depth`).
    let opening: usize = data
        .chunks(255)
        .map(|c| c.iter().fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')) as usize)
        .sum();
    if opening <= max {
        return false;
    }
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for &b in data {
        if in_str {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

pub fn parse(text: &str) -> Result<Request<'_>, Rejected> {
    let raw: Raw<'_> = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let code = if e.is_syntax() || e.is_eof() {
                ErrCode::BadJson
            } else {
                ErrCode::BadOp
            };
            return Err(Rejected {
                id: salvage_id(text),
                code,
                message: parser_message(&e),
            });
        }
    };
    let id = read_id(raw.id)?;
    let bad = |code, message: &str| Rejected {
        id,
        code,
        message: message.to_string(),
    };
    let topics = || -> Result<Vec<Cow<'_, str>>, Rejected> {
        match (raw.topic.clone(), raw.topics.clone()) {
            (Some(t), None) => Ok(vec![t]),
            (None, Some(ts)) if !ts.is_empty() => Ok(ts),
            (None, Some(_)) => Err(bad(ErrCode::BadOp, "topics is empty")),
            (Some(_), Some(_)) => Err(bad(ErrCode::BadOp, "give topic or topics, not both")),
            (None, None) => Err(bad(ErrCode::BadOp, "missing topic")),
        }
    };
    match raw.op.as_ref() {
        "sub" => Ok(Request::Sub {
            topics: topics()?,
            id,
            snapshot: raw.snapshot,
        }),
        "unsub" => Ok(Request::Unsub {
            topics: topics()?,
            id,
        }),
        "pub" => {
            let mut ts = topics()?;
            if ts.len() != 1 {
                return Err(bad(ErrCode::BadOp, "pub takes exactly one topic"));
            }
            let Some(data) = raw.data else {
                return Err(bad(ErrCode::BadOp, "pub needs data"));
            };
            Ok(Request::Pub {
                topic: ts.swap_remove(0),
                data: data.get(),
                id,
            })
        }
        "auth" => match raw.token {
            Some(token) => Ok(Request::Auth { token, id }),
            None => Err(bad(ErrCode::BadOp, "auth needs a token")),
        },
        other => {
            // Debug quoting escapes control characters (`\u{7f}`: 6 bytes
            // for 1), so the quoted prefix can pass MESSAGE_MAX: cut the
            // whole message too (found by the wire fuzzer).
            let msg = format!("unknown op {:?}", cut(other, QUOTE_MAX));
            let keep = MESSAGE_MAX - '…'.len_utf8();
            Err(bad(ErrCode::BadOp, &cut(&msg, keep)))
        }
    }
}

/// `{"op":"ack","id":N}` as a text frame.
pub fn ack(id: u64) -> Bytes {
    let mut buf = itoa::Buffer::new();
    frame::server_frame_parts(
        OpCode::Text,
        &[b"{\"op\":\"ack\",\"id\":", buf.format(id).as_bytes(), b"}"],
    )
}

/// A client's string as an `err` message quotes it (at most
/// [`QUOTE_MAX`] bytes).
pub fn quote(s: &str) -> Cow<'_, str> {
    cut(s, QUOTE_MAX)
}

/// `{"op":"revoked","topics":[…]}`: subscriptions a fresh token no longer
/// covers, removed (issue #13).
pub fn revoked<S: AsRef<str>>(patterns: &[S]) -> Bytes {
    let list: Vec<&str> = patterns.iter().map(|p| p.as_ref()).collect();
    // Valid patterns need no escaping, but serde_json says so for sure;
    // a list of strings cannot fail to serialise.
    let topics = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    frame::server_frame_parts(
        OpCode::Text,
        &[b"{\"op\":\"revoked\",\"topics\":", topics.as_bytes(), b"}"],
    )
}

/// `{"op":"expiring","in":S}`: the token expires in `S` seconds (issue
/// #13).
pub fn expiring(seconds: u64) -> Bytes {
    let mut buf = itoa::Buffer::new();
    frame::server_frame_parts(
        OpCode::Text,
        &[
            b"{\"op\":\"expiring\",\"in\":",
            buf.format(seconds).as_bytes(),
            b"}",
        ],
    )
}

/// `{"op":"err",["id":N,]"code":…,"message":…}` as a text frame.
pub fn err(id: Option<u64>, code: ErrCode, message: &str) -> Bytes {
    // Every message is built to fit MESSAGE_MAX (a `Rejected` one always
    // does, and goes out unchanged); this holds even for one that did not.
    let message = cut(message, MESSAGE_MAX);
    let mut s = String::with_capacity(64 + message.len());
    s.push_str("{\"op\":\"err\",");
    if let Some(id) = id {
        s.push_str("\"id\":");
        s.push_str(itoa::Buffer::new().format(id));
        s.push(',');
    }
    s.push_str("\"code\":\"");
    s.push_str(code.as_str());
    s.push_str("\",\"message\":");
    // serde_json escapes the message; it cannot fail for a &str.
    s.push_str(&serde_json::to_string(message.as_ref()).unwrap_or_else(|_| "\"\"".into()));
    s.push('}');
    frame::server_frame(OpCode::Text, s.as_bytes())
}

/// A `msg` frame, built once per publish and shared by every subscriber:
/// `{"op":"msg","topic":T,"seq":N,"data":D}` where D is the publisher's
/// bytes unchanged. Topic names need no escaping (their alphabet has no
/// JSON metacharacters). Returns the frame and where the topic sits in it.
pub fn msg(topic: &str, seq: u64, data: &[u8], snapshot: bool) -> (Bytes, TopicAt) {
    let mut n = itoa::Buffer::new();
    let seq = n.format(seq).as_bytes();
    const HEAD: &[u8] = b"{\"op\":\"msg\",\"topic\":\"";
    let parts: [&[u8]; 8] = [
        HEAD,
        topic.as_bytes(),
        b"\",\"seq\":",
        seq,
        if snapshot { b",\"snapshot\":true" } else { b"" },
        b",\"data\":",
        data,
        b"}",
    ];
    let payload_len: usize = parts.iter().map(|p| p.len()).sum();
    let f = frame::server_frame_parts(OpCode::Text, &parts);
    let start = frame::header_len(payload_len, false) + HEAD.len();
    (
        f,
        TopicAt {
            start: start as u32,
            len: topic.len() as u8,
        },
    )
}

/// A `msg` that another node framed (its JSON text, as [`msg`] builds it,
/// carried by NATS) as this node's frame, checked first: it came over the
/// network. Returns the frame, where its topic sits and where its data
/// starts (for the snapshot frame); `None` when it is not the `msg` of
/// `topic` with seq `seq`, or not UTF-8 (a WebSocket text frame must be).
pub fn frame_copy(topic: &str, seq: u64, payload: &[u8]) -> Option<(Bytes, TopicAt, u32)> {
    const HEAD: &[u8] = b"{\"op\":\"msg\",\"topic\":\"";
    let rest = payload.strip_prefix(HEAD)?;
    let rest = rest.strip_prefix(topic.as_bytes())?;
    let rest = rest.strip_prefix(b"\",\"seq\":".as_slice())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // The seq in the text is the one the stream's header carries (a
    // snapshot of it is numbered from the header).
    if rest.get(..digits) != Some(itoa::Buffer::new().format(seq).as_bytes()) {
        return None;
    }
    let data = rest.get(digits..)?.strip_prefix(b",\"data\":".as_slice())?;
    if digits == 0 || data.len() < 2 || payload.last() != Some(&b'}') {
        return None;
    }
    simdutf8::basic::from_utf8(payload).ok()?;
    let f = frame::server_frame(OpCode::Text, payload);
    let header = f.len() - payload.len();
    let data_at = header + payload.len() - data.len();
    let at = TopicAt {
        start: (header + HEAD.len()) as u32,
        len: u8::try_from(topic.len()).ok()?,
    };
    Some((f, at, data_at as u32))
}

/// Where a frame carries its topic, so mail can name the topic without a
/// separate allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicAt {
    pub start: u32,
    pub len: u8,
}

impl TopicAt {
    pub fn get<'a>(&self, frame: &'a Bytes) -> &'a str {
        let b = frame
            .get(self.start as usize..self.start as usize + self.len as usize)
            .unwrap_or_default();
        // Topics are ASCII by construction; a mismatch yields "" (no match).
        std::str::from_utf8(b).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(f: &Bytes) -> &str {
        let h = frame::parse_header(f).unwrap().unwrap();
        std::str::from_utf8(&f[h.len..]).unwrap()
    }

    #[test]
    fn parses_every_op() {
        let r =
            parse(r#"{"op":"sub","topics":["md.NASDAQ.AAPL","md.*.MSFT"],"id":1,"snapshot":true}"#)
                .unwrap();
        assert_eq!(
            r,
            Request::Sub {
                topics: vec!["md.NASDAQ.AAPL".into(), "md.*.MSFT".into()],
                id: Some(1),
                snapshot: true
            }
        );
        let r = parse(r#"{"op":"unsub","topic":"a.b"}"#).unwrap();
        assert_eq!(
            r,
            Request::Unsub {
                topics: vec!["a.b".into()],
                id: None
            }
        );
        let r = parse(
            r#"{"op":"pub","topic":"md.X","data":{"bid":189.2, "ask" : 1e3},"id":3,"extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Pub {
                topic: "md.X".into(),
                data: r#"{"bid":189.2, "ask" : 1e3}"#,
                id: Some(3)
            }
        );
    }

    #[test]
    fn data_bytes_are_kept_exactly() {
        for d in [
            r#"  "x\u00e9"  "#,
            "[1, 2 ,3]",
            "null",
            "-0.0e+1",
            r#"{"a":{"b":[true,false]}}"#,
        ] {
            let text = format!(r#"{{"op":"pub","topic":"t","data":{d}}}"#);
            match parse(&text).unwrap() {
                Request::Pub { data, .. } => assert_eq!(data, d.trim()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn rejections() {
        let e = parse("{not json").unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadJson, None));
        let e = parse(r#"{"op":"jump","id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadOp, Some(7)));
        let e = parse(r#"{"op":"pub","topic":"a","id":8}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadOp, Some(8)));
        let e = parse(r#"{"op":"sub","id":9}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadOp, Some(9)));
        let e = parse(r#"{"op":"sub","topics":[],"id":9}"#).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        let e = parse(r#"{"op":"pub","topics":["a","b"],"data":1}"#).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        let e = parse(r#"{"topic":"a"}"#).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        let e = parse(r#"[1,2]"#).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        // An id that is not an unsigned integer is a bad request, and the
        // answer says so (it carries no id: none could be echoed).
        for bad in [
            "-1",
            "-0",
            "1.0",
            "1e3",
            r#""7""#,
            "18446744073709551616",
            "true",
            "[1]",
            r#"{"n":1}"#,
        ] {
            for op in [
                r#""sub","topic":"a""#,
                r#""unsub","topic":"a""#,
                r#""pub","topic":"a","data":1"#,
            ] {
                let e = parse(&format!(r#"{{"op":{op},"id":{bad}}}"#)).unwrap_err();
                assert_eq!((e.code, e.id), (ErrCode::BadOp, None), "{bad}");
                assert_eq!(e.message, "id must be an unsigned integer", "{bad}");
            }
        }
        let ok = parse(r#"{"op":"sub","topic":"a","id":18446744073709551615}"#).unwrap();
        assert!(matches!(
            ok,
            Request::Sub {
                id: Some(u64::MAX),
                ..
            }
        ));
        let ok = parse(r#"{"op":"sub","topic":"a","id":null}"#).unwrap();
        assert!(matches!(ok, Request::Sub { id: None, .. }));
        // Truncated JSON with a readable id still correlates when it can.
        let e = parse(r#"{"op":"sub","topic":5,"id":4}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadOp, Some(4)));
    }

    #[test]
    fn an_op_of_control_characters_still_fits_the_message_cap() {
        // Each \u{7f} is quoted as 6 bytes: 64 of them passed 256 (the
        // wire fuzzer's find).
        let op = "\u{7f}".repeat(100);
        let e = parse(&format!(r#"{{"op":"{op}"}}"#)).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        assert!(e.message.len() <= MESSAGE_MAX, "{} bytes", e.message.len());
        assert!(e.message.starts_with("unknown op \""), "{}", e.message);
    }

    #[test]
    fn errors_quote_a_short_prefix() {
        // Before: a 300 KB op came back whole in its error.
        let op = "x".repeat(300_000);
        let e = parse(&format!(r#"{{"op":"{op}","id":1}}"#)).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        assert_eq!(
            e.message,
            format!("unknown op \"{}…\"", "x".repeat(QUOTE_MAX))
        );
        let short = parse(r#"{"op":"jump"}"#).unwrap_err();
        assert_eq!(short.message, r#"unknown op "jump""#);
        // The cut falls on a character boundary: é is 2 bytes.
        let op = "é".repeat(100);
        let e = parse(&format!(r#"{{"op":"{op}"}}"#)).unwrap_err();
        assert_eq!(e.message, format!("unknown op \"{}…\"", "é".repeat(32)));
        // A parser message quoting the client's value (a string where a
        // bool or an array is wanted) is cut too, its position kept.
        for field in ["snapshot", "topics", "op\":1,\"x"] {
            let big = "y".repeat(300_000);
            let text = format!(r#"{{"{field}":"{big}","op":"sub","topic":"a"}}"#);
            let e = parse(&text).unwrap_err();
            assert!(
                e.message.len() <= MESSAGE_MAX,
                "{field}: {}",
                e.message.len()
            );
            assert!(e.message.contains(" at line 1 column "), "{}", e.message);
            // Already within the bound: the err frame carries it unchanged.
            let f = err(e.id, e.code, &e.message);
            let v: serde_json::Value = serde_json::from_str(payload(&f)).unwrap();
            assert_eq!(v["message"], e.message.as_str());
        }
        // And whatever the message, the err frame stays small.
        let f = err(Some(1), ErrCode::BadOp, &"z".repeat(1 << 20));
        assert!(f.len() < 400, "{}", f.len());
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
    }

    #[test]
    fn bad_topic_names_the_topic() {
        assert_eq!(
            bad_topic("a..b", TopicError::EmptyToken),
            "bad topic 'a..b': topic has an empty token"
        );
        let long = "t".repeat(300);
        assert_eq!(
            bad_topic(&long, TopicError::TooLong),
            format!(
                "bad topic '{}…': topic is longer than 255 bytes",
                "t".repeat(QUOTE_MAX)
            )
        );
    }

    #[test]
    fn nesting_depth() {
        let nest = |n: usize, open: &str, close: &str| open.repeat(n) + &close.repeat(n);
        for max in [0, 1, 2, 64] {
            for (o, c) in [("[", "]"), ("{\"a\":", "}")] {
                let ok = nest(max, o, c);
                assert!(!nests_deeper(ok.as_bytes(), max), "{ok}");
                let deep = nest(max + 1, o, c);
                assert!(nests_deeper(deep.as_bytes(), max), "{deep}");
            }
        }
        // Mixed: [{"a":[1]}] is 3 deep.
        assert!(!nests_deeper(br#"[{"a":[1]}]"#, 3));
        assert!(nests_deeper(br#"[{"a":[1]}]"#, 2));
        // Brackets inside strings (escaped quotes too) do not count.
        let s = format!(r#"["{}\"{}", [1]]"#, "[".repeat(100), "{".repeat(100));
        assert!(!nests_deeper(s.as_bytes(), 2));
        assert!(nests_deeper(s.as_bytes(), 1));
        // Many siblings are not depth.
        let wide = format!("[{}1]", "[1],".repeat(1000));
        assert!(!nests_deeper(wide.as_bytes(), 2));
        // 200,000 deep: a linear scan, no recursion.
        assert!(nests_deeper(nest(200_000, "[", "]").as_bytes(), 64));
    }

    #[test]
    fn escaped_topic_strings_are_decoded() {
        match parse(r#"{"op":"sub","topic":"md.\u0041APL"}"#).unwrap() {
            Request::Sub { topics, .. } => {
                assert_eq!(topics, vec![Cow::<str>::Owned("md.AAPL".into())])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_messages() {
        assert_eq!(payload(&ack(42)), r#"{"op":"ack","id":42}"#);
        assert_eq!(
            payload(&err(Some(3), ErrCode::Forbidden, "no \"publish\"")),
            r#"{"op":"err","id":3,"code":"forbidden","message":"no \"publish\""}"#
        );
        assert_eq!(
            payload(&err(None, ErrCode::BadJson, "x")),
            r#"{"op":"err","code":"bad_json","message":"x"}"#
        );
        let (f, at) = msg("md.NASDAQ.AAPL", 42, br#"{"bid":189.2}"#, false);
        assert_eq!(
            payload(&f),
            r#"{"op":"msg","topic":"md.NASDAQ.AAPL","seq":42,"data":{"bid":189.2}}"#
        );
        assert_eq!(at.get(&f), "md.NASDAQ.AAPL");
        let (f, at) = msg("t", 41, b"[1]", true);
        assert_eq!(
            payload(&f),
            r#"{"op":"msg","topic":"t","seq":41,"snapshot":true,"data":[1]}"#
        );
        assert_eq!(at.get(&f), "t");
        // Long payloads use the 16-bit length header; the offset follows.
        let mut big = vec![b'x'; 70_000];
        big[0] = b'"';
        big[69_999] = b'"';
        let (f, at) = msg("a.b", 1, &big, false);
        assert_eq!(at.get(&f), "a.b");
        let v: serde_json::Value = serde_json::from_str(payload(&f)).unwrap();
        assert_eq!(v["seq"], 1);
    }

    #[test]
    fn a_copy_from_another_node_is_checked_then_framed_as_here() {
        let (f, at) = msg("md.A", 7, br#"{"bid":1}"#, false);
        let h = frame::parse_header(&f).unwrap().unwrap();
        let (g, at2, data_at) = frame_copy("md.A", 7, &f[h.len..]).unwrap();
        assert!(frame_copy("md.A", 8, &f[h.len..]).is_none(), "another seq");
        assert_eq!((g, at2), (f.clone(), at));
        assert_eq!(&f[data_at as usize..f.len() - 1], br#"{"bid":1}"#);
        for bad in [
            &br#"{"op":"msg","topic":"md.B","seq":7,"data":1}"#[..],
            br#"{"op":"msg","topic":"md.A","seq":,"data":1}"#,
            br#"{"op":"msg","topic":"md.A","seq":7,"data":1"#,
            br#"{"op":"ack","id":1}"#,
            b"{\"op\":\"msg\",\"topic\":\"md.A\",\"seq\":7,\"data\":\"\xff\"}",
            b"",
        ] {
            assert!(
                frame_copy("md.A", 7, bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
