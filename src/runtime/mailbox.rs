//! Cross-shard mail: one single-producer single-consumer ring per ordered
//! pair of shards (no locks, no contention), and a doorbell rung only when
//! the receiving shard may be asleep in `io_uring_enter`.
//!
//! The doorbell protocol avoids lost wake-ups without waking busy shards:
//! a shard about to sleep sets `sleeping`, then looks at its inboxes once
//! more; a sender publishes its mail, then looks at `sleeping`. Both sides
//! use SeqCst, so at least one of them sees the other.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, Ordering::SeqCst};
use std::sync::Arc;

/// What other shards know of a shard.
#[derive(Debug)]
pub struct Peer {
    pub ring_fd: AtomicI32,
    pub sleeping: AtomicBool,
}

pub struct Mailbox<M> {
    me: usize,
    tx: Vec<Option<rtrb::Producer<M>>>,
    rx: Vec<Option<rtrb::Consumer<M>>>,
    /// Mail that did not fit in a full ring; retried every turn, in order.
    backlog: Vec<VecDeque<M>>,
    /// Shards posted to since the last `bells`.
    posted: Vec<bool>,
    peers: Arc<[Peer]>,
}

/// Mailboxes for `n` shards, each ring holding `capacity` messages.
pub fn mesh<M>(n: usize, capacity: usize) -> Vec<Mailbox<M>> {
    let peers: Arc<[Peer]> = (0..n)
        .map(|_| Peer {
            ring_fd: AtomicI32::new(-1),
            sleeping: AtomicBool::new(false),
        })
        .collect();
    let mut boxes: Vec<Mailbox<M>> = (0..n)
        .map(|me| Mailbox {
            me,
            tx: (0..n).map(|_| None).collect(),
            rx: (0..n).map(|_| None).collect(),
            backlog: (0..n).map(|_| VecDeque::new()).collect(),
            posted: vec![false; n],
            peers: peers.clone(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (p, c) = rtrb::RingBuffer::new(capacity);
                boxes[from].tx[to] = Some(p);
                boxes[to].rx[from] = Some(c);
            }
        }
    }
    boxes
}

impl<M> Mailbox<M> {
    pub fn me(&self) -> usize {
        self.me
    }

    pub fn shards(&self) -> usize {
        self.peers.len()
    }

    pub fn peers(&self) -> &Arc<[Peer]> {
        &self.peers
    }

    /// Queue `mail` for shard `to` (never to ourselves).
    pub fn post(&mut self, to: usize, mail: M) {
        if !matches!(self.tx.get(to), Some(Some(_))) {
            return;
        }
        // What does not fit now waits, in order, behind older mail.
        if let Err(m) = self.try_post(to, mail) {
            self.posted[to] = true;
            self.backlog[to].push_back(m);
        }
    }

    /// Queue `mail` for shard `to` only if it fits in the ring now (and
    /// nothing older waits in the backlog, which keeps mail in order).
    /// For mail that may be refused or shed: the backlog behind `post` has
    /// no bound, so a shard that falls behind must not be fed through it.
    pub fn try_post(&mut self, to: usize, mail: M) -> Result<(), M> {
        let Some(Some(p)) = self.tx.get_mut(to) else {
            return Err(mail);
        };
        if !self.backlog[to].is_empty() {
            return Err(mail);
        }
        match p.push(mail) {
            Ok(()) => {
                self.posted[to] = true;
                Ok(())
            }
            Err(rtrb::PushError::Full(m)) => Err(m),
        }
    }

    /// Does mail for `to` wait in the backlog (its ring was full)?
    pub fn backlogged(&self, to: usize) -> bool {
        self.backlog.get(to).is_some_and(|b| !b.is_empty())
    }

    /// Move backlogged mail into rings that have room again.
    pub fn retry_backlog(&mut self) -> bool {
        let mut left = false;
        for to in 0..self.backlog.len() {
            let Some(p) = self.tx[to].as_mut() else {
                continue;
            };
            while let Some(m) = self.backlog[to].pop_front() {
                match p.push(m) {
                    Ok(()) => self.posted[to] = true,
                    Err(rtrb::PushError::Full(m)) => {
                        self.backlog[to].push_front(m);
                        break;
                    }
                }
            }
            left |= !self.backlog[to].is_empty();
        }
        left
    }

    /// Shards that were posted to and may be asleep: ring their doorbells.
    pub fn bells(&mut self, mut ring: impl FnMut(usize, i32)) {
        if !self.posted.iter().any(|&p| p) {
            return;
        }
        fence(SeqCst);
        for (to, posted) in self.posted.iter_mut().enumerate() {
            if std::mem::take(posted) && self.peers[to].sleeping.load(SeqCst) {
                ring(to, self.peers[to].ring_fd.load(SeqCst));
            }
        }
    }

    /// Take every message waiting for us, oldest first per sender.
    pub fn drain(&mut self, mut f: impl FnMut(usize, M)) -> usize {
        let mut n = 0;
        for (from, c) in self.rx.iter_mut().enumerate() {
            if let Some(c) = c {
                // Bounded by what is there now, so a busy sender cannot keep
                // us here forever.
                for _ in 0..c.slots() {
                    match c.pop() {
                        Ok(m) => {
                            f(from, m);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        n
    }

    fn has_mail(&self) -> bool {
        self.rx.iter().flatten().any(|c| !c.is_empty())
    }

    /// Announce that we are about to sleep. False (and still awake) if mail
    /// arrived meanwhile; then do not sleep.
    pub fn prepare_sleep(&self) -> bool {
        let me = &self.peers[self.me];
        me.sleeping.store(true, SeqCst);
        fence(SeqCst);
        if self.has_mail() {
            me.sleeping.store(false, SeqCst);
            return false;
        }
        true
    }

    pub fn woke(&self) {
        self.peers[self.me].sleeping.store(false, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_in_order_with_backlog() {
        let mut m = mesh::<u32>(3, 4);
        let (a, rest) = m.split_at_mut(1);
        for i in 0..10 {
            a[0].post(2, i);
        }
        a[0].post(0, 99); // to ourselves: ignored
        let mut got = Vec::new();
        while got.len() < 10 {
            rest[1].drain(|from, v| {
                assert_eq!(from, 0);
                got.push(v)
            });
            a[0].retry_backlog();
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(rest[0].drain(|_, _| panic!("shard 1 got mail")), 0);
    }

    #[test]
    fn try_post_refuses_when_full_or_behind_the_backlog() {
        let mut m = mesh::<u32>(2, 2);
        let (a, b) = m.split_at_mut(1);
        assert_eq!(a[0].try_post(1, 1), Ok(()));
        assert_eq!(a[0].try_post(1, 2), Ok(()));
        assert_eq!(a[0].try_post(1, 3), Err(3), "ring full");
        a[0].post(1, 4); // control mail still queues, in the backlog
        assert!(a[0].backlogged(1) && !a[0].backlogged(0));
        let mut got = Vec::new();
        b[0].drain(|_, v| got.push(v));
        assert_eq!(got, [1, 2]);
        // The ring has room, but older mail waits: refusing keeps order.
        assert_eq!(a[0].try_post(1, 5), Err(5));
        assert!(!a[0].retry_backlog());
        assert!(!a[0].backlogged(1));
        assert_eq!(a[0].try_post(1, 6), Ok(()));
        b[0].drain(|_, v| got.push(v));
        assert_eq!(got, [1, 2, 4, 6]);
        assert_eq!(a[0].try_post(0, 7), Err(7), "no ring to ourselves");
    }

    #[test]
    fn doorbell_only_for_sleepers() {
        let mut m = mesh::<u8>(2, 8);
        m[1].peers()[1].ring_fd.store(42, SeqCst);
        m[0].post(1, 1);
        let mut rung = Vec::new();
        m[0].bells(|to, fd| rung.push((to, fd)));
        assert!(rung.is_empty(), "awake shard was rung");
        // Shard 1 has mail: it must refuse to sleep.
        assert!(!m[1].prepare_sleep());
        m[1].drain(|_, _| {});
        assert!(m[1].prepare_sleep());
        m[0].post(1, 2);
        m[0].bells(|to, fd| rung.push((to, fd)));
        assert_eq!(rung, vec![(1, 42)]);
        m[1].woke();
    }

    #[test]
    fn threads_never_lose_a_wakeup() {
        // Shard 1 sleeps on a condition variable standing in for
        // io_uring_enter; shard 0 posts and rings. Every message must be
        // seen, with no wake-up lost, across many sleep/wake races.
        use std::sync::{Condvar, Mutex};
        let mut m = mesh::<u32>(2, 16);
        let mut b = m.pop().unwrap();
        let mut a = m.pop().unwrap();
        let bell = Arc::new((Mutex::new(false), Condvar::new()));
        let bell2 = bell.clone();
        const N: u32 = 20_000;
        let consumer = std::thread::spawn(move || {
            let mut next = 0u32;
            while next < N {
                b.drain(|_, v| {
                    assert_eq!(v, next, "out of order");
                    next += 1;
                });
                if next >= N {
                    break;
                }
                if b.prepare_sleep() {
                    let (lock, cv) = &*bell2;
                    let mut rung = lock.lock().unwrap();
                    while !*rung {
                        rung = cv.wait(rung).unwrap();
                    }
                    *rung = false;
                    b.woke();
                }
            }
            next
        });
        for i in 0..N {
            a.post(1, i);
            while a.retry_backlog() {
                std::thread::yield_now();
            }
            a.bells(|_, _| {
                let (lock, cv) = &*bell;
                *lock.lock().unwrap() = true;
                cv.notify_one();
            });
        }
        assert_eq!(consumer.join().unwrap(), N);
    }
}
