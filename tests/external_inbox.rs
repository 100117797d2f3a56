//! Mail from threads outside the runtime (`runtime::external`) through a
//! real server: plain std threads post to both shards while they sleep in
//! `io_uring_enter`. The tick is set to a minute, so a message reaches a
//! sleeping shard only if the eventfd's poll wakes it.

use ringfan::runtime::{inboxes, App, Config, ConnId, ExternalSender, Io, Server};
use ringfan::ws::Message;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (the shard it was sent to, sender, sequence number within that sender's
/// mail to that shard)
type Mail = (usize, u64, u64);

#[derive(Default)]
struct Seen {
    /// Per shard, what arrived, in order.
    got: Vec<Mutex<Vec<(u64, u64)>>>,
    /// Mail that came with the wrong `from`, or to the wrong shard.
    wrong: AtomicUsize,
    /// The number of messages that arrived, all shards together.
    total: AtomicUsize,
    /// Shard 0 holds its first message until `release` (the full-queue
    /// test): `blocked` says it is holding.
    hold_first: bool,
    blocked: AtomicBool,
    release: AtomicBool,
}

impl Seen {
    fn new(shards: usize, hold_first: bool) -> Arc<Self> {
        Arc::new(Seen {
            got: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
            hold_first,
            ..Default::default()
        })
    }

    /// Wait (at most `secs`) until `n` messages arrived in all.
    fn wait_for(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.total.load(SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived within {secs} s",
                self.total.load(SeqCst)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

struct Recorder(Arc<Seen>);

impl App for Recorder {
    type Mail = Mail;

    fn message(&mut self, _io: &mut Io<'_, Mail>, _conn: ConnId, _msg: Message<'_>) {}

    fn closed(&mut self, _io: &mut Io<'_, Mail>, _conn: ConnId) {}

    fn mail(&mut self, io: &mut Io<'_, Mail>, from: usize, (to, sender, seq): Mail) {
        if !io.is_external(from) || from != io.shards() || to != io.shard() {
            self.0.wrong.fetch_add(1, SeqCst);
        }
        let me = io.shard();
        let first = {
            let mut got = self.0.got[me].lock().unwrap();
            got.push((sender, seq));
            got.len() == 1
        };
        if self.0.hold_first && me == 0 && first {
            self.0.blocked.store(true, SeqCst);
            while !self.0.release.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.0.total.fetch_add(1, SeqCst);
    }
}

/// A client-only runtime (no listener) of `shards` shards with a one-minute
/// tick, fed by external inboxes of `capacity` each.
fn start(shards: usize, capacity: usize, seen: &Arc<Seen>) -> (Server, Vec<ExternalSender<Mail>>) {
    let (senders, boxes) = inboxes::<Mail>(shards, capacity).expect("eventfds");
    let config = Config {
        listen: None,
        shards,
        pin: false,
        tick: Duration::from_secs(60),
        ..Config::default()
    };
    let seen = seen.clone();
    let server = Server::start_with_inboxes(config, boxes, move |_| Recorder(seen.clone()))
        .expect("server starts");
    (server, senders)
}

/// Send, retrying while the queue is full (the shard is behind).
fn send_until_taken(tx: &ExternalSender<Mail>, mut m: Mail) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(back) = tx.send(m) {
        assert!(
            Instant::now() < deadline,
            "shard {} never took mail",
            tx.shard()
        );
        m = back;
        std::thread::yield_now();
    }
}

#[test]
fn mail_from_outside_wakes_sleeping_shards_in_order() {
    const SENDERS: u64 = 2;
    const PER_SHARD: u64 = 5_000; // per sender: 20,000 messages in all
    const BURST: u64 = 250;
    let seen = Seen::new(2, false);
    let (_server, senders) = start(2, 256, &seen);
    // Let both shards go to sleep in io_uring_enter.
    std::thread::sleep(Duration::from_millis(300));
    let threads: Vec<_> = (0..SENDERS)
        .map(|s| {
            let senders = senders.clone();
            std::thread::spawn(move || {
                for i in 0..PER_SHARD {
                    for tx in &senders {
                        send_until_taken(tx, (tx.shard(), s, i));
                    }
                    if i % BURST == BURST - 1 {
                        // Bursts with pauses: the shards fall asleep
                        // between them, and each burst must wake them.
                        std::thread::sleep(Duration::from_millis(3));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender thread");
    }
    let all = (2 * SENDERS * PER_SHARD) as usize;
    seen.wait_for(all, 30);
    assert_eq!(
        seen.wrong.load(SeqCst),
        0,
        "mail with the wrong from or shard"
    );
    for (shard, got) in seen.got.iter().enumerate() {
        let got = got.lock().unwrap();
        assert_eq!(got.len() as u64, SENDERS * PER_SHARD, "shard {shard}");
        for s in 0..SENDERS {
            let seqs: Vec<u64> = got.iter().filter(|m| m.0 == s).map(|m| m.1).collect();
            assert!(
                seqs.iter().copied().eq(0..PER_SHARD),
                "shard {shard}, sender {s}: out of order or missing"
            );
        }
    }

    // Idle again, then one message each: asleep for longer than any burst,
    // woken only by the eventfd (the tick is a minute away).
    std::thread::sleep(Duration::from_millis(300));
    for tx in &senders {
        assert_eq!(tx.send((tx.shard(), 9, 0)), Ok(()));
    }
    seen.wait_for(all + 2, 10);
    assert!(senders.iter().all(|tx| !tx.is_closed()));
}

#[test]
fn a_full_queue_hands_the_message_back() {
    const CAPACITY: u64 = 8;
    let seen = Seen::new(2, true);
    let (_server, senders) = start(2, CAPACITY as usize, &seen);
    let tx = &senders[0];
    // Shard 0 takes the first message and holds it: nothing more leaves
    // its queue.
    tx.send((0, 0, 0)).expect("empty queue");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.blocked.load(SeqCst) {
        assert!(Instant::now() < deadline, "shard 0 never took its mail");
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 1..=CAPACITY {
        assert_eq!(tx.send((0, 0, i)), Ok(()), "message {i} fits");
    }
    assert_eq!(tx.queued(), CAPACITY as usize);
    let refused = (0, 0, CAPACITY + 1);
    assert_eq!(
        tx.send(refused),
        Err(refused),
        "full: the message comes back"
    );
    // Shard 1's queue is its own.
    assert_eq!(senders[1].send((1, 0, 0)), Ok(()));
    seen.wait_for(1, 10);

    seen.release.store(true, SeqCst);
    seen.wait_for(1 + CAPACITY as usize + 1, 10);
    // The refused message, sent again, goes through.
    send_until_taken(tx, refused);
    seen.wait_for(CAPACITY as usize + 3, 10);
    let got = seen.got[0].lock().unwrap();
    assert!(
        got.iter().map(|m| m.1).eq(0..=CAPACITY + 1),
        "in order, none lost: {got:?}"
    );
    assert_eq!(seen.wrong.load(SeqCst), 0);
}

#[test]
fn one_inbox_per_shard_or_no_start() {
    let (_senders, boxes) = inboxes::<Mail>(1, 4).expect("eventfd");
    let config = Config {
        listen: None,
        shards: 2,
        pin: false,
        ..Config::default()
    };
    let seen = Seen::new(2, false);
    let e = Server::start_with_inboxes(config, boxes, move |_| Recorder(seen.clone()))
        .err()
        .expect("refused");
    assert!(e.0.contains("1 external inboxes for 2 shards"), "{}", e.0);
}
