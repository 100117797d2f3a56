//! The JSON of protocol.md: parsing client requests (borrowing from the
//! receive buffer, `data` kept as the publisher's raw bytes) and building the
//! server's messages without re-serialising anything.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

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
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    snapshot: bool,
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
}

/// A request that could not be understood; `id` when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub id: Option<u64>,
    pub code: ErrCode,
    pub message: String,
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
                message: e.to_string(),
            });
        }
    };
    let id = raw.id;
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
        other => Err(bad(ErrCode::BadOp, &format!("unknown op {other:?}"))),
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

/// `{"op":"err",["id":N,]"code":…,"message":…}` as a text frame.
pub fn err(id: Option<u64>, code: ErrCode, message: &str) -> Bytes {
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
    s.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into()));
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
        // An id that is not an unsigned integer is a bad request.
        let e = parse(r#"{"op":"sub","topic":"a","id":-1}"#).unwrap_err();
        assert_eq!(e.code, ErrCode::BadOp);
        // Truncated JSON with a readable id still correlates when it can.
        let e = parse(r#"{"op":"sub","topic":5,"id":4}"#).unwrap_err();
        assert_eq!((e.code, e.id), (ErrCode::BadOp, Some(4)));
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
}
