//! [`parse`] as a whole (fast path, then slow) against serde_json: every
//! answer is what serde_json reads from the same text.

use super::fast::parse_fast;
use super::*;
use proptest::prelude::*;
use serde_json::Value;

/// A delivery in the broker's exact framing.
pub(super) fn msg(topic: &str, seq: u64, data: &str) -> Vec<u8> {
    format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"data":{data}}}"#).into_bytes()
}

#[test]
fn exact_msg() {
    let t = msg("md.NASDAQ.AAPL", 42, r#"{"bid":189.2,"ask":189.3}"#);
    assert_eq!(parse_fast(&t), parse(&t).ok());
    assert_eq!(
        parse(&t),
        Ok(Server::Msg {
            topic: "md.NASDAQ.AAPL",
            seq: 42,
            snapshot: false,
            data: br#"{"bid":189.2,"ask":189.3}"#,
        })
    );
}

#[test]
fn exact_snapshot() {
    let t = br#"{"op":"msg","topic":"a.b","seq":41,"snapshot":true,"data":[1,"x",null]}"#;
    assert!(parse_fast(t).is_some());
    assert_eq!(
        parse(t),
        Ok(Server::Msg {
            topic: "a.b",
            seq: 41,
            snapshot: true,
            data: br#"[1,"x",null]"#,
        })
    );
    let t = br#"{"op":"msg","topic":"a.b","seq":41,"snapshot":false,"data":0}"#;
    assert!(matches!(
        parse(t),
        Ok(Server::Msg {
            snapshot: false,
            data: b"0",
            ..
        })
    ));
}

#[test]
fn ack_and_err() {
    assert_eq!(parse(br#"{"op":"ack","id":7}"#), Ok(Server::Ack { id: 7 }));
    assert!(parse_fast(br#"{"op":"ack","id":7}"#).is_some());
    let with_id = br#"{"op":"err","id":3,"code":"forbidden","message":"no publish permission on md.NASDAQ.AAPL"}"#;
    assert!(parse_fast(with_id).is_some());
    assert_eq!(
        parse(with_id),
        Ok(Server::Err {
            id: Some(3),
            code: "forbidden"
        })
    );
    let no_id = br#"{"op":"err","code":"bad_json","message":"expected value"}"#;
    assert!(parse_fast(no_id).is_some());
    assert_eq!(
        parse(no_id),
        Ok(Server::Err {
            id: None,
            code: "bad_json"
        })
    );
    let bare = br#"{"op":"err","code":"internal"}"#;
    assert_eq!(
        parse(bare),
        Ok(Server::Err {
            id: None,
            code: "internal"
        })
    );
    // Slow path variants.
    assert_eq!(
        parse(br#"{"code":"rate_limited","op":"err","id":null}"#),
        Ok(Server::Err {
            id: None,
            code: "rate_limited"
        })
    );
    assert_eq!(
        parse(br#" { "id" : 9 , "op" : "ack" } "#),
        Ok(Server::Ack { id: 9 })
    );
}

#[test]
fn other_orders_and_whitespace() {
    let want = Server::Msg {
        topic: "x.y",
        seq: 5,
        snapshot: true,
        data: br#"{"t":1, "p": [ 1 ]}"#,
    };
    for t in [
        r#"{"seq":5,"data":{"t":1, "p": [ 1 ]},"topic":"x.y","op":"msg","snapshot":true}"#,
        "{\n  \"op\": \"msg\",\n  \"topic\": \"x.y\",\n  \"seq\": 5,\n  \"snapshot\": true,\n  \"data\": {\"t\":1, \"p\": [ 1 ]}\n}\n",
        r#"{"op":"msg","topic":"x.y","seq":5,"snapshot":true,"data":{"t":1, "p": [ 1 ]} }"#,
        r#"{"op":"msg","topic":"x.y","seq":5,"snapshot":true,"data":{"t":1, "p": [ 1 ]},"extra":{"a":"}"}}"#,
        r#"{"op":"m\u0073g","top\u0069c":"x.y","seq":5,"snapshot":true,"data":0,"data":{"t":1, "p": [ 1 ]}}"#,
    ] {
        assert_eq!(parse(t.as_bytes()), Ok(want), "{t}");
    }
}

#[test]
fn fallbacks_that_serde_decides() {
    // Exponent, surrogate pair, escaped topic, deep nesting: the fast
    // path hands them to serde_json.
    let t = msg("a", 1, "1e400");
    assert!(parse_fast(&t).is_none());
    assert!(parse(&t).is_err());
    let t = msg("a", 1, "1e3");
    let want = Server::Msg {
        topic: "a",
        seq: 1,
        snapshot: false,
        data: b"1e3",
    };
    assert_eq!(parse(&t), Ok(want));
    let t = msg("a", 1, r#""\ud83d\ude00""#);
    assert!(parse_fast(&t).is_none());
    assert!(matches!(parse(&t), Ok(Server::Msg { .. })));
    let t = msg("a", 1, r#""\ud800""#);
    assert_eq!(
        parse(&t).is_ok(),
        serde_json::from_slice::<Value>(&t).is_ok()
    );
    assert_eq!(
        parse(br#"{"op":"msg","topic":"a\u002eb","seq":1,"data":1}"#),
        Ok(Server::Other)
    );
    let deep = format!("{}{}", "[".repeat(110), "]".repeat(110));
    assert!(parse_fast(&msg("a", 1, &deep)).is_none());
    assert!(matches!(parse(&msg("a", 1, &deep)), Ok(Server::Msg { .. })));
    let deeper = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(parse(&msg("a", 1, &deeper)).is_err());
}

#[test]
fn escapes_and_unicode_on_the_fast_path() {
    for data in [
        r#""\/\b\f\n\r\t\"\\\u0041\u00e9\uFFFF""#,
        r#"{"k\u00e9y":"värde ✓ 😀","n":-0.5,"z":0,"a":[true,false,null,{}]}"#,
        r#"{"t":1,"p":"padding that is longer than one word of eight bytes"}"#,
        "\"é\"",
        "-12.0625",
        "[]",
    ] {
        let t = msg("a", 1, data);
        assert!(parse_fast(&t).is_some(), "{data}");
        assert_eq!(
            parse(&t),
            Ok(Server::Msg {
                topic: "a",
                seq: 1,
                snapshot: false,
                data: data.as_bytes(),
            })
        );
        check_agrees(&t);
    }
}

#[test]
fn other_json() {
    for t in [
        "[]",
        "1",
        r#""msg""#,
        "{}",
        r#"{"op":"hello"}"#,
        r#"{"op":1}"#,
        r#"{"topic":"a","seq":1,"data":1}"#,
    ] {
        assert_eq!(parse(t.as_bytes()), Ok(Server::Other), "{t}");
    }
}

#[test]
fn malformed() {
    // Broken framing: an error either way.
    for t in [
        &b""[..],
        b"{",
        b"}",
        b"\xff\xfe",
        br#"{"op":"msg","topic":"a","seq":1,"data":}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":{"a":1}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":1}}"#,
        br#"{"op":"msg","topic":"a","seq":01,"data":1}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":"x"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":tru}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":-}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":1.}"#,
        br#"{"op":"msg","topic":"a\","seq":1,"data":1}"#,
        b"{\"op\":\"msg\",\"topic\":\"a\xc3\",\"seq\":1,\"data\":1}",
        br#"{"op":"msg","topic":"a","seq":18446744073709551616,"data":1}"#,
        br#"{"op":"msg","topic":"a","seq":-1,"data":1}"#,
        br#"{"op":"msg","topic":"a","seq":1.5,"data":1}"#,
        br#"{"op":"msg","topic":"a","seq":1}"#,
        br#"{"op":"msg","topic":5,"seq":1,"data":1}"#,
        br#"{"op":"msg","topic":"a","seq":1,"snapshot":1,"data":1}"#,
        br#"{"op":"ack"}"#,
        br#"{"op":"ack","id":"1"}"#,
        br#"{"op":"ack","id":1"#,
        br#"{"op":"err","id":-3,"code":"x"}"#,
        br#"{"op":"err","id":3}"#,
        br#"{"op":"err","code":"x","message":}"#,
    ] {
        let shown = String::from_utf8_lossy(t);
        assert!(parse(t).is_err(), "{shown}");
    }
    // Broken data in an exact frame, and the shape of a frame with data
    // that does not end where the frame says.
    for t in [
        &br#"{"op":"msg","topic":"a","seq":1,"data":{]}"#[..],
        br#"{"op":"msg","topic":"a","seq":1,"data":1},"x":{}"#,
        br#"{"op":"msg","topic":"a","seq":1,"data":"\x"}"#,
        b"{\"op\":\"msg\",\"topic\":\"a\",\"seq\":1,\"data\":\"\x01\"}",
        b"{\"op\":\"msg\",\"topic\":\"a\",\"seq\":1,\"data\":\"\xc3\"}",
        br#"{"op":"msg","topic":"a","seq":1,"data":[1,]}"#,
    ] {
        let shown = String::from_utf8_lossy(t);
        assert!(parse_fast(t).is_none(), "{shown}");
        assert!(parse(t).is_err(), "{shown}");
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\/ \t\u{0}-\u{1f}é€😀]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z\"\\\\é]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// What serde_json says the message means, in our terms.
fn serde_view(text: &[u8]) -> Option<(String, u64, bool, Value)> {
    let v: Value = serde_json::from_slice(text).ok()?;
    Some((
        v.get("topic")?.as_str()?.to_owned(),
        v.get("seq")?.as_u64()?,
        v.get("snapshot").and_then(Value::as_bool).unwrap_or(false),
        v.get("data")?.clone(),
    ))
}

fn check_agrees(text: &[u8]) {
    let ours = parse(text);
    let theirs: Result<Value, _> = serde_json::from_slice(text);
    if theirs.is_err() {
        assert!(
            ours.is_err(),
            "we accepted what serde_json rejects: {ours:?}"
        );
    }
    if let Ok(Server::Msg {
        topic,
        seq,
        snapshot,
        data,
    }) = ours
    {
        let (t, s, snap, d) = serde_view(text).expect("serde_json agrees it is a msg");
        assert_eq!((topic, seq, snapshot), (t.as_str(), s, snap));
        assert_eq!(serde_json::from_slice::<Value>(data).unwrap(), d);
    }
}

proptest! {
    #[test]
    fn agrees_with_serde(
        topic in "[A-Za-z0-9_:@.*>-]{1,40}",
        seq in any::<u64>(),
        snapshot in any::<bool>(),
        data in json_value(),
        pretty in any::<bool>(),
    ) {
        let data = if pretty {
            serde_json::to_vec_pretty(&data).unwrap()
        } else {
            serde_json::to_vec(&data).unwrap()
        };
        let mut text = format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"#).into_bytes();
        if snapshot {
            text.extend_from_slice(br#""snapshot":true,"#);
        }
        text.extend_from_slice(br#""data":"#);
        text.extend_from_slice(&data);
        text.push(b'}');
        let want = Server::Msg { topic: &topic, seq, snapshot, data: &data };
        prop_assert_eq!(parse(&text), Ok(want));
        check_agrees(&text);

        // Same fields, another order and spacing: the slow path.
        let mut other = br#" { "data" : "#.to_vec();
        other.extend_from_slice(&data);
        other.extend_from_slice(format!(
            r#" , "seq":{seq}, "snapshot": {snapshot}, "topic" :"{topic}","op":"msg" }}"#
        ).as_bytes());
        prop_assert_eq!(parse(&other), Ok(want));
    }

    #[test]
    fn mutations_never_disagree(
        data in json_value(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
    ) {
        let mut text = msg("md.X.Y", 9, &serde_json::to_string(&data).unwrap());
        for (at, byte, kind) in edits {
            let i = at.index(text.len() + 1);
            match kind {
                0 if i < text.len() => text[i] = byte,
                1 => text.insert(i, byte),
                _ if i < text.len() => { text.remove(i); }
                _ => {}
            }
        }
        check_agrees(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse(&bytes);
        let _ = stamp(&bytes);
    }
}

/// `cargo test -p ringfan-loadgen --release --lib -- --ignored --nocapture parse_speed`
/// (best of five runs, so a busy machine shows less noise).
#[test]
#[ignore = "timing, not a check"]
fn parse_speed() {
    use std::hint::black_box;
    use std::time::{Duration, Instant};
    fn best(n: u32, mut f: impl FnMut() -> u64) -> Duration {
        (0..5)
            .map(|_| {
                let start = Instant::now();
                let acc = (0..n).fold(0u64, |a, _| a.wrapping_add(f()));
                black_box(acc);
                start.elapsed() / n
            })
            .min()
            .unwrap()
    }
    let feed = r#"{"t":1700000000123456789,"type":"quote","sym":"AAPL","bid":189.21,"ask":189.23,"bsz":300,"asz":500}"#;
    for size in [0, 64, 256, 1024] {
        let mut data = feed.as_bytes().to_vec();
        if size > 0 {
            data.clear();
            write_payload(&mut data, 1_700_000_000_123_456_789, size);
        }
        let text = msg(
            "md.NASDAQ.AAPL",
            123_456,
            std::str::from_utf8(&data).unwrap(),
        );
        let ours = best(500_000, || match parse(black_box(&text)) {
            Ok(Server::Msg { seq, data, .. }) => seq ^ stamp(data).unwrap_or(0),
            _ => 0,
        });
        let serde = best(50_000, || {
            let v: Value = serde_json::from_slice(black_box(&text)).unwrap();
            v["seq"].as_u64().unwrap()
        });
        let what = if size == 0 {
            "feed".to_owned()
        } else {
            format!("{size} B")
        };
        println!("{what:>7} payload: parse+stamp {ours:?}, serde_json::Value {serde:?}");
    }
}
