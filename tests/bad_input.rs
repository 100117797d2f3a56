//! Bad requests on `/ws` against the real binary: each gets an `err` that
//! says what was wrong, small whatever the request's size, and nothing
//! reaches subscribers (issue #12, "Bad input").

mod common;

use common::pubsub::{pub_req, Client};
use common::wsraw::metric;
use common::Broker;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// `data` 200,000 arrays deep was acked and passed verbatim to every
/// subscriber, whose recursive parser then overflows its stack. Now it is
/// refused with `bad_json` naming the limit, and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_data_is_refused() {
    let b = Broker::start(&["--shards", "2"]);
    let mut s = Client::subscribed(b.addr, &["deep.>"], 1).await;
    let mut p = Client::connect(b.addr).await;
    for (i, depth) in [65usize, 200_000].into_iter().enumerate() {
        let id = 10 + i as u64;
        p.send(pub_req("deep.a", &nested(depth), Some(id))).await;
        let e = p.expect_err(Some(id), "bad_json").await;
        assert_eq!(
            e["message"],
            "data nests deeper than 64 arrays/objects (--max-json-depth)"
        );
    }
    s.expect_quiet(QUIET).await;
    assert_eq!(metric(b.addr, "ringfan_json_too_deep_total").await, 2);
    // Exactly the limit passes, byte for byte; strings full of brackets
    // are not depth.
    let ok = format!(r#"[{}, "{}"]"#, nested(63), "[".repeat(1000));
    p.send(pub_req("deep.a", &ok, Some(20))).await;
    p.expect_ack(20).await;
    assert_eq!(s.recv_msg().await.data, ok);
    // The connection is still good.
    p.sync(21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_json_depth_is_configurable() {
    let b = Broker::start(&["--shards", "2", "--max-json-depth", "2"]);
    let mut p = Client::connect(b.addr).await;
    p.send(pub_req("d.a", r#"{"a":[1]}"#, Some(1))).await;
    p.expect_ack(1).await;
    p.send(pub_req("d.a", r#"{"a":[{}]}"#, Some(2))).await;
    let e = p.expect_err(Some(2), "bad_json").await;
    assert_eq!(
        e["message"],
        "data nests deeper than 2 arrays/objects (--max-json-depth)"
    );
}

/// A 300 KB `op` came back whole (a 300 KB error per 300 KB request, an
/// amplifier with write-only clients); now the error quotes 64 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_quote_a_short_prefix_of_client_strings() {
    let b = Broker::start(&["--shards", "2"]);
    let mut c = Client::connect(b.addr).await;
    let big = "x".repeat(300_000);
    c.send(format!(r#"{{"op":"{big}","id":1}}"#)).await;
    let t = c.recv_text().await;
    assert!(t.len() < 200, "{} bytes", t.len());
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["code"], "bad_op");
    assert_eq!(v["id"], 1);
    assert_eq!(
        v["message"],
        format!("unknown op \"{}…\"", "x".repeat(64)),
        "{t}"
    );
    // A wrong type quoted by the parser: cut, its position kept.
    for field in ["snapshot", "topics"] {
        c.send(format!(
            r#"{{"op":"sub","topic":"a","id":2,"{field}":"{big}"}}"#
        ))
        .await;
        let t = c.recv_text().await;
        assert!(t.len() < 400, "{field}: {} bytes", t.len());
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert!(
            v["message"].as_str().unwrap().contains("at line 1 column"),
            "{t}"
        );
    }
    // A 300 KB bad topic: named, cut.
    let topic = "t.".repeat(100_000) + "x";
    c.send(format!(r#"{{"op":"sub","topic":"{topic}","id":3}}"#))
        .await;
    let e = c.expect_err(Some(3), "bad_topic").await;
    assert_eq!(
        e["message"],
        format!(
            "bad topic '{}…': topic is longer than 255 bytes",
            "t.".repeat(32)
        )
    );
    c.sync(4).await;
}

/// An id that is not an unsigned integer got a parser message about "u64"
/// (or, as a string, a message quoting it whole); now the answer says what
/// the id must be, and carries no id: none that could be echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_id_is_named() {
    let b = Broker::start(&["--shards", "2"]);
    let mut c = Client::connect(b.addr).await;
    for id in ["-1", "1.5", r#""12""#, "18446744073709551616", "[7]"] {
        for req in [
            format!(r#"{{"op":"sub","topic":"a","id":{id}}}"#),
            format!(r#"{{"op":"unsub","topic":"a","id":{id}}}"#),
            format!(r#"{{"op":"pub","topic":"a","data":1,"id":{id}}}"#),
        ] {
            c.send(req).await;
            let e = c.expect_err(None, "bad_op").await;
            assert_eq!(e["message"], "id must be an unsigned integer", "{id}");
        }
    }
    c.sync(1).await;
}

/// `bad_topic` for one of several topics did not say which one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_names_the_topic() {
    let b = Broker::start(&["--shards", "2"]);
    let mut c = Client::connect(b.addr).await;
    for (op, n) in [("sub", 1), ("unsub", 2)] {
        c.send(format!(
            r#"{{"op":"{op}","topics":["ok.a","ok.*","a..b","c d"],"id":{n}}}"#
        ))
        .await;
        let e = c.expect_err(Some(n), "bad_topic").await;
        assert_eq!(e["message"], "bad topic 'a..b': topic has an empty token");
    }
    c.send(pub_req("md.*", "1", Some(3))).await;
    let e = c.expect_err(Some(3), "bad_topic").await;
    assert_eq!(
        e["message"],
        "bad topic 'md.*': cannot publish to a wildcard topic"
    );
    // Nothing of the refused sub took effect: ok.a gets nothing.
    let mut p = Client::connect(b.addr).await;
    p.send(pub_req("ok.a", "1", Some(4))).await;
    p.expect_ack(4).await;
    c.expect_quiet(QUIET).await;
}
