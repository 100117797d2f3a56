//! Every RFC 6455 rule the connection enforces, one test each, plus the
//! property that splitting the byte stream anywhere changes nothing.

use super::*;
use crate::ws::frame::{client_frame, put_header, server_frame};
use proptest::prelude::*;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// An owned copy of what the connection produced, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>, Option<Vec<u8>>),
    Pong(Vec<u8>),
    Close(Option<u16>, String, Option<Vec<u8>>),
    Fail(u16, Option<Vec<u8>>),
}

fn own(e: Event<'_>) -> Ev {
    match e {
        Event::Message(m) => match m.kind {
            MessageKind::Text => Ev::Text(m.payload.to_vec()),
            MessageKind::Binary => Ev::Binary(m.payload.to_vec()),
        },
        Event::Ping { payload, pong } => Ev::Ping(payload.to_vec(), pong.map(|b| b.to_vec())),
        Event::Pong(p) => Ev::Pong(p.to_vec()),
        Event::Close { body, reply } => Ev::Close(
            body.code,
            body.reason.to_string(),
            reply.map(|b| b.to_vec()),
        ),
    }
}

/// Feed `chunks` as a runtime would: append to a pending buffer, decode
/// until incomplete, keep the unconsumed tail as the decoder left it.
fn drive(conn: &mut Connection, chunks: &[&[u8]]) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            match conn.read(&mut pending) {
                Ok(Read::Frame { consumed, event }) => {
                    if let Some(e) = event {
                        out.push(own(e));
                    }
                    pending.drain(..consumed);
                    if pending.is_empty() {
                        break;
                    }
                }
                Ok(Read::Incomplete { .. }) => break,
                Err(f) => {
                    out.push(Ev::Fail(f.error.code, f.close.map(|b| b.to_vec())));
                    return out;
                }
            }
        }
    }
    out
}

fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Ev> {
    drive(conn, &[bytes])
}

/// A client frame with full control over its header bits.
fn raw(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = Vec::new();
    put_header(&mut v, fin, OpCode::Binary, payload.len(), mask);
    v[0] = (if fin { 0x80 } else { 0 }) | (rsv << 4) | opcode;
    let start = v.len();
    v.extend_from_slice(payload);
    if let Some(m) = mask {
        crate::ws::mask::apply_mask(&mut v[start..], m, 0);
    }
    v
}

fn c(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw(fin, 0, opcode, payload, Some(MASK))
}

fn fail_code(evs: &[Ev]) -> Option<u16> {
    match evs.last() {
        Some(Ev::Fail(code, _)) => Some(*code),
        _ => None,
    }
}

/// The close frame we sent carries `code`.
fn assert_close_sent(evs: &[Ev], code: u16) {
    match evs.last() {
        Some(Ev::Fail(c, Some(frame))) => {
            assert_eq!(*c, code);
            assert_eq!(frame[0], 0x88, "server close, unmasked");
            assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), code);
        }
        other => panic!("expected failure with close {code}, got {other:?}"),
    }
}

#[test]
fn single_text_message_zero_copy() {
    let mut conn = Connection::server();
    let mut buf = c(true, 1, b"hello");
    let base = buf.as_ptr() as usize;
    match conn.read(&mut buf).unwrap() {
        Read::Frame {
            consumed: 11,
            event: Some(Event::Message(m)),
        } => {
            assert_eq!(m.payload, b"hello");
            assert_eq!(m.kind, MessageKind::Text);
            // The payload is a slice of the receive buffer itself.
            assert_eq!(m.payload.as_ptr() as usize, base + 6);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn binary_and_empty_messages() {
    let mut conn = Connection::server();
    let mut s = c(true, 2, &[0, 255, 7]);
    s.extend(c(true, 1, b""));
    s.extend(c(true, 2, b""));
    assert_eq!(
        feed(&mut conn, &s),
        vec![
            Ev::Binary(vec![0, 255, 7]),
            Ev::Text(vec![]),
            Ev::Binary(vec![])
        ]
    );
}

#[test]
fn fragments_are_assembled() {
    let mut conn = Connection::server();
    let mut s = c(false, 1, b"Hel");
    s.extend(c(false, 0, b""));
    s.extend(c(false, 0, b"lo, "));
    s.extend(c(true, 0, b"world"));
    assert_eq!(
        feed(&mut conn, &s),
        vec![Ev::Text(b"Hello, world".to_vec())]
    );
    // The connection is ready for the next message.
    assert_eq!(
        feed(&mut conn, &c(true, 2, b"x")),
        vec![Ev::Binary(b"x".to_vec())]
    );
}

#[test]
fn a_large_assembly_buffer_is_freed_after_its_message() {
    // One 256 KiB message in four fragments: the buffer that assembled it
    // must not stay allocated for the connection's life.
    let mut conn = Connection::server();
    let part = vec![b'a'; 64 * 1024];
    let mut s = c(false, 2, &part);
    s.extend(c(false, 0, &part));
    s.extend(c(false, 0, &part));
    assert_eq!(feed(&mut conn, &s), vec![]);
    assert_eq!(conn.buffered(), 192 * 1024);
    let mut last = c(true, 0, &part);
    match conn.read(&mut last) {
        Ok(Read::Frame {
            event: Some(Event::Message(m)),
            ..
        }) => assert_eq!(m.payload.len(), 256 * 1024),
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.buffered(), 0, "a delivered message is not held");
    // The runtime releases after its read loop, whether or not another
    // frame follows.
    conn.release_delivered();
    assert_eq!(conn.assembled.as_ref().map_or(0, |a| a.capacity()), 0);
    // A small fragmented message keeps its buffer for reuse.
    let mut s = c(false, 1, b"ab");
    s.extend(c(true, 0, b"cd"));
    assert_eq!(feed(&mut conn, &s), vec![Ev::Text(b"abcd".to_vec())]);
    conn.release_delivered();
    assert!(conn.assembled.as_ref().map_or(0, |a| a.capacity()) > 0);
    // And the next read frees a large one too (a caller that does not
    // release).
    let mut s = c(false, 2, &part);
    s.extend(c(true, 0, &part));
    assert_eq!(feed(&mut conn, &s).len(), 1);
    assert_eq!(feed(&mut conn, &c(true, 2, b"x")).len(), 1);
    assert!(conn.assembled.as_ref().map_or(0, |a| a.capacity()) <= KEEP_ASSEMBLED);
}

#[test]
fn control_frames_between_fragments() {
    let mut conn = Connection::server();
    let mut s = c(false, 1, b"frag1 ");
    s.extend(c(true, 9, b"ping!"));
    s.extend(c(true, 10, b"unsolicited"));
    s.extend(c(true, 0, b"frag2"));
    let evs = feed(&mut conn, &s);
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[1], Ev::Pong(b"unsolicited".to_vec()));
    assert_eq!(evs[2], Ev::Text(b"frag1 frag2".to_vec()));
    match &evs[0] {
        Ev::Ping(p, Some(pong)) => {
            assert_eq!(p, b"ping!");
            // Pong: FIN + opcode 0xA, unmasked, same payload.
            assert_eq!(pong, &server_frame(OpCode::Pong, b"ping!").to_vec());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ping_with_125_bytes_is_answered() {
    let mut conn = Connection::server();
    let payload = vec![0xfe; 125];
    let evs = feed(&mut conn, &c(true, 9, &payload));
    assert_eq!(
        evs,
        vec![Ev::Ping(
            payload.clone(),
            Some(server_frame(OpCode::Pong, &payload).to_vec())
        )]
    );
}

#[test]
fn control_payload_over_125_is_1002() {
    for op in [8u8, 9, 10] {
        let mut conn = Connection::server();
        assert_close_sent(&feed(&mut conn, &c(true, op, &[b'a'; 126])), 1002);
    }
}

#[test]
fn fragmented_control_is_1002() {
    for op in [8u8, 9, 10] {
        let mut conn = Connection::server();
        assert_close_sent(&feed(&mut conn, &c(false, op, b"x")), 1002);
    }
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    for rsv in 1..8u8 {
        let mut conn = Connection::server();
        let evs = feed(&mut conn, &raw(true, rsv, 1, b"x", Some(MASK)));
        assert_close_sent(&evs, 1002);
    }
}

#[test]
fn unknown_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
        let mut conn = Connection::server();
        assert_close_sent(&feed(&mut conn, &c(true, op, b"")), 1002);
    }
}

#[test]
fn unmasked_client_frame_is_1002() {
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &raw(true, 0, 1, b"hi", None)), 1002);
}

#[test]
fn masked_server_frame_is_1002_for_client() {
    let mut conn = Connection::client();
    let evs = feed(&mut conn, &c(true, 1, b"hi"));
    assert_eq!(fail_code(&evs), Some(1002));
    // The client's close frame is masked.
    match evs.last() {
        Some(Ev::Fail(_, Some(f))) => assert_eq!(f[1] & 0x80, 0x80),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_role_reads_unmasked_frames() {
    let mut conn = Connection::client();
    let mut s = server_frame(OpCode::Text, b"from server").to_vec();
    s.extend_from_slice(&server_frame(OpCode::Ping, b"p"));
    let evs = feed(&mut conn, &s);
    assert_eq!(evs[0], Ev::Text(b"from server".to_vec()));
    match &evs[1] {
        // The client's pong is masked.
        Ev::Ping(_, Some(pong)) => assert_eq!((pong[0], pong[1] & 0x80), (0x8A, 0x80)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn continuation_without_start_is_1002() {
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &c(true, 0, b"x")), 1002);
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &c(false, 0, b"x")), 1002);
}

#[test]
fn new_message_inside_fragmented_is_1002() {
    for op in [1u8, 2] {
        let mut conn = Connection::server();
        let mut s = c(false, 1, b"a");
        s.extend(c(true, op, b"b"));
        assert_close_sent(&feed(&mut conn, &s), 1002);
    }
}

#[test]
fn length_with_top_bit_is_1002() {
    let mut conn = Connection::server();
    let mut s = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
    s.extend_from_slice(&MASK);
    assert_close_sent(&feed(&mut conn, &s), 1002);
}

#[test]
fn too_big_single_frame_is_1009_from_header_alone() {
    let mut conn = Connection::new(Role::Server, 1000);
    // Only the header arrives: the verdict needs nothing more, so nothing
    // of the payload is ever buffered.
    let mut hdr = Vec::new();
    put_header(&mut hdr, true, OpCode::Binary, 1001, Some(MASK));
    assert_close_sent(&feed(&mut conn, &hdr), 1009);
    // Exactly the limit is fine.
    let mut conn = Connection::new(Role::Server, 1000);
    assert_eq!(
        feed(&mut conn, &c(true, 2, &[0; 1000])),
        vec![Ev::Binary(vec![0; 1000])]
    );
}

#[test]
fn too_big_fragmented_message_is_1009_before_buffering_past_limit() {
    let mut conn = Connection::new(Role::Server, 1000);
    let mut s = c(false, 2, &[1; 600]);
    let mut hdr = Vec::new();
    put_header(&mut hdr, false, OpCode::Continuation, 401, Some(MASK));
    s.extend(hdr);
    assert_close_sent(&feed(&mut conn, &s), 1009);
    assert!(conn.assembled_len() <= 1000);
}

#[test]
fn invalid_utf8_is_1007() {
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &c(true, 1, &[b'a', 0xff, b'b'])), 1007);
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partial_frame() {
    // A 10,000-byte text frame whose 10th byte is invalid: the failure
    // comes as soon as that byte arrives, not when the frame completes.
    let mut payload = vec![b'a'; 10_000];
    payload[10] = 0xc0;
    let frame = c(true, 1, &payload);
    let mut conn = Connection::server();
    let evs = drive(&mut conn, &[&frame[..20]]);
    assert_close_sent(&evs, 1007);
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    let mut conn = Connection::server();
    let mut s = c(false, 1, "κόσμε".as_bytes());
    s.extend(c(false, 0, &[0xce, 0xbc, 0xed])); // ok so far
    s.extend(c(false, 0, &[0xa0, 0x80])); // surrogate: invalid now
    assert_close_sent(&feed(&mut conn, &s), 1007);
}

#[test]
fn code_point_split_across_fragments_is_fine() {
    let mut conn = Connection::server();
    let euro = "€".as_bytes(); // e2 82 ac
    let mut s = c(false, 1, &euro[..1]);
    s.extend(c(false, 0, &euro[1..2]));
    s.extend(c(true, 0, &euro[2..]));
    assert_eq!(feed(&mut conn, &s), vec![Ev::Text(euro.to_vec())]);
}

#[test]
fn truncated_code_point_at_message_end_is_1007() {
    let mut conn = Connection::server();
    let mut s = c(false, 1, b"ok");
    s.extend(c(true, 0, &[0xe2, 0x82]));
    assert_close_sent(&feed(&mut conn, &s), 1007);
}

#[test]
fn binary_is_not_utf8_checked() {
    let mut conn = Connection::server();
    assert_eq!(
        feed(&mut conn, &c(true, 2, &[0xff, 0xc0])),
        vec![Ev::Binary(vec![0xff, 0xc0])]
    );
}

#[test]
fn close_echoes_code_and_finishes() {
    let mut conn = Connection::server();
    let evs = feed(&mut conn, &c(true, 8, b"\x03\xe8bye"));
    assert_eq!(
        evs,
        vec![Ev::Close(
            Some(1000),
            "bye".into(),
            Some(vec![0x88, 2, 0x03, 0xe8])
        )]
    );
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.handshake_closed(), "the peer's close, echoed");
    // Anything after the close handshake is ignored.
    assert_eq!(feed(&mut conn, &c(true, 1, b"late")), vec![]);
}

#[test]
fn empty_close_gets_empty_close() {
    let mut conn = Connection::server();
    assert_eq!(
        feed(&mut conn, &c(true, 8, b"")),
        vec![Ev::Close(None, String::new(), Some(vec![0x88, 0]))]
    );
}

#[test]
fn close_with_one_byte_is_1002() {
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &c(true, 8, b"\x03")), 1002);
    // A failure, not a handshake: the transport is half-closed and
    // drained before it closes (unread input would turn it into a reset).
    assert_eq!(conn.state(), State::Closed);
    assert!(!conn.handshake_closed());
}

#[test]
fn close_with_invalid_code_is_1002() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
    ] {
        let mut conn = Connection::server();
        let evs = feed(&mut conn, &c(true, 8, &code.to_be_bytes()));
        assert_close_sent(&evs, 1002);
    }
}

#[test]
fn close_with_valid_codes_is_echoed() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let mut conn = Connection::server();
        let evs = feed(&mut conn, &c(true, 8, &code.to_be_bytes()));
        let mut want = vec![0x88, 2];
        want.extend_from_slice(&code.to_be_bytes());
        assert_eq!(evs, vec![Ev::Close(Some(code), String::new(), Some(want))]);
    }
}

#[test]
fn close_reason_invalid_utf8_is_1007() {
    let mut conn = Connection::server();
    assert_close_sent(&feed(&mut conn, &c(true, 8, b"\x03\xe8\xff\xfe")), 1007);
}

#[test]
fn server_initiated_close_handshake() {
    let mut conn = Connection::server();
    let frame = conn.close(1001, "going away").unwrap();
    assert_eq!(&frame[..4], &[0x88, 12, 0x03, 0xe9]);
    assert_eq!(conn.state(), State::CloseSent);
    assert_eq!(conn.close(1000, "again"), None);
    assert!(
        !conn.handshake_closed(),
        "ours sent, the peer's not read yet"
    );
    // Data still arriving is checked but not delivered; pings get no pong.
    let mut s = c(true, 1, b"in flight");
    s.extend(c(true, 9, b"p"));
    s.extend(c(true, 8, b"\x03\xe9"));
    assert_eq!(
        feed(&mut conn, &s),
        vec![
            Ev::Ping(b"p".to_vec(), None),
            Ev::Close(Some(1001), String::new(), None)
        ]
    );
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.handshake_closed());
}

#[test]
fn incomplete_reports_frame_length() {
    let mut conn = Connection::server();
    let frame = c(true, 2, &[7; 300]);
    let mut part = frame[..1].to_vec();
    assert_eq!(
        conn.read(&mut part),
        Ok(Read::Incomplete { frame_len: None })
    );
    let mut part = frame[..10].to_vec();
    assert_eq!(
        conn.read(&mut part),
        Ok(Read::Incomplete {
            frame_len: Some(frame.len())
        })
    );
}

#[test]
fn client_frames_decode_on_server() {
    let mut conn = Connection::server();
    let mut s = client_frame(OpCode::Text, b"abc", [9, 8, 7, 6]).to_vec();
    s.extend_from_slice(&Connection::client().encode(OpCode::Binary, &[1, 2, 3]));
    assert_eq!(
        feed(&mut conn, &s),
        vec![Ev::Text(b"abc".to_vec()), Ev::Binary(vec![1, 2, 3])]
    );
}

// ---------- property: splitting the stream anywhere changes nothing ----------

#[derive(Debug, Clone)]
enum Msg {
    Data {
        text: bool,
        payload: Vec<u8>,
        frags: Vec<usize>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn msg() -> impl Strategy<Value = Msg> {
    let text = ".{0,300}".prop_map(|s: String| s.into_bytes());
    let bin = proptest::collection::vec(any::<u8>(), 0..2000);
    prop_oneof![
        4 => (any::<bool>(), text, proptest::collection::vec(0usize..400, 0..4))
            .prop_map(|(_, payload, frags)| Msg::Data { text: true, payload, frags }),
        3 => (bin, proptest::collection::vec(0usize..2000, 0..4))
            .prop_map(|(payload, frags)| Msg::Data { text: false, payload, frags }),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Msg::Ping),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Msg::Pong),
    ]
}

/// Encode messages as a client would, fragmenting at the given points.
/// Pings and pongs are interleaved inside a fragmented message's frames.
fn encode(msgs: &[Msg], masks: &mut impl FnMut() -> [u8; 4]) -> (Vec<u8>, Vec<Ev>) {
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut held_controls: Vec<Vec<u8>> = Vec::new();
    for m in msgs {
        match m {
            Msg::Data {
                text,
                payload,
                frags,
            } => {
                let mut cuts: Vec<usize> = frags.iter().map(|&f| f.min(payload.len())).collect();
                cuts.sort_unstable();
                cuts.push(payload.len());
                let mut start = 0;
                let n = cuts.len();
                for (i, &cut) in cuts.iter().enumerate() {
                    let op = if i > 0 {
                        0
                    } else if *text {
                        1
                    } else {
                        2
                    };
                    wire.extend(raw(i + 1 == n, 0, op, &payload[start..cut], Some(masks())));
                    // Control frames land between fragments.
                    if i + 1 < n {
                        if let Some(ctl) = held_controls.pop() {
                            wire.extend(ctl);
                        }
                    }
                    start = cut;
                }
                want.push(if *text {
                    Ev::Text(payload.clone())
                } else {
                    Ev::Binary(payload.clone())
                });
            }
            Msg::Ping(p) => {
                wire.extend(raw(true, 0, 9, p, Some(masks())));
                want.push(Ev::Ping(
                    p.clone(),
                    Some(server_frame(OpCode::Pong, p).to_vec()),
                ));
            }
            Msg::Pong(p) => {
                held_controls.push(raw(true, 0, 10, p, Some(masks())));
                want.push(Ev::Pong(p.clone()));
            }
        }
    }
    // Pongs not placed between fragments go at the end.
    for ctl in held_controls {
        wire.extend(ctl);
    }
    (wire, want)
}

/// `wire` cut at the (sorted) points the indices pick.
fn split_at<'a>(wire: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for p in points {
        chunks.push(&wire[start..p]);
        start = p;
    }
    chunks.push(&wire[start..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_splits_decode_like_whole(msgs in proptest::collection::vec(msg(), 1..12),
                                        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
                                        seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (wire, want) = encode(&msgs, &mut || rng.u32(..).to_ne_bytes());
        let mut whole_conn = Connection::server();
        let whole = feed(&mut whole_conn, &wire);
        // Same multiset of events as encoded (pongs may be reordered by
        // placement), and no failure.
        let mut a = whole.clone();
        let mut b = want.clone();
        a.sort_by_key(|e| format!("{e:?}"));
        b.sort_by_key(|e| format!("{e:?}"));
        prop_assert_eq!(a, b);
        // Data messages in their original order.
        let data = |v: &[Ev]| v.iter().filter(|e| matches!(e, Ev::Text(_) | Ev::Binary(_))).cloned().collect::<Vec<_>>();
        prop_assert_eq!(data(&whole), data(&want));

        let chunks = split_at(&wire, &cuts);
        let mut split_conn = Connection::server();
        let split = drive(&mut split_conn, &chunks);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn byte_at_a_time_equals_whole(msgs in proptest::collection::vec(msg(), 1..4), seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (wire, _) = encode(&msgs, &mut || rng.u32(..).to_ne_bytes());
        let whole = feed(&mut Connection::server(), &wire);
        let chunks: Vec<&[u8]> = wire.chunks(1).collect();
        prop_assert_eq!(drive(&mut Connection::server(), &chunks), whole);
    }

    /// Corrupting a valid stream anywhere never panics, and a failure is
    /// the same wherever the stream is split.
    #[test]
    fn corrupted_streams_fail_identically(msgs in proptest::collection::vec(msg(), 1..6),
                                          flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                                          cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
                                          seed in any::<u64>()) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut wire, _) = encode(&msgs, &mut || rng.u32(..).to_ne_bytes());
        for (i, x) in flips {
            let i = i.index(wire.len());
            wire[i] ^= x;
        }
        let whole = feed(&mut Connection::new(Role::Server, 4096), &wire);
        let chunks = split_at(&wire, &cuts);
        let split = drive(&mut Connection::new(Role::Server, 4096), &chunks);
        prop_assert_eq!(split, whole);
    }
}
