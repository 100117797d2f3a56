//! Arbitrary bytes as a client's request to the broker's JSON parser
//! (`broker::wire::parse`), the way a text frame reaches it (valid UTF-8:
//! the frame layer rejects anything else with 1007, so other input is
//! passed through `from_utf8_lossy` to still exercise the parser).
//!
//! Asserts: no panic; a publish's `data` is one complete JSON value (the
//! broker forwards it verbatim: a subscriber's parser must accept it), and
//! the `msg` frame built around it is itself valid JSON carrying the same
//! topic, seq and data; a subscription names at least one topic; an
//! error's reply (`wire::err`) is valid JSON with the code and id it was
//! given.

use ringfan::broker::wire::{self, ErrCode, Request};
use ringfan::ws::frame::parse_header;
use serde_json::Value;

fn payload(frame: &[u8]) -> Value {
    let h = match parse_header(frame) {
        Ok(Some(h)) => h,
        other => panic!("a frame we built does not parse: {other:?}"),
    };
    match serde_json::from_slice(&frame[h.len..]) {
        Ok(v) => v,
        Err(e) => panic!("a frame we built is not JSON ({e}): {:?}", &frame[h.len..]),
    }
}

fn code_str(code: ErrCode) -> &'static str {
    code.as_str()
}

/// One fuzz input; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match wire::parse(&text) {
        Ok(Request::Pub { topic, data, id }) => {
            let value: Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => panic!("pub data is not one JSON value ({e}): {data:?}"),
            };
            // Topics that pass the broker's syntax check are framed as is
            // (their alphabet has no JSON metacharacters); others are
            // refused before framing, so only those are framed here.
            if ringfan::broker::topic::check_topic(&topic).is_ok() {
                for snapshot in [false, true] {
                    let (frame, at) = wire::msg(&topic, 42, data.as_bytes(), snapshot);
                    assert_eq!(at.get(&frame), topic, "TopicAt points elsewhere");
                    let m = payload(&frame);
                    assert_eq!(m["op"], "msg");
                    assert_eq!(m["topic"], Value::from(topic.as_ref()));
                    assert_eq!(m["seq"], 42);
                    assert_eq!(m["data"], value, "data changed in framing");
                    assert_eq!(m.get("snapshot").is_some(), snapshot);
                }
            }
            if let Some(id) = id {
                assert_eq!(payload(&wire::ack(id))["id"], id);
            }
        }
        Ok(Request::Sub { topics, .. }) | Ok(Request::Unsub { topics, .. }) => {
            assert!(!topics.is_empty(), "a subscription request without topics");
        }
        Err(r) => {
            let m = payload(&wire::err(r.id, r.code, &r.message));
            assert_eq!(m["op"], "err");
            assert_eq!(m["code"], code_str(r.code));
            assert_eq!(m["message"], Value::from(r.message.as_str()));
            match r.id {
                Some(id) => assert_eq!(m["id"], id),
                None => assert!(m.get("id").is_none()),
            }
        }
    }
}
