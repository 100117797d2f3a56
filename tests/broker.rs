//! The `/ws` pub/sub protocol (protocol.md) against the real binary with two
//! shards: every op, every error code reachable without auth, per-topic seq
//! and order across shards, data passed through byte for byte, wildcards,
//! unsubscribe, snapshots (also racing a publisher) and cleanup on close.
//!
//! Connections land on shards by the kernel's SO_REUSEPORT hash, so tests
//! that need cross-shard traffic use several connections on each side and
//! check `ringfan_mail_received_total`.

mod common;

use common::pubsub::{parse_msg, pub_req, Client, Msg};
use common::wsraw::{bounded, metric, wait_metric};
use common::Broker;
use futures_util::{SinkExt, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const QUIET: Duration = Duration::from_millis(300);

fn start() -> Broker {
    Broker::start(&["--shards", "2"])
}

/// Read `n` msgs (anything else fails the test).
async fn recv_msgs(c: &mut Client, n: usize) -> Vec<Msg> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_msg().await);
    }
    out
}

/// (topic, seq, data) of msgs, sorted: for comparing sets of deliveries
/// whose cross-topic order is not defined.
fn sorted(msgs: &[Msg]) -> Vec<(String, u64, String)> {
    let mut v: Vec<_> = msgs
        .iter()
        .map(|m| (m.topic.clone(), m.seq, m.data.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_unsub_pub_with_and_without_id() {
    let b = start();
    let mut s = Client::connect(b.addr).await;
    let mut p = Client::connect(b.addr).await;

    // sub: `topics` with id → ack carrying the id.
    s.send(r#"{"op":"sub","topics":["o.a","o.b"],"id":1}"#)
        .await;
    s.expect_ack(1).await;
    // sub: `topic`, no id → silent (the next message is the later ack).
    s.send(r#"{"op":"sub","topic":"o.c"}"#).await;
    s.sync(2).await;
    // Explicit snapshot:false and unknown fields are fine.
    s.send(r#"{"op":"sub","topic":"o.d","id":3,"snapshot":false,"later":[1,{"x":2}]}"#)
        .await;
    s.expect_ack(3).await;
    // The id range: 0 and u64::MAX come back exactly.
    s.send(r#"{"op":"sub","topic":"o.e","id":0}"#).await;
    s.expect_ack(0).await;
    s.send(format!(r#"{{"op":"sub","topic":"o.f","id":{}}}"#, u64::MAX))
        .await;
    s.expect_ack(u64::MAX).await;
    // Subscribing again to the same pattern is accepted and changes nothing.
    s.send(r#"{"op":"sub","topics":["o.a"],"id":4}"#).await;
    s.expect_ack(4).await;
    wait_metric(b.addr, "ringfan_subscriptions", 6, Duration::from_secs(5)).await;

    // pub without id: silent for the publisher.
    p.send(pub_req("o.a", "1", None)).await;
    p.sync(10).await;
    // pub with `topics` (one topic) and id.
    p.send(r#"{"op":"pub","topics":["o.b"],"data":2,"id":11}"#)
        .await;
    p.expect_ack(11).await;
    // Members in any order.
    p.send(r#"{"data":3,"id":12,"topic":"o.c","op":"pub"}"#)
        .await;
    p.expect_ack(12).await;
    for (i, t) in ["o.d", "o.e", "o.f"].iter().enumerate() {
        p.send(pub_req(t, &(4 + i).to_string(), Some(13 + i as u64)))
            .await;
        p.expect_ack(13 + i as u64).await;
    }
    let got = sorted(&recv_msgs(&mut s, 6).await);
    let want: Vec<_> = ["o.a", "o.b", "o.c", "o.d", "o.e", "o.f"]
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), 1, (i + 1).to_string()))
        .collect();
    assert_eq!(got, want);
    // Nothing else for the subscriber (in particular no second o.a).
    s.sync(5).await;

    // unsub: `topics` with id → ack; `topic` without id → silent.
    s.send(r#"{"op":"unsub","topics":["o.a","o.b"],"id":20}"#)
        .await;
    s.expect_ack(20).await;
    s.send(r#"{"op":"unsub","topic":"o.c"}"#).await;
    s.sync(21).await;
    s.send(r#"{"op":"unsub","topics":["o.d","o.e","o.f"],"id":22}"#)
        .await;
    s.expect_ack(22).await;
    // unsub of something never subscribed is still acked.
    s.send(r#"{"op":"unsub","topic":"o.zzz","id":23}"#).await;
    s.expect_ack(23).await;
    wait_metric(b.addr, "ringfan_subscriptions", 0, Duration::from_secs(5)).await;

    let before = metric(b.addr, "ringfan_publishes_total").await;
    for (i, t) in ["o.a", "o.b", "o.c", "o.d", "o.e", "o.f"]
        .iter()
        .enumerate()
    {
        p.send(pub_req(t, "0", Some(30 + i as u64))).await;
        p.expect_ack(30 + i as u64).await;
    }
    wait_metric(
        b.addr,
        "ringfan_publishes_total",
        before + 6,
        Duration::from_secs(5),
    )
    .await;
    s.expect_quiet(QUIET).await;
    assert_eq!(metric(b.addr, "ringfan_errors_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_json_and_bad_op_leave_the_connection_usable() {
    let b = start();
    let mut c = Client::connect(b.addr).await;
    // (request, code, id the err must carry; None: no id member)
    let cases: &[(&str, &str, Option<u64>)] = &[
        ("not json", "bad_json", None),
        ("", "bad_json", None),
        (r#"{"op":"pub","topic":"e.a","data":}"#, "bad_json", None),
        (
            r#"{"op":"pub","topic":"e.a","data":[1,2}"#,
            "bad_json",
            None,
        ),
        (r#"{"op":"sub","topic":"e.a"} trailing"#, "bad_json", None),
        (r#"{'op':'sub'}"#, "bad_json", None),
        (r#"{"op":"jump","id":7}"#, "bad_op", Some(7)),
        (r#"{"op":"jump"}"#, "bad_op", None),
        (r#"{"op":"sub","id":8}"#, "bad_op", Some(8)),
        (r#"{"op":"unsub","id":9}"#, "bad_op", Some(9)),
        (r#"{"op":"pub","topic":"e.a","id":10}"#, "bad_op", Some(10)),
        (r#"{"op":"pub","topic":"e.a"}"#, "bad_op", None),
        (r#"{"op":"pub","data":1,"id":11}"#, "bad_op", Some(11)),
        (r#"{"op":"sub","topics":[],"id":12}"#, "bad_op", Some(12)),
        (
            r#"{"op":"sub","topic":"e.a","topics":["e.b"],"id":13}"#,
            "bad_op",
            Some(13),
        ),
        (
            r#"{"op":"pub","topics":["e.a","e.b"],"data":1,"id":14}"#,
            "bad_op",
            Some(14),
        ),
        (r#"{"topic":"e.a","id":15}"#, "bad_op", Some(15)),
        (r#"{"op":"sub","topic":5,"id":16}"#, "bad_op", Some(16)),
        (r#"[1,2]"#, "bad_op", None),
        (r#""sub""#, "bad_op", None),
        (r#"{"op":"sub","topic":"e.a","id":-1}"#, "bad_op", None),
    ];
    let mut sync = 1000;
    for (req, code, id) in cases {
        c.send(*req).await;
        let v = c.expect_err(*id, code).await;
        assert!(!v["message"].as_str().unwrap().is_empty(), "{req}: {v}");
        // Still usable: the next request is answered.
        sync += 1;
        c.sync(sync).await;
    }
    // A binary message: bad_op without id, and the connection stays.
    c.send_binary(br#"{"op":"sub","topic":"e.a","id":1}"#.to_vec())
        .await;
    c.expect_err(None, "bad_op").await;
    c.sub(&["e.ok"], 2000).await;
    // After all that, the connection still subscribes and receives.
    let mut p = Client::connect(b.addr).await;
    p.send(pub_req("e.ok", "\"fine\"", Some(1))).await;
    p.expect_ack(1).await;
    let m = c.recv_msg().await;
    assert_eq!(
        (m.topic.as_str(), m.seq, m.data.as_str()),
        ("e.ok", 1, "\"fine\"")
    );
    assert_eq!(
        metric(b.addr, "ringfan_errors_total").await,
        cases.len() as u64 + 1
    );
}

/// A topic of three 64-byte tokens and a last one of `last` bytes.
fn four_tokens(last: usize) -> String {
    format!(
        "{}.{}.{}.{}",
        "x".repeat(64),
        "y".repeat(64),
        "z".repeat(64),
        "w".repeat(last)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic() {
    let b = start();
    let mut c = Client::connect(b.addr).await;
    let seventeen = vec!["a"; 17].join(".");
    let long = four_tokens(61);
    assert_eq!(long.len(), 256);
    let token65 = format!("a.{}", "t".repeat(65));
    // Invalid everywhere.
    let bad: Vec<&str> = vec![
        "a b", "a/b", "a\"b", "é", "a..b", ".a", "a.", "", ".", &seventeen, &long, &token65,
        "a.>.b", ">.a", "a.**", "a*", "a.b>",
    ];
    let mut id = 0;
    let mut errors = 0;
    for t in &bad {
        let t = serde_json::to_string(t).unwrap();
        for req in [
            format!(r#"{{"op":"sub","topic":{t},"id":ID}}"#),
            format!(r#"{{"op":"sub","topics":["ok.t",{t}],"id":ID}}"#),
            format!(r#"{{"op":"unsub","topic":{t},"id":ID}}"#),
            format!(r#"{{"op":"pub","topic":{t},"data":1,"id":ID}}"#),
        ] {
            id += 1;
            c.send(req.replace("ID", &id.to_string())).await;
            let v = c.expect_err(Some(id), "bad_topic").await;
            assert!(!v["message"].as_str().unwrap().is_empty());
            errors += 1;
            id += 1;
            c.sync(id).await;
        }
    }
    // Without id the err comes without one.
    c.send(r#"{"op":"sub","topic":"a..b"}"#).await;
    c.expect_err(None, "bad_topic").await;
    errors += 1;
    // Wildcards are fine to subscribe to but not to publish to.
    for t in ["a.*", "a.>", "*", ">", "a.*.b", "*.>"] {
        id += 1;
        c.send(pub_req(t, "1", Some(id))).await;
        c.expect_err(Some(id), "bad_topic").await;
        errors += 1;
    }
    assert_eq!(metric(b.addr, "ringfan_errors_total").await, errors);

    // The limits themselves are valid: 16 tokens, 255 bytes, 64-byte tokens,
    // every allowed character.
    let sixteen = vec!["a"; 16].join(".");
    let max_len = four_tokens(60);
    assert_eq!(max_len.len(), 255);
    let chars = "Az09_-:@.q";
    let mut s = Client::subscribed(b.addr, &[&sixteen, &max_len, chars], 1).await;
    for (i, t) in [&sixteen, &max_len, chars].iter().enumerate() {
        id += 1;
        c.send(pub_req(t, &i.to_string(), Some(id))).await;
        c.expect_ack(id).await;
    }
    let got = sorted(&recv_msgs(&mut s, 3).await);
    let mut want = vec![
        (sixteen.clone(), 1, "0".to_string()),
        (max_len.clone(), 1, "1".to_string()),
        (chars.to_string(), 1, "2".to_string()),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_and_the_message_limit() {
    const MAX: usize = 2000;
    let b = Broker::start(&["--shards", "2", "--max-message", "2000"]);
    let mut s = Client::subscribed(b.addr, &["big.t"], 1).await;
    let mut p = Client::connect(b.addr).await;

    let string_of = |n: usize| format!("\"{}\"", "x".repeat(n - 2));
    // A pub whose request is exactly at the limit: accepted as a message,
    // but its msg envelope would not fit subscribers → too_large.
    let probe = pub_req("big.t", &string_of(10), Some(1));
    let exact = pub_req("big.t", &string_of(10 + MAX - probe.len()), Some(1));
    assert_eq!(exact.len(), MAX);
    p.send(exact).await;
    p.expect_err(Some(1), "too_large").await;
    // Without id the err has none, and the connection stays usable.
    let exact = pub_req("big.t", &string_of(10 + MAX - probe.len() + 7), None);
    assert_eq!(exact.len(), MAX);
    p.send(exact).await;
    p.expect_err(None, "too_large").await;
    p.sync(2).await;

    // Sizes below: either acked and delivered intact within the limit, or
    // too_large; small data always fits.
    let mut delivered = 0;
    let mut largest_ok = 0;
    for (i, n) in [100usize, 1000, 1800, 1900, 1920, 1930, 1940, 1950]
        .into_iter()
        .enumerate()
    {
        let id = 10 + i as u64;
        let data = string_of(n);
        p.send(pub_req("big.t", &data, Some(id))).await;
        let v = p.recv_json().await;
        if v["op"] == "ack" {
            assert_eq!(v["id"], id);
            delivered += 1;
            let m = s.recv_msg().await;
            assert_eq!(m.seq, delivered);
            assert_eq!(m.data, data);
            assert!(m.text.len() <= MAX, "msg of {} bytes", m.text.len());
            largest_ok = n;
        } else {
            assert_eq!(v["code"], "too_large", "{v}");
            assert_eq!(v["id"], id, "{v}");
            assert!(n > 1000, "{n} bytes of data refused");
        }
    }
    assert!(largest_ok >= 1800, "largest delivered data {largest_ok}");
    s.sync(3).await;

    // Over the limit by one byte: close 1009 (message too big).
    let over = pub_req("big.t", &string_of(10 + MAX - probe.len() + 1), Some(4));
    assert_eq!(over.len(), MAX + 1);
    p.send(over).await;
    let (before, code) = p.read_to_close(10).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(code, Some(1009));
    // 1990 bytes of data is a ~2.03 kB request: also 1009.
    let mut p2 = Client::connect(b.addr).await;
    p2.send(pub_req("big.t", &string_of(1990), Some(5))).await;
    let (before, code) = p2.read_to_close(10).await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(code, Some(1009));
    // Neither was published.
    s.expect_quiet(QUIET).await;
    assert_eq!(metric(b.addr, "ringfan_publishes_total").await, delivered);
}

/// Several publishers (on both shards) interleave on the same topics:
/// every subscriber sees seq 1..=N per topic with no gap, the same order,
/// and each publisher's own messages in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_is_gapless_across_publishers_and_shards() {
    const PUBS: usize = 8;
    const SUBS: usize = 8;
    const PER_PUB: usize = 300;
    const TOPICS: [&str; 3] = ["g.one", "g.two", "g.three"];
    let b = start();
    let mut subs = Vec::new();
    for i in 0..SUBS {
        let mut c = Client::connect(b.addr).await;
        if i % 2 == 0 {
            c.sub(&TOPICS, 1).await;
        } else {
            c.sub(&["g.*"], 1).await;
        }
        subs.push(c);
    }
    let mail_before = metric(b.addr, "ringfan_mail_received_total").await;
    let mut pubs = Vec::new();
    for _ in 0..PUBS {
        pubs.push(Client::connect(b.addr).await);
    }
    let mut tasks = Vec::new();
    for (p, mut c) in pubs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_PUB {
                let t = TOPICS[(n + p) % TOPICS.len()];
                c.feed(pub_req(t, &format!(r#"{{"p":{p},"n":{n}}}"#), None))
                    .await;
                if n % 16 == 15 {
                    c.flush().await;
                    tokio::task::yield_now().await;
                }
            }
            c.flush().await;
            c.sync(1).await;
            c
        }));
    }
    let total = PUBS * PER_PUB;
    let mut readers = Vec::new();
    for mut c in subs {
        readers.push(tokio::spawn(async move {
            let msgs = recv_msgs(&mut c, total).await;
            c.expect_quiet(Duration::from_millis(100)).await;
            msgs
        }));
    }
    for t in tasks {
        bounded(30, "publisher", t).await.unwrap();
    }
    let mut first: Option<BTreeMap<String, Vec<String>>> = None;
    for r in readers {
        let msgs = bounded(30, "subscriber", r).await.unwrap();
        let mut per_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &msgs {
            let v = per_topic.entry(m.topic.clone()).or_default();
            assert_eq!(m.seq, v.len() as u64 + 1, "gap or disorder: {}", m.text);
            assert!(!m.snapshot);
            v.push(m.data.clone());
        }
        // Every message once; each publisher's in its order.
        for (t, datas) in &per_topic {
            let mut last_n: BTreeMap<u64, i64> = BTreeMap::new();
            for d in datas {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                let (p, n) = (v["p"].as_u64().unwrap(), v["n"].as_i64().unwrap());
                let prev = last_n.entry(p).or_insert(-1);
                assert!(n > *prev, "{t}: publisher {p} reordered: {n} after {prev}");
                *prev = n;
            }
            let set: BTreeSet<&String> = datas.iter().collect();
            assert_eq!(set.len(), datas.len(), "{t}: duplicate data");
        }
        assert_eq!(per_topic.len(), TOPICS.len());
        assert_eq!(per_topic.values().map(Vec::len).sum::<usize>(), total);
        // Every subscriber sees the same per-topic order.
        match &first {
            None => first = Some(per_topic),
            Some(f) => assert!(f == &per_topic, "subscribers disagree on order"),
        }
    }
    assert_eq!(
        metric(b.addr, "ringfan_publishes_total").await,
        total as u64
    );
    assert_eq!(
        metric(b.addr, "ringfan_frames_built_total").await,
        total as u64
    );
    assert_eq!(
        metric(b.addr, "ringfan_deliveries_total").await,
        (total * SUBS) as u64
    );
    assert!(
        metric(b.addr, "ringfan_mail_received_total").await > mail_before,
        "no cross-shard traffic: the test did not exercise two shards"
    );
}

/// One publisher, 1000 numbered messages: every subscriber gets them in
/// order with seq 1..=1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_topic_order_is_preserved() {
    const N: u64 = 1000;
    const SUBS: usize = 8;
    let b = start();
    let mut readers = Vec::new();
    for _ in 0..SUBS {
        let mut c = Client::subscribed(b.addr, &["ord.t"], 1).await;
        readers.push(tokio::spawn(async move {
            for i in 1..=N {
                let m = c.recv_msg().await;
                assert_eq!(
                    (m.topic.as_str(), m.seq, m.snapshot),
                    ("ord.t", i, false),
                    "{}",
                    m.text
                );
                assert_eq!(m.data, format!("[{i},\"n{i}\"]"));
            }
            c.expect_quiet(Duration::from_millis(100)).await;
        }));
    }
    let mut p = Client::connect(b.addr).await;
    for i in 1..=N {
        p.feed(pub_req("ord.t", &format!("[{i},\"n{i}\"]"), None))
            .await;
        if i % 50 == 0 {
            p.flush().await;
        }
    }
    p.flush().await;
    p.sync(1).await;
    for r in readers {
        bounded(30, "subscriber", r).await.unwrap();
    }
}

/// `data` reaches subscribers as the publisher's exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_bytes_are_delivered_exactly() {
    let b = start();
    let mut subs = Vec::new();
    for _ in 0..4 {
        subs.push(Client::subscribed(b.addr, &["d.x"], 1).await);
    }
    let datas = [
        r#"{"a" :  [1, [2, [3, [ ]]]] , "b":{ }}"#,
        r#""caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t""#,
        "\"café 😀 ünïcödé\"",
        "1e400",
        "-1E-400",
        "-0.0",
        "123456789012345678901234567890",
        "1.00000000000000000000000000001",
        "0.1e+0001",
        "[ true,false , null ]",
        "null",
        "\"\"",
        "[1,\n\t2 ,\r\n 3]",
        r#"{"k":"v","k":"dup"}"#,
        "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]",
        r#"{"nested":{"deep":[{"x":[1.5e-7,-2]},"s"]}}"#,
    ];
    let mut p = Client::connect(b.addr).await;
    for (i, d) in datas.iter().enumerate() {
        // Whitespace around the value is JSON, not data.
        let req = if i % 2 == 0 {
            format!("{{\"op\":\"pub\",\"topic\":\"d.x\",\"data\":{d},\"id\":{i}}}")
        } else {
            format!("{{ \"data\" : \n {d} \t , \"topic\":\"d.x\", \"op\":\"pub\" , \"id\":{i} }}")
        };
        p.send(req).await;
        p.expect_ack(i as u64).await;
    }
    for c in &mut subs {
        for (i, d) in datas.iter().enumerate() {
            let t = c.recv_text().await;
            assert_eq!(
                t,
                format!(
                    "{{\"op\":\"msg\",\"topic\":\"d.x\",\"seq\":{},\"data\":{d}}}",
                    i + 1
                )
            );
        }
    }
}

/// `*` matches one token, `>` one or more; overlapping patterns on one
/// connection deliver each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_and_overlapping_patterns() {
    let b = start();
    let cases: &[(&[&str], &[&str])] = &[
        (&["a.*"], &["a.b", "a.c"]),
        (&["a.>"], &["a.b", "a.b.c", "a.c", "a.b.c.d"]),
        (&["a.>", "a.*", "a.b"], &["a.b", "a.b.c", "a.c", "a.b.c.d"]),
        (&["a.b", "a.b"], &["a.b"]),
        (&["*"], &["a", "b"]),
        (&["*.b.*"], &["a.b.c"]),
        (&["a.*.>"], &["a.b.c", "a.b.c.d"]),
        (&["*.*", "a.b"], &["a.b", "a.c", "b.a"]),
        (&[">"], &["a", "a.b", "a.b.c", "a.c", "b", "b.a", "a.b.c.d"]),
    ];
    let publish = ["a", "a.b", "a.b.c", "a.c", "b", "b.a", "a.b.c.d"];
    let mut clients = Vec::new();
    for (pats, _) in cases {
        clients.push(Client::subscribed(b.addr, pats, 1).await);
    }
    // Duplicate patterns count once.
    assert_eq!(
        metric(b.addr, "ringfan_subscriptions").await,
        cases.iter().map(|(p, _)| p.len() as u64).sum::<u64>() - 1
    );
    let mut p = Client::connect(b.addr).await;
    for (i, t) in publish.iter().enumerate() {
        p.send(pub_req(t, &i.to_string(), Some(i as u64))).await;
        p.expect_ack(i as u64).await;
    }
    // Each subscriber gets exactly its matches, once each: a non-matching
    // topic or a duplicate would arrive in the half second after them.
    let mut readers = Vec::new();
    for (c, (pats, want)) in clients.into_iter().zip(cases.iter()) {
        readers.push(tokio::spawn(async move {
            let mut c = c;
            let got = recv_msgs(&mut c, want.len()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.expect_quiet(QUIET).await;
            let mut want: Vec<(String, u64, String)> = want
                .iter()
                .map(|t| {
                    let i = publish.iter().position(|p| p == t).unwrap();
                    (t.to_string(), 1, i.to_string())
                })
                .collect();
            want.sort();
            assert_eq!(sorted(&got), want, "patterns {pats:?}");
        }));
    }
    for r in readers {
        bounded(30, "subscriber", r).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let b = start();
    let mut s = Client::connect(b.addr).await;
    let mut p = Client::connect(b.addr).await;
    s.sub(&["u.x", "w.*", "v.*", "v.a"], 1).await;
    let mut id = 0;
    publish(&mut p, &mut id, "u.x", "1").await;
    publish(&mut p, &mut id, "w.a", "2").await;
    publish(&mut p, &mut id, "v.a", "3").await;
    assert_eq!(
        sorted(&recv_msgs(&mut s, 3).await),
        vec![
            ("u.x".into(), 1, "1".into()),
            ("v.a".into(), 1, "3".into()),
            ("w.a".into(), 1, "2".into())
        ]
    );
    // Exact unsub: u.x stops, the others continue; dropping v.a leaves v.*
    // delivering v.a.
    s.send(r#"{"op":"unsub","topics":["u.x","v.a"],"id":2}"#)
        .await;
    s.expect_ack(2).await;
    publish(&mut p, &mut id, "u.x", "4").await;
    publish(&mut p, &mut id, "w.a", "5").await;
    publish(&mut p, &mut id, "v.a", "6").await;
    assert_eq!(
        sorted(&recv_msgs(&mut s, 2).await),
        vec![("v.a".into(), 2, "6".into()), ("w.a".into(), 2, "5".into())]
    );
    s.expect_quiet(QUIET).await;
    // Wildcard unsub.
    s.send(r#"{"op":"unsub","topic":"w.*","id":3}"#).await;
    s.expect_ack(3).await;
    publish(&mut p, &mut id, "w.a", "7").await;
    publish(&mut p, &mut id, "w.b", "8").await;
    publish(&mut p, &mut id, "v.b", "9").await;
    let m = s.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.seq, m.data.as_str()), ("v.b", 1, "9"));
    s.expect_quiet(QUIET).await;
    // Unsubscribing by a different spelling of a pattern removes nothing:
    // `v.>` was never subscribed.
    s.send(r#"{"op":"unsub","topic":"v.>","id":4}"#).await;
    s.expect_ack(4).await;
    publish(&mut p, &mut id, "v.c", "10").await;
    let m = s.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.data.as_str()), ("v.c", "10"));
    s.send(r#"{"op":"unsub","topic":"v.*","id":5}"#).await;
    s.expect_ack(5).await;
    wait_metric(b.addr, "ringfan_subscriptions", 0, Duration::from_secs(5)).await;
    publish(&mut p, &mut id, "v.c", "11").await;
    publish(&mut p, &mut id, "u.x", "12").await;
    s.expect_quiet(QUIET).await;
    // Subscribing again resumes at the topic's current seq.
    s.sub(&["u.x"], 6).await;
    publish(&mut p, &mut id, "u.x", "13").await;
    let m = s.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.seq, m.data.as_str()), ("u.x", 4, "13"));
}

/// Publish with an id and wait for the ack.
async fn publish(p: &mut Client, id: &mut u64, topic: &str, data: &str) {
    *id += 1;
    p.send(pub_req(topic, data, Some(*id))).await;
    p.expect_ack(*id).await;
}

/// Subscribe with snapshot:true; returns the snapshot msgs that came
/// before the ack (the ack must follow them, and nothing else may).
async fn sub_snapshot(c: &mut Client, topics: &[&str], id: u64) -> Vec<Msg> {
    let req = serde_json::json!({"op":"sub","topics":topics,"snapshot":true,"id":id});
    c.send(req.to_string()).await;
    let mut snaps = Vec::new();
    loop {
        let t = c.recv_text().await;
        if t == format!(r#"{{"op":"ack","id":{id}}}"#) {
            return snaps;
        }
        let m = parse_msg(&t);
        assert!(m.snapshot, "live message before the ack: {t}");
        snaps.push(m);
    }
}

/// `sub_snapshot`'s messages as whole texts, sorted (snapshots of
/// different topics come in no set order).
async fn sorted_snapshot_texts(c: &mut Client, topics: &[&str], id: u64) -> Vec<String> {
    let mut texts: Vec<String> = sub_snapshot(c, topics, id)
        .await
        .into_iter()
        .map(|m| m.text)
        .collect();
    texts.sort();
    texts
}

/// 5 messages on each of 3 topics, then a snapshot subscriber on a
/// wildcard: exactly the last message of each matching topic, flagged, with
/// its seq, then the ack, then live messages from seq 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_sends_the_last_value_then_live() {
    let b = start();
    // A probe tells us when every publish has reached its owner.
    let mut probe = Client::subscribed(b.addr, &[">"], 1).await;
    let mut p = Client::connect(b.addr).await;
    let mut id = 0;
    let all = ["s.a", "s.b", "s.c", "s.a.deep", "t.a"];
    for round in 1..=5 {
        for t in all {
            publish(&mut p, &mut id, t, &format!(r#"{{"t":"{t}","r":{round}}}"#)).await;
        }
    }
    recv_msgs(&mut probe, 25).await;
    let snaps_before = metric(b.addr, "ringfan_snapshots_total").await;
    let snap_text = |t: &str, seq: u64, data: &str| {
        format!(r#"{{"op":"msg","topic":"{t}","seq":{seq},"snapshot":true,"data":{data}}}"#)
    };
    let last = |t: &str| format!(r#"{{"t":"{t}","r":5}}"#);

    // `s.*`: s.a, s.b, s.c at seq 5 (not s.a.deep, not t.a).
    let mut s = Client::connect(b.addr).await;
    let snap = sorted_snapshot_texts(&mut s, &["s.*"], 7).await;
    let want: Vec<String> = ["s.a", "s.b", "s.c"]
        .iter()
        .map(|t| snap_text(t, 5, &last(t)))
        .collect();
    assert_eq!(snap, want);
    s.sync(8).await;
    // Live continues at seq 6, unflagged.
    for t in ["s.a", "s.b", "s.c"] {
        publish(&mut p, &mut id, t, "\"live\"").await;
        let m = s.recv_msg().await;
        assert_eq!(
            m.text,
            format!(r#"{{"op":"msg","topic":"{t}","seq":6,"data":"live"}}"#)
        );
    }
    s.expect_quiet(Duration::from_millis(100)).await;

    // An exact topic and another wildcard in one request.
    let mut s2 = Client::connect(b.addr).await;
    let snap = sorted_snapshot_texts(&mut s2, &["s.a.deep", "t.>"], 9).await;
    assert_eq!(
        snap,
        vec![
            snap_text("s.a.deep", 5, &last("s.a.deep")),
            snap_text("t.a", 5, &last("t.a"))
        ]
    );
    // `s.>` now: the latest of each, including the live ones.
    let mut s3 = Client::connect(b.addr).await;
    let snap = sorted_snapshot_texts(&mut s3, &["s.>"], 10).await;
    assert_eq!(
        snap,
        vec![
            snap_text("s.a", 6, "\"live\""),
            snap_text("s.a.deep", 5, &last("s.a.deep")),
            snap_text("s.b", 6, "\"live\""),
            snap_text("s.c", 6, "\"live\""),
        ]
    );
    // A topic the connection already streams gets no snapshot (it would be
    // a duplicate); the others do.
    let mut s4 = Client::subscribed(b.addr, &["s.a"], 11).await;
    let snap = sub_snapshot(&mut s4, &["s.*"], 12).await;
    let mut topics: Vec<&str> = snap.iter().map(|m| m.topic.as_str()).collect();
    topics.sort();
    assert_eq!(topics, vec!["s.b", "s.c"]);
    // Re-subscribing an existing pattern with snapshot sends nothing.
    let snap = sub_snapshot(&mut s4, &["s.*"], 13).await;
    assert!(snap.is_empty(), "{snap:?}");
    publish(&mut p, &mut id, "s.a", "7").await;
    let m = s4.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.seq, m.snapshot), ("s.a", 7, false));
    s4.expect_quiet(Duration::from_millis(100)).await;
    assert_eq!(
        metric(b.addr, "ringfan_snapshots_total").await,
        snaps_before + 3 + 2 + 4 + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_a_topic_never_published_is_just_the_ack() {
    let b = start();
    let mut s = Client::connect(b.addr).await;
    s.send(r#"{"op":"sub","topic":"n.never","snapshot":true,"id":1}"#)
        .await;
    s.expect_ack(1).await;
    s.send(r#"{"op":"sub","topics":["n.*","nn.>"],"snapshot":true,"id":2}"#)
        .await;
    s.expect_ack(2).await;
    // Without id: silent, snapshot or not.
    s.send(r#"{"op":"sub","topic":"n.other","snapshot":true}"#)
        .await;
    s.sync(3).await;
    let mut p = Client::connect(b.addr).await;
    let mut id = 0;
    publish(&mut p, &mut id, "n.never", "1").await;
    let m = s.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.seq, m.snapshot), ("n.never", 1, false));
    s.expect_quiet(QUIET).await;
    assert_eq!(metric(b.addr, "ringfan_snapshots_total").await, 0);
}

/// A publisher publishes 2000 messages on two topics as fast as it can
/// while 20 clients subscribe with snapshot at random moments: each
/// client's stream of each topic is strictly consecutive from its first
/// message (snapshot or live), with no duplicate, up to the last message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_races_a_publisher_without_gap_or_duplicate() {
    const N: usize = 2000;
    const CLIENTS: usize = 20;
    const TOPICS: [&str; 2] = ["race.a", "race.b"];
    let last_seq = (N / TOPICS.len()) as u64;
    let b = start();

    // The publisher itself sends client i's subscription between its
    // publishes number at[i] - 1 and at[i], on that client's connection.
    let mut at: Vec<(usize, usize)> = (0..CLIENTS)
        .map(|i| (fastrand::usize(0..N * 9 / 10), i))
        .collect();
    at.sort();
    let mut sinks = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut c = Client::connect(b.addr).await;
        // Mode 3 already streams race.a live, then adds race.* with a
        // snapshot: race.a must not repeat.
        let (pattern, watched): (&str, &[&str]) = match i % 4 {
            0 => ("race.a", &TOPICS[..1]),
            1 => ("race.b", &TOPICS[1..]),
            _ => ("race.*", &TOPICS),
        };
        if i % 4 == 3 {
            c.sub(&["race.a"], 99).await;
        }
        let (sink, mut stream) = c.ws.split();
        sinks.push((sink, pattern));
        tasks.push(tokio::spawn(async move {
            let mut acked = false;
            let mut streams: BTreeMap<String, Vec<(u64, bool)>> = BTreeMap::new();
            let done = |s: &BTreeMap<String, Vec<(u64, bool)>>| {
                watched
                    .iter()
                    .all(|t| s.get(*t).and_then(|v| v.last()).map(|l| l.0) == Some(last_seq))
            };
            while !(acked && done(&streams)) {
                let t = match bounded(10, "racing subscriber read", stream.next()).await {
                    Some(Ok(Message::Text(t))) => t,
                    other => panic!("client {i}: {other:?}"),
                };
                if t.as_str() == r#"{"op":"ack","id":1}"# {
                    assert!(!acked, "two acks");
                    acked = true;
                    continue;
                }
                let m = parse_msg(&t);
                streams
                    .entry(m.topic.clone())
                    .or_default()
                    .push((m.seq, m.snapshot));
            }
            let extra = tokio::time::timeout(Duration::from_millis(100), stream.next()).await;
            assert!(extra.is_err(), "client {i}: more after the last: {extra:?}");
            (i, pattern, streams)
        }));
    }

    let mut p = Client::connect(b.addr).await;
    let mut next = 0;
    for n in 0..N {
        while next < at.len() && at[next].0 == n {
            let (sink, pattern) = &mut sinks[at[next].1];
            let req = format!(r#"{{"op":"sub","topic":"{pattern}","snapshot":true,"id":1}}"#);
            bounded(10, "sub", sink.send(Message::text(req)))
                .await
                .unwrap();
            next += 1;
        }
        let t = TOPICS[n % TOPICS.len()];
        p.feed(pub_req(t, &n.to_string(), None)).await;
        if n % 4 == 3 {
            p.flush().await;
        }
        // Bursts with short pauses, so that the server interleaves the
        // subscriptions with the stream rather than reading it all at once.
        if n % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    p.flush().await;
    p.sync(1).await;

    let mut snapshots = 0;
    let mut mid_stream = 0;
    for t in tasks {
        let (i, pattern, streams) = bounded(30, "racing subscriber", t).await.unwrap();
        for (topic, s) in &streams {
            let seqs: Vec<u64> = s.iter().map(|x| x.0).collect();
            for w in seqs.windows(2) {
                assert_eq!(
                    w[1],
                    w[0] + 1,
                    "client {i} ({pattern}) {topic}: gap or duplicate in {seqs:?}"
                );
            }
            // Only the first message of a topic may be a snapshot.
            for (k, (_, snap)) in s.iter().enumerate() {
                assert!(
                    !snap || k == 0,
                    "client {i} ({pattern}) {topic}: snapshot at {k}: {s:?}"
                );
            }
            snapshots += s[0].1 as u64;
            if s[0].1 && s[0].0 < last_seq {
                mid_stream += 1;
            }
            if i % 4 == 3 && topic == "race.a" {
                assert!(!s[0].1, "client {i}: race.a was live already");
            }
        }
    }
    assert_eq!(metric(b.addr, "ringfan_snapshots_total").await, snapshots);
    // The subscriptions did land inside the stream.
    assert!(mid_stream >= 5, "only {mid_stream} snapshots mid-stream");
}

/// Closing a connection (with or without a close handshake) removes its
/// subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connection_unsubscribes() {
    let b = start();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Client::subscribed(b.addr, &["c.a", "c.*", "c.>"], 1).await);
    }
    wait_metric(b.addr, "ringfan_subscriptions", 18, Duration::from_secs(5)).await;
    for (i, mut c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            let normal = CloseFrame {
                code: CloseCode::Normal,
                reason: "bye".into(),
            };
            bounded(10, "close", c.ws.close(Some(normal)))
                .await
                .unwrap();
            // The server answers the close.
            let (_, code) = c.read_to_close(10).await;
            assert_eq!(code, Some(1000));
        } else {
            drop(c); // TCP close, no close frame
        }
    }
    wait_metric(b.addr, "ringfan_subscriptions", 0, Duration::from_secs(5)).await;
    // Publishing now reaches no one.
    let deliveries = metric(b.addr, "ringfan_deliveries_total").await;
    assert_eq!(deliveries, 0);
    let mut p = Client::connect(b.addr).await;
    let mut id = 0;
    for t in ["c.a", "c.b", "c.b.c"] {
        publish(&mut p, &mut id, t, "1").await;
    }
    wait_metric(b.addr, "ringfan_publishes_total", 3, Duration::from_secs(5)).await;
    assert_eq!(metric(b.addr, "ringfan_deliveries_total").await, 0);
    // A new subscriber still works after all that churn.
    let mut s = Client::subscribed(b.addr, &["c.*"], 1).await;
    publish(&mut p, &mut id, "c.a", "2").await;
    let m = s.recv_msg().await;
    assert_eq!((m.topic.as_str(), m.seq), ("c.a", 2));
    let _ = bounded(10, "close", s.ws.send(Message::Close(None))).await;
}

/// Once a sub is acked, every message published after the ack reaches the
/// subscriber, whichever shards the subscriber, the publisher and the
/// topic's owner are on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_live_once_acked() {
    const ROUNDS: usize = 60;
    const SUBS: usize = 8;
    const PUBS: usize = 8;
    let b = start();
    let mut subs = Vec::new();
    for _ in 0..SUBS {
        subs.push(Client::connect(b.addr).await);
    }
    let mut pubs = Vec::new();
    for _ in 0..PUBS {
        pubs.push(Client::connect(b.addr).await);
    }
    let mut missed = Vec::new();
    for round in 0..ROUNDS {
        for (k, s) in subs.iter_mut().enumerate() {
            let topic = format!("live.{round}.{k}");
            s.sub(&[&topic], round as u64).await;
            // Publish right after the ack, from connections on every shard.
            for p in pubs.iter_mut() {
                p.send(pub_req(&topic, "1", None)).await;
            }
        }
        for (k, s) in subs.iter_mut().enumerate() {
            let mut seqs = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_millis(500), s.recv_msg()).await {
                    Ok(m) => {
                        seqs.push(m.seq);
                        if seqs.len() == PUBS {
                            assert_eq!(seqs, (1..=PUBS as u64).collect::<Vec<_>>());
                            break;
                        }
                    }
                    Err(_) => {
                        missed.push((round, k, seqs.clone()));
                        break;
                    }
                }
            }
        }
        if !missed.is_empty() {
            break;
        }
    }
    assert!(
        missed.is_empty(),
        "messages published after the sub's ack were lost: \
         (round, subscriber, seqs received) {missed:?}"
    );
}

/// A message published right after a subscriber's request was answered
/// reaches it promptly. The server's answer (an ack) is a small segment the
/// client's kernel acknowledges late (delayed ACK, ~40 ms on Linux, since the
/// client is in interactive mode); with Nagle's algorithm on the server's
/// socket the next small frame waits for that ACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]

async fn a_message_right_after_an_ack_is_not_held_back() {
    const ROUNDS: u64 = 11;
    let b = start();
    let mut s = Client::subscribed(b.addr, &["nagle.t"], 1).await;
    let mut p = Client::connect(b.addr).await;
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        s.sync(100 + round).await;
        let t0 = std::time::Instant::now();
        p.send(pub_req("nagle.t", "1", None)).await;
        let m = s.recv_msg().await;
        took.push(t0.elapsed());
        assert_eq!(m.seq, round + 1);
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} from publish to delivery (all: {took:?})"
    );
}
