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

use ringfan::broker::wire::{self, Request};
use ringfan::ws::frame::parse_header;
use serde_json::Value;

/// Is `text` exactly one JSON value by RFC 8259's grammar? The broker
/// forwards `data` verbatim, so this is the promise a subscriber gets. Not
/// serde_json: it is stricter than the grammar (it refuses numbers beyond
/// f64, like `-1.5e700`, and escaped lone surrogates, like `"\ude00"`; the
/// fuzzer found both within seconds, and JavaScript's `JSON.parse` takes
/// both). Iterative, so deep nesting cannot overflow the stack.
fn is_json(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    // Open containers: b'{' or b'['.
    let mut stack: Vec<u8> = Vec::new();
    loop {
        // A value.
        ws(&mut i);
        match b.get(i) {
            Some(b'{') | Some(b'[') => {
                let open = b[i];
                stack.push(open);
                i += 1;
                ws(&mut i);
                let close = if open == b'{' { b'}' } else { b']' };
                if b.get(i) == Some(&close) {
                    i += 1;
                    stack.pop();
                } else {
                    if open == b'{' && !(string(b, &mut i) && colon(b, &mut i)) {
                        return false;
                    }
                    continue;
                }
            }
            Some(b'"') => {
                if !string(b, &mut i) {
                    return false;
                }
            }
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => {
                if !number(b, &mut i) {
                    return false;
                }
            }
            _ => return false,
        }
        // After a value: close containers, or a comma for the next one.
        loop {
            ws(&mut i);
            let Some(&open) = stack.last() else {
                return i == b.len();
            };
            let close = if open == b'{' { b'}' } else { b']' };
            match b.get(i) {
                Some(&c) if c == close => {
                    i += 1;
                    stack.pop();
                }
                Some(b',') => {
                    i += 1;
                    if open == b'{' {
                        ws(&mut i);
                        if !(string(b, &mut i) && colon(b, &mut i)) {
                            return false;
                        }
                    }
                    break;
                }
                _ => return false,
            }
        }
    }
}

fn colon(b: &[u8], i: &mut usize) -> bool {
    while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
        *i += 1;
    }
    let ok = b.get(*i) == Some(&b':');
    *i += 1;
    ok
}

/// A string at `b[*i]` (which must be `"`): escapes as the grammar has them.
fn string(b: &[u8], i: &mut usize) -> bool {
    if b.get(*i) != Some(&b'"') {
        return false;
    }
    *i += 1;
    while let Some(&c) = b.get(*i) {
        *i += 1;
        match c {
            b'"' => return true,
            b'\\' => match b.get(*i) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => *i += 1,
                Some(b'u')
                    if b.get(*i + 1..*i + 5)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    *i += 5
                }
                _ => return false,
            },
            0..=0x1f => return false,
            _ => {}
        }
    }
    false
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], i: &mut usize) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i) {
        Some(b'0') => *i += 1,
        Some(b'1'..=b'9') => {
            digits(i);
        }
        _ => return false,
    }
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(i) {
            return false;
        }
    }
    if matches!(b.get(*i), Some(b'e' | b'E')) {
        *i += 1;
        if matches!(b.get(*i), Some(b'+' | b'-')) {
            *i += 1;
        }
        if !digits(i) {
            return false;
        }
    }
    true
}

fn payload(frame: &[u8]) -> Value {
    let h = match parse_header(frame) {
        Ok(Some(h)) => h,
        other => panic!("a frame we built does not parse: {other:?}"),
    };
    let text = match std::str::from_utf8(&frame[h.len..]) {
        Ok(t) => t,
        Err(e) => panic!("a text frame we built is not UTF-8: {e}"),
    };
    match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("a frame we built is not JSON ({e}): {text:?}"),
    }
}

/// One fuzz input; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match wire::parse(&text) {
        Ok(Request::Pub { topic, data, id }) => {
            assert!(is_json(data), "pub data is not one JSON value: {data:?}");
            // Topics that pass the broker's syntax check are framed as is
            // (their alphabet has no JSON metacharacters); others are
            // refused before framing, so only those are framed here.
            if ringfan::broker::topic::check_topic(&topic).is_ok() {
                for snapshot in [false, true] {
                    let (frame, at) = wire::msg(&topic, 42, data.as_bytes(), snapshot);
                    assert_eq!(at.get(&frame), topic, "TopicAt points elsewhere");
                    let h = parse_header(&frame)
                        .ok()
                        .flatten()
                        .expect("our frame parses");
                    let flag = if snapshot { ",\"snapshot\":true" } else { "" };
                    let want = format!(
                        "{{\"op\":\"msg\",\"topic\":\"{topic}\",\"seq\":42{flag},\"data\":{data}}}"
                    );
                    assert_eq!(
                        &frame[h.len..],
                        want.as_bytes(),
                        "the msg frame is not the envelope around the publisher's bytes"
                    );
                    assert!(is_json(&want), "msg frame is not JSON: {want:?}");
                }
            }
            if let Some(id) = id {
                assert_eq!(payload(&wire::ack(id))["id"], id);
            }
        }
        Ok(Request::Sub { topics, .. }) | Ok(Request::Unsub { topics, .. }) => {
            assert!(!topics.is_empty(), "a subscription request without topics");
        }
        Ok(Request::Auth { token, id }) => {
            // Whatever the token, the frames it can lead to are JSON.
            let m = payload(&wire::err(id, wire::ErrCode::Unauthorized, &token));
            assert_eq!(m["code"], "unauthorized");
            let r = payload(&wire::revoked(&[token.as_ref()]));
            assert_eq!(r["topics"][0], Value::from(token.as_ref()));
        }
        Err(r) => {
            let m = payload(&wire::err(r.id, r.code, &r.message));
            assert_eq!(m["op"], "err");
            assert_eq!(m["code"], r.code.as_str());
            assert_eq!(m["message"], Value::from(r.message.as_str()));
            match r.id {
                Some(id) => assert_eq!(m["id"], id),
                None => assert!(m.get("id").is_none()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn the_grammar_not_serde() {
        for ok in [
            "1",
            " -0.5e+3 ",
            "\"\\ud83d\"",
            "-1.5e700",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}]]",
            "{\"a\":1,\"b\":{\"c\":null}}",
            "true",
            "\"\\\\\\\"\"",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "01",
            "1.",
            "-",
            "[1,]",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1 2]",
            "\"\\x\"",
            "\"a",
            "{1:2}",
            "[",
            "]",
            "1 1",
            "tru",
            "\"\\u12\"",
            "\"\u{1}\"",
        ] {
            assert!(!is_json(bad), "{bad}");
        }
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(is_json(&deep));
    }
}
