//! Slow path: serde_json decides; we only find the spans to lend out.

use super::scan::{is_ws, skip_ws};
use super::{bad, BadMsg, Server};
use std::borrow::Cow;

pub(super) fn parse_slow(text: &[u8]) -> Result<Server<'_>, BadMsg> {
    use serde_json::Value;

    let v: Value = serde_json::from_slice(text).map_err(|_| bad("not JSON"))?;
    let Value::Object(obj) = &v else {
        return Ok(Server::Other);
    };
    let Some(Value::String(op)) = obj.get("op") else {
        return Ok(Server::Other);
    };
    let u64_field = |key: &'static str, reason: &'static str| {
        obj.get(key).and_then(Value::as_u64).ok_or(bad(reason))
    };
    match op.as_str() {
        "msg" => {
            if !obj.get("topic").is_some_and(Value::is_string) {
                return Err(bad("msg without a string topic"));
            }
            let seq = u64_field("seq", "msg without an unsigned seq")?;
            let snapshot = match obj.get("snapshot") {
                None => false,
                Some(Value::Bool(s)) => *s,
                Some(_) => return Err(bad("msg with a non-boolean snapshot")),
            };
            if !obj.contains_key("data") {
                return Err(bad("msg without data"));
            }
            let spans = Spans::find(text).ok_or(bad("unlocatable field"))?;
            let (Some(topic), Some(data)) = (spans.topic, spans.data) else {
                return Err(bad("unlocatable field"));
            };
            let Some(topic) = unescaped(topic) else {
                return Ok(Server::Other);
            };
            Ok(Server::Msg {
                topic,
                seq,
                snapshot,
                data,
            })
        }
        "ack" => Ok(Server::Ack {
            id: u64_field("id", "ack without an unsigned id")?,
        }),
        "err" => {
            let id = match obj.get("id") {
                None | Some(Value::Null) => None,
                Some(id) => Some(id.as_u64().ok_or(bad("err with a non-integer id"))?),
            };
            if !obj.get("code").is_some_and(Value::is_string) {
                return Err(bad("err without a string code"));
            }
            let spans = Spans::find(text).ok_or(bad("unlocatable field"))?;
            let code = spans.code.ok_or(bad("unlocatable field"))?;
            Ok(match unescaped(code) {
                Some(code) => Server::Err { id, code },
                None => Server::Other,
            })
        }
        _ => Ok(Server::Other),
    }
}

/// The body of a JSON string literal (quotes included in `lit`) when it has
/// no escapes, so it can be lent out as is.
fn unescaped(lit: &[u8]) -> Option<&str> {
    let body = lit.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if body.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// Raw spans of the top-level fields we lend out; the last occurrence wins,
/// as in serde_json's map.
#[derive(Default)]
struct Spans<'a> {
    topic: Option<&'a [u8]>,
    code: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
}

impl<'a> Spans<'a> {
    /// Walks the top-level object of text that serde_json has already
    /// accepted, so the scanning only has to find ends, not validate.
    fn find(b: &'a [u8]) -> Option<Self> {
        let mut spans = Spans::default();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return Some(spans);
        }
        loop {
            let key_end = loose_string_end(b, i)?;
            let key_lit = b.get(i..key_end)?;
            let key: Cow<'_, str> = match unescaped(key_lit) {
                Some(k) => Cow::Borrowed(k),
                None => Cow::Owned(serde_json::from_slice::<String>(key_lit).ok()?),
            };
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = skip_ws(b, i + 1);
            let end = loose_value_end(b, start)?;
            let value = b.get(start..end)?;
            match &*key {
                "topic" => spans.topic = Some(value),
                "code" => spans.code = Some(value),
                "data" => spans.data = Some(value),
                _ => {}
            }
            i = skip_ws(b, end);
            match b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => return Some(spans),
                _ => return None,
            }
        }
    }
}

/// End (past the closing quote) of the valid string literal at `b[i]`.
fn loose_string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// End of the valid JSON value at `b[i]`.
fn loose_value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => loose_string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => j = loose_string_end(b, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        _ => {
            let mut j = i;
            while matches!(b.get(j), Some(&c) if !is_ws(c) && !matches!(c, b',' | b'}' | b']')) {
                j += 1;
            }
            Some(j)
        }
    }
}
