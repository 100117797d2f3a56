//! The events as a subscriber sees them: JSON lines with their fields,
//! the rate limit's summary, and text that a client's strings cannot
//! break into forged lines.

use super::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything written, shared with the test.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        self.clone()
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Run `f` with a JSON subscriber (as `--log-format json` sets up) on
/// this thread; its lines, parsed.
fn json_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
    let sink = Sink::default();
    let sub = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(sink.clone())
        .finish();
    tracing::subscriber::with_default(sub, f);
    sink.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn who(user: Option<&str>) -> Who<'_> {
    Who {
        conn: Some(ConnLabel {
            shard: 1,
            key: 17,
            gen: 3,
        }),
        peer: Some("10.1.2.3:5555".parse().unwrap()),
        user,
    }
}

#[test]
fn json_lines_carry_the_fields() {
    let lines = json_lines(|| {
        let resp = crate::ws::http::error(404, &[], "no such endpoint");
        handshake_refused(&who(None), 404, &resp);
        auth_failed(&who(Some("alice")), "handshake", "expired", "expired");
        slow_consumer(&who(Some("bob")), "disconnect", Some(1 << 20));
        policy_close(&Who::default(), 4001, "authentication required");
    });
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let l = &lines[0];
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["target"], "ringfan::handshake");
    assert_eq!(l["event"], "handshake_refused");
    assert_eq!(l["message"], "handshake refused");
    assert_eq!(l["conn"], "1:17:3");
    assert_eq!(l["peer"], "10.1.2.3:5555");
    assert_eq!(l["status"], 404);
    assert_eq!(l["reason"], "no such endpoint");
    assert!(l.get("user").is_none(), "unknown: absent, not null");
    let l = &lines[1];
    assert_eq!(l["level"], "WARN");
    assert_eq!(
        (&l["event"], &l["user"]),
        (&"auth_failed".into(), &"alice".into())
    );
    assert_eq!(
        (&l["stage"], &l["reason"]),
        (&"handshake".into(), &"expired".into())
    );
    let l = &lines[2];
    assert_eq!(
        (&l["event"], &l["user"]),
        (&"slow_consumer".into(), &"bob".into())
    );
    assert_eq!(
        (&l["queued"], &l["code"]),
        (&(1 << 20).into(), &1008.into())
    );
    let l = &lines[3];
    assert_eq!(
        (&l["event"], &l["code"]),
        (&"policy_close".into(), &4001.into())
    );
    assert!(l.get("conn").is_none() && l.get("peer").is_none());
}

#[test]
fn a_flood_is_cut_to_the_burst_and_counted() {
    let lines = json_lines(|| {
        let resp = crate::ws::http::error(400, &[], "bad request");
        for _ in 0..1000 {
            handshake_refused(&who(None), 400, &resp);
        }
        // The shard stops: what was left out is said.
        drain_began(1, 0);
        drain_ended(1);
    });
    let refused = lines
        .iter()
        .filter(|l| l["event"] == "handshake_refused")
        .count();
    let summary: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "log_suppressed")
        .collect();
    // The loop takes far less than the 200 ms one more line would need.
    assert_eq!(refused, limit::RATE.burst as usize, "{lines:#?}");
    assert_eq!(summary.len(), 1, "{lines:#?}");
    assert_eq!(summary[0]["kind"], "handshake_refused");
    assert_eq!(summary[0]["suppressed"], 1000 - refused as u64);
    assert_eq!(summary[0]["shard"], 1);
}

#[test]
fn text_lines_escape_what_a_client_chose() {
    let sink = Sink::default();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(sink.clone())
        .finish();
    tracing::subscriber::with_default(sub, || {
        let forged = "mallory\n2026-01-01T00:00:00Z  INFO ringfan: all is well";
        auth_failed(&who(Some(forged)), "auth_op", "expired", "expired");
    });
    let text = sink.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(r#"user="mallory\n2026"#), "{text}");
    assert!(text.contains("conn=1:17:3 peer=10.1.2.3:5555"), "{text}");
}

#[test]
fn without_a_subscriber_nothing_is_counted() {
    // The load generator sets none: no limiter work, no clock.
    for _ in 0..100 {
        handshake_refused(&who(None), 400, b"");
    }
    let mut pending = false;
    limit::due(|_, _| pending = true);
    assert!(!pending);
}

#[test]
fn the_reason_is_the_body_s_first_line_bounded() {
    let resp = crate::ws::http::error(401, &[], "invalid token: expired");
    assert_eq!(response_reason(&resp), "invalid token: expired");
    assert_eq!(response_reason(b"HTTP/1.1 400 Bad\r\n"), "");
    let long = crate::ws::http::error(400, &[], &"x".repeat(1000));
    assert_eq!(response_reason(&long).len(), 200);
}
