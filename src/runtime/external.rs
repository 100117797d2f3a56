//! The external inbox: mail from a thread that is not a shard (a cluster
//! bridge on its own tokio thread, issue #18) to one shard, waking it if
//! it sleeps.
//!
//! Shards wake each other with `IORING_OP_MSG_RING` (`mailbox.rs`), but
//! that needs a ring of one's own. An outside thread has none, so each
//! shard's inbox pairs a bounded queue with a non-blocking eventfd that the
//! shard watches with a multishot `POLL_ADD`: a write to it completes that
//! poll, which wakes the shard from `io_uring_enter` like any completion.
//!
//! **The queue** is a `Mutex<VecDeque<M>>`. Every other shard-to-shard path
//! is lock-free SPSC, but here there are many producers (any clone of the
//! sender, on any thread) and a bridge's rate: tens of thousands of
//! messages a second, not millions. An uncontended lock and unlock is
//! ~20 ns, so 100,000 messages a second cost the sender 0.2 % of a core;
//! the shard takes the lock once per turn whatever the number of messages
//! (it swaps the whole queue for an empty one), so it never waits behind a
//! burst, and a sender waits at most for one swap. A lock-free MPSC queue
//! would be a new dependency for no measurable gain at that rate.
//!
//! **The wake-up** costs one eventfd write per burst, not one per message:
//! `pending` says "the shard has been told". A sender queues, then sets
//! `pending` and writes the eventfd only if it was clear. The shard clears
//! `pending` *before* it takes the queue, so of any message either
//!
//! - its sender set `pending` before the shard cleared it: the message was
//!   queued before that (under the lock), so the take after the clear sees
//!   it; or
//! - its sender found `pending` clear (after the shard's clear) and writes
//!   the eventfd: the poll completes and the shard takes it next turn,
//!   asleep or not.
//!
//! Both sides use SeqCst on `pending`; the queue's lock orders the message
//! itself. No wake-up is lost, and a burst sent while the shard is still
//! draining the last one costs no syscall at all.
//!
//! **The shard side** (`Shard::read_external`) looks at `pending` every
//! turn with the rest of its mail: an awake shard takes external mail with
//! one load and no syscall. When the poll completes (the eventfd was
//! written), the shard also reads the eventfd, which resets its count so
//! that a poll armed again later does not complete at once for an old
//! write (a non-blocking read; EAGAIN, nothing to reset, is fine). The
//! application gets each message through [`App::mail`] with `from ==
//! io.shards()`, one past the last shard ([`Io::is_external`]).
//!
//! [`App::mail`]: super::App::mail
//! [`Io::is_external`]: super::Io::is_external

use super::app::App;
use super::shard::Shard;
use super::token::{self, Op};
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::types::Fd;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

/// What [`inboxes`] makes: the senders and the inboxes, one each per shard.
pub type Inboxes<M> = (Vec<ExternalSender<M>>, Vec<ExternalInbox<M>>);

/// Makes the external inboxes of a runtime with `shards` shards, each
/// queue holding at most `capacity` messages (at least 1): the senders,
/// one per shard (index = shard), for the outside thread, and the inboxes
/// for [`Server::start_with_inboxes`]. Fails only if an eventfd cannot be
/// made (the process is out of file descriptors).
///
/// A full queue means its shard is behind by `capacity` messages; what to
/// do then (shed, retry later) is the sender's choice: [`ExternalSender::send`]
/// hands the message back. The shard may hold up to `capacity` more that it
/// took from the queue and is still handing to the application.
///
/// [`Server::start_with_inboxes`]: super::Server::start_with_inboxes
pub fn inboxes<M: Send>(shards: usize, capacity: usize) -> io::Result<Inboxes<M>> {
    inboxes_weighed(shards, capacity, usize::MAX, |_| 0)
}

/// As [`inboxes`], each queue also holding at most `max_bytes` of what
/// `weigh` says its messages hold (a message that weighs 0 is bounded by
/// the count alone): a count bound alone lets a queue of large messages
/// grow to `capacity` times the largest (a cluster bridge's copies are up
/// to 256 KiB each).
pub fn inboxes_weighed<M: Send>(
    shards: usize,
    capacity: usize,
    max_bytes: usize,
    weigh: fn(&M) -> usize,
) -> io::Result<Inboxes<M>> {
    let mut senders = Vec::with_capacity(shards);
    let mut inboxes = Vec::with_capacity(shards);
    for shard in 0..shards {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
            }),
            max_bytes,
            weigh,
            capacity: capacity.max(1),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            bell: eventfd()?,
        });
        senders.push(ExternalSender {
            inner: inner.clone(),
            shard,
        });
        inboxes.push(ExternalInbox {
            inner,
            spare: VecDeque::new(),
            armed: false,
            retry_at: None,
            warned: false,
        });
    }
    Ok((senders, inboxes))
}

fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; a negative result is an error.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd, is open, and nothing else
    // owns it; the OwnedFd (in a File, for read/write) closes it once.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// What a shard's senders and its inbox share. The eventfd closes when
/// the last of them drops (`File`'s drop).
struct Inner<M> {
    queue: Mutex<Queue<M>>,
    capacity: usize,
    max_bytes: usize,
    weigh: fn(&M) -> usize,
    /// The shard has been told (or will look): senders write the eventfd
    /// only when they set this from clear. See the module's doc.
    pending: AtomicBool,
    /// The shard's inbox is gone (the server stopped, or never took it).
    closed: AtomicBool,
    bell: File,
}

/// The queue and the weight of what it holds.
struct Queue<M> {
    items: VecDeque<M>,
    bytes: usize,
}

impl<M> Inner<M> {
    fn lock(&self) -> MutexGuard<'_, Queue<M>> {
        // A panic while the lock was held (only in `VecDeque::push_back`'s
        // allocation, or in `mem::swap`) leaves the queue whole: keep using it.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Posts mail to one shard from any thread. Clone it freely (one queue per
/// shard, any number of senders); it is `Send` and `Sync`.
pub struct ExternalSender<M> {
    inner: Arc<Inner<M>>,
    shard: usize,
}

impl<M> Clone for ExternalSender<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shard: self.shard,
        }
    }
}

impl<M> std::fmt::Debug for ExternalSender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSender")
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

impl<M> ExternalSender<M> {
    /// Queue `mail` for the shard and wake it if it may sleep. The shard
    /// gets messages from one sender in the order they were sent. `Err`
    /// hands the message back: the queue is full (the shard is behind by
    /// its capacity), or the shard is gone ([`is_closed`](Self::is_closed)).
    pub fn send(&self, mail: M) -> Result<(), M> {
        if self.inner.closed.load(SeqCst) {
            return Err(mail);
        }
        {
            let w = (self.inner.weigh)(&mail);
            let mut q = self.inner.lock();
            let heavy = w > 0 && q.bytes.saturating_add(w) > self.inner.max_bytes;
            if q.items.len() >= self.inner.capacity || heavy {
                return Err(mail);
            }
            q.bytes += w;
            q.items.push_back(mail);
        }
        // After the message is queued (see the module's doc). Only the
        // sender that sets the flag writes: one syscall per burst.
        if !self.inner.pending.swap(true, SeqCst) {
            // Fails only if the count would overflow 2^64 - 2, which the
            // shard's reads rule out. Were it ever to fail, the shard would
            // still take the message at its next turn (`pending` is set),
            // at the latest at its next tick.
            let _ = (&self.inner.bell).write(&1u64.to_ne_bytes());
        }
        Ok(())
    }

    /// The shard this sender posts to.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Messages waiting in the queue now (not those the shard took and is
    /// still handing to the application).
    pub fn queued(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// The shard will take no more mail: its server stopped (or was never
    /// started with this inbox). `send` refuses everything from then on.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(SeqCst)
    }
}

/// A shard's end of its external inbox; give one per shard to
/// [`Server::start_with_inboxes`](super::Server::start_with_inboxes).
pub struct ExternalInbox<M> {
    inner: Arc<Inner<M>>,
    /// The other half of the queue's double buffer (see `take`).
    spare: VecDeque<M>,
    /// The multishot poll on the eventfd is in the ring.
    armed: bool,
    /// The poll failed: arm it again at this tick, not in a loop.
    retry_at: Option<super::timer::Ticks>,
    warned: bool,
}

impl<M> std::fmt::Debug for ExternalInbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalInbox")
            .field("armed", &self.armed)
            .finish_non_exhaustive()
    }
}

impl<M> ExternalInbox<M> {
    fn fd(&self) -> RawFd {
        self.inner.bell.as_raw_fd()
    }

    /// Reset the eventfd's count. Non-blocking: nothing to read (EAGAIN)
    /// is fine, and there is nothing else worth doing about an error.
    fn reset(&self) {
        let mut count = [0u8; 8];
        let _ = (&self.inner.bell).read(&mut count);
    }

    /// Everything queued now, oldest first, if a sender said so since the
    /// last take; the caller hands the (emptied) buffer back to `spare`.
    fn take(&mut self) -> Option<VecDeque<M>> {
        // A plain load first: an awake shard with no external mail pays
        // this and nothing else. Seeing `pending` late is harmless: its
        // setter also wrote the eventfd, whose poll brings us back.
        if !self.inner.pending.load(SeqCst) {
            return None;
        }
        // Clear *before* taking (see the module's doc): a message queued
        // after the take finds the flag clear and wakes us again.
        self.inner.pending.store(false, SeqCst);
        let mut batch = std::mem::take(&mut self.spare);
        {
            let mut q = self.inner.lock();
            std::mem::swap(&mut q.items, &mut batch);
            q.bytes = 0;
        }
        Some(batch)
    }
}

impl<M> Drop for ExternalInbox<M> {
    fn drop(&mut self) {
        self.inner.closed.store(true, SeqCst);
        // Free what waits now; a racing sender's message may stay in the
        // queue until the last sender drops.
        let mut q = self.inner.lock();
        q.items.clear();
        q.bytes = 0;
    }
}

impl<M> Shard<M> {
    /// Arm the multishot poll on the external inbox's eventfd, if this
    /// shard has an inbox and the poll is not in the ring already.
    pub(super) fn arm_external(&mut self) {
        let Some(x) = self.external.as_mut() else {
            return;
        };
        if x.armed {
            return;
        }
        x.armed = true;
        x.retry_at = None;
        // A plain fd, not a direct descriptor: the eventfd lives in the
        // process's table (the senders write it), and the poll takes its
        // own reference to the file while armed.
        let e = opcode::PollAdd::new(Fd(x.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(token::encode(Op::External, 0, 0));
        self.push(e);
    }

    /// The poll completed: the eventfd was written (or the poll ended).
    pub(super) fn on_external<A: App<Mail = M>>(&mut self, app: &mut A, res: i32, flags: u32) {
        let now = self.table.now;
        let Some(x) = self.external.as_mut() else {
            return;
        };
        let more = cqueue::more(flags);
        if !more {
            x.armed = false;
        }
        if res < 0 {
            // Not expected (the fd stays open while we hold it; ECANCELED
            // comes only with the ring's teardown). Re-arming at once could
            // spin on an error that repeats, so wait a tick (100 ms): until
            // then an awake shard still takes its mail every turn, and a
            // sleeping one at its next tick.
            if !more {
                x.retry_at = Some(now + 1);
            }
            if !std::mem::replace(&mut x.warned, true) {
                eprintln!(
                    "ringfan: shard {}: external inbox poll: {}",
                    self.table.me,
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        x.reset();
        if !more {
            // The multishot ended (a full completion queue ends it):
            // arm it again in the same submission.
            self.arm_external();
        }
        self.read_external(app);
    }

    /// Hand the application what the outside posted (every turn, with the
    /// rest of the mail). `from` is `io.shards()`: no shard has that index.
    pub(super) fn read_external<A: App<Mail = M>>(&mut self, app: &mut A) {
        let now = self.table.now;
        let Some(x) = self.external.as_mut() else {
            return;
        };
        if x.retry_at.is_some_and(|t| now >= t) {
            self.arm_external();
        }
        let Some(x) = self.external.as_mut() else {
            return;
        };
        let Some(mut batch) = x.take() else {
            return;
        };
        let from = self.mail.shards();
        for m in batch.drain(..) {
            app.mail(&mut self.io(), from, m);
        }
        if let Some(x) = self.external.as_mut() {
            x.spare = batch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eventfd's count, reset (what the shard's read does).
    fn count<M>(x: &ExternalInbox<M>) -> u64 {
        let mut b = [0u8; 8];
        match (&x.inner.bell).read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            r => panic!("eventfd read: {r:?}"),
        }
    }

    #[test]
    fn a_burst_writes_the_eventfd_once_and_a_full_queue_hands_mail_back() {
        let (tx, mut rx) = inboxes::<u32>(1, 4).unwrap();
        let mut x = rx.pop().unwrap();
        assert_eq!(tx[0].shard(), 0);
        assert!(x.take().is_none(), "nothing sent");
        for i in 0..4 {
            assert_eq!(tx[0].send(i), Ok(()));
        }
        assert_eq!(tx[0].send(4), Err(4), "full");
        assert_eq!(tx[0].queued(), 4);
        assert_eq!(count(&x), 1, "one write for the burst");
        let got: Vec<u32> = x.take().unwrap().into_iter().collect();
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(x.take().is_none(), "pending was cleared");
        // Room again; the next burst is announced again.
        let other = tx[0].clone();
        std::thread::spawn(move || other.send(5))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(count(&x), 1);
        assert_eq!(x.take().unwrap().into_iter().collect::<Vec<_>>(), [5]);
        assert_eq!(count(&x), 0);
    }

    #[test]
    fn a_queue_is_bounded_by_weight_too_and_weightless_mail_by_count_only() {
        // Strings weigh their length; "" weighs nothing.
        let (tx, mut rx) = inboxes_weighed::<String>(1, 8, 10, |m| m.len()).unwrap();
        let mut x = rx.pop().unwrap();
        assert_eq!(tx[0].send("abcdef".into()), Ok(()));
        assert_eq!(
            tx[0].send("ghijk".into()),
            Err("ghijk".into()),
            "11 > 10 bytes"
        );
        assert_eq!(tx[0].send("ghij".into()), Ok(()), "exactly 10");
        for _ in 0..6 {
            assert_eq!(tx[0].send(String::new()), Ok(()), "weightless");
        }
        assert_eq!(tx[0].send(String::new()), Err(String::new()), "8 by count");
        assert_eq!(x.take().map(|b| b.len()), Some(8));
        // Taken: the weight is free again.
        assert_eq!(tx[0].send("0123456789".into()), Ok(()));
    }

    #[test]
    fn mail_sent_after_the_take_is_announced_again() {
        // The order that loses wake-ups if it is wrong: the shard clears
        // `pending`, takes, and a message queued meanwhile must find the
        // flag clear and write the eventfd.
        let (tx, mut rx) = inboxes::<u32>(1, 16).unwrap();
        let mut x = rx.pop().unwrap();
        tx[0].send(1).unwrap();
        let batch = x.take().unwrap();
        assert_eq!(count(&x), 1);
        tx[0].send(2).unwrap();
        assert_eq!(count(&x), 1, "the second burst rang");
        x.spare = batch;
        assert_eq!(x.take().unwrap().into_iter().collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_dropped_inbox_refuses_mail() {
        let (tx, rx) = inboxes::<String>(2, 8).unwrap();
        assert_eq!(tx[1].send("a".into()), Ok(()));
        assert!(!tx[1].is_closed());
        drop(rx);
        assert!(tx[1].is_closed());
        assert_eq!(tx[1].queued(), 0, "freed with the inbox");
        assert_eq!(tx[1].send("b".into()), Err("b".into()));
    }

    #[test]
    fn many_threads_never_lose_a_wakeup() {
        // A consumer standing in for the shard: it sleeps in poll(2) on the
        // eventfd (as the ring's poll does), resets it and takes. Four
        // senders race it; every message arrives, in order per sender.
        const SENDERS: u64 = 4;
        const N: u64 = 20_000;
        let (tx, mut rx) = inboxes::<(u64, u64)>(1, 64).unwrap();
        let mut x = rx.pop().unwrap();
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let tx = tx[0].clone();
                std::thread::spawn(move || {
                    for i in 0..N {
                        let mut m = (s, i);
                        while let Err(back) = tx.send(m) {
                            m = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = vec![0u64; SENDERS as usize];
        let mut got = 0;
        while got < SENDERS * N {
            if let Some(mut batch) = x.take() {
                for (s, i) in batch.drain(..) {
                    assert_eq!(i, next[s as usize], "sender {s} out of order");
                    next[s as usize] += 1;
                    got += 1;
                }
                x.spare = batch;
                continue;
            }
            let mut p = libc::pollfd {
                fd: x.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the length passed. A lost
            // wake-up shows as this 10 s poll timing out.
            let r = unsafe { libc::poll(&mut p, 1, 10_000) };
            assert_eq!(r, 1, "no wake-up with {got} messages taken");
            x.reset();
        }
        for s in senders {
            s.join().unwrap();
        }
        // Nothing left over. A sender may set the pending flag after the
        // take that got its message (it pushes, then flags): that take
        // finds an empty batch, a harmless extra wake (it failed once so).
        assert!(x.take().is_none_or(|b| b.is_empty()));
    }
}
