//! Fan-out: a framed message handed to every shard with a matching
//! subscriber, and queued there on each of them once.

use super::engine::{bits, Broker};
use super::host::Host;
use super::mail::Mail;
use super::owner::Published;
use super::wire::TopicAt;
use crate::metrics::inc;
use crate::sendbuf::{Framed, SendBuf};

impl Broker {
    /// Hand a framed message to every shard with a matching subscriber.
    pub(super) fn fan_out<H: Host>(&mut self, io: &mut H, p: &Published, arrived: u64) {
        let me = io.shard();
        for shard in bits(p.shards) {
            if shard == me {
                self.deliver(io, me, &p.frame, p.at, arrived);
            } else {
                let mail = Mail::Deliver {
                    frame: p.frame.clone(),
                    at: p.at,
                    arrived,
                };
                // That shard is a whole ring behind: it is the slow
                // consumer here. Shedding the message for it (its
                // subscribers see the seq gap, as with policy drop) keeps
                // this shard, the publisher and every other shard going.
                if io.try_post(shard, mail).is_err() {
                    inc(&self.my_stats(io).fanout_shed_total, 1);
                }
            }
        }
    }

    /// Queue a message from `owner`, published at `arrived`, on every
    /// local subscriber, once each.
    pub(super) fn deliver<H: Host>(
        &mut self,
        io: &mut H,
        owner: usize,
        frame: &Framed,
        at: TopicAt,
        arrived: u64,
    ) {
        let topic = at.get(frame);
        self.stamp += 1;
        let stamp = self.stamp;
        let mut targets = std::mem::take(&mut self.targets);
        self.subs.for_each_match(topic, |c| targets.push(c));
        if targets.is_empty() {
            self.targets = targets;
            return;
        }
        // One shard-local share for all of them: each queue then takes a
        // plain reference count, not an atomic one (see `SendBuf`). It
        // carries the arrival time to each send that takes it.
        let local = SendBuf::framed(frame, arrived);
        for c in targets.drain(..) {
            let Some(st) = self.state(c) else { continue };
            if st.stamp == stamp {
                continue; // matched by another pattern already
            }
            st.stamp = stamp;
            // Until this owner starts a snapshot, the snapshot carries
            // this topic's state: live messages before it are older.
            if st.has_pending() && !st.live_match(topic, owner, None) {
                continue;
            }
            self.offer(io, c, &local, at);
        }
        self.targets = targets;
    }
}
