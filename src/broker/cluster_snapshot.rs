//! Cluster mode: snapshots of topics this node has not been delivering
//! (issue #18, docs/cluster.md §5).
//!
//! A node keeps a topic's last value only from the stream's copies, and
//! copies reach it only while it holds a NATS subscription that matches
//! the topic. So the owner shard's value is current only if the node has
//! held such interest without a break since the value came. Otherwise a
//! snapshot served from it would be missing (a topic only other nodes'
//! subscribers followed) or stale (interest lapsed, and other nodes
//! published since), and the subscriber would see its first live message
//! after a jump it cannot resync from.
//!
//! What is current, per exact topic, is an epoch mark (`TopicSeq::fresh`):
//! set when a copy arrives while the link is up and the owner knows of
//! interest in the topic, or when a snapshot read answers and the
//! interest held all along; cleared when the topic's own exact interest
//! lapses on this owner; and every mark is void at once (the cluster's
//! epoch bumped) when a wildcard's interest lapses here, the link goes
//! down or comes back, or one of the node's NATS subscriptions is refused
//! or ends. A hot topic marks itself again with its next copy, so the
//! reads are for quiet topics. A request whose patterns are new on the
//! subscriber's shard reads regardless: another shard's lapse may still
//! be on its way to the owner while the bridge already dropped the NATS
//! subscription in between. A read on its way when the topic's interest
//! lapses was fenced before any interest since: it makes nothing current,
//! and subscribers who come after it wait for a read of their own.
//!
//! A snapshot of an exact topic that is not current waits for a read of
//! the stream's last message (`ClusterOut::Last` with `fence`: the bridge
//! sends it only once every subscription asked for before it is in force
//! on NATS, so whatever is stored after the read reaches this node as a
//! copy). The answer is taken like a copy when it is newer than what was
//! delivered here (kept as the last value, fanned out, its stream
//! sequence the new floor), then the scan starts as on a single node:
//! copies stored before the read and still on their way are dropped as
//! duplicates, later ones go out live after the snapshot, and the seam is
//! exact by the single-node argument (`snapshots.rs`). Reads of one topic
//! are shared: a storm of subscribers to one quiet topic costs one read.
//!
//! Cost and limits: one stream round trip before such a snapshot's ack
//! (0.1-0.5 ms measured, docs/cluster.md §1). A subscriber of the topic
//! already here when the read answers with messages still on their way
//! sees them as one explicit gap (it gets the newest at once); this needs
//! a read while copies of the same topic are in flight, i.e. a hot topic
//! in the moment between an epoch bump and its next copy. A read that
//! fails (NATS down) or gets no answer by the deadline serves the local
//! value.
//!
//! Wildcards: the same with a mark per pattern (`WildRead::fresh`, voided
//! by the epoch) and `ClusterOut::LastAll`, which the bridge serves with
//! a `last_per_subject` consumer (2.9 has no batched last-value read),
//! handing this shard its topics of the pattern as copies, then
//! `ClusterIn::LastAll`.

use super::cluster::{ClusterOut, Kind, Stored};
use super::engine::Broker;
use super::host::Host;
use super::snapshots::{ConnKey, Reading};
use super::topic::is_pattern;
use crate::metrics::inc;

impl Broker {
    /// On the owner, cluster mode: start a read of the stream for each
    /// exact topic of `patterns` whose local value is not known current,
    /// and park request `req` of `key` until they answer. False: none
    /// needed (or not in cluster mode), scan now.
    pub(super) fn snapshot_reads<H: Host>(
        &mut self,
        io: &mut H,
        key: ConnKey,
        req: u32,
        patterns: &[Box<str>],
        new_interest: bool,
    ) -> bool {
        let now = io.now_ms();
        let me = io.shard();
        let Some(c) = self.cluster.as_mut() else {
            return false;
        };
        let mut left = 0;
        for pattern in patterns.iter().filter(|p| is_pattern(p)) {
            let (epoch, up) = (c.epoch, c.connected);
            let w = match c.wild.get_mut(&**pattern) {
                Some(w) => w,
                None => c.wild.entry(pattern.clone()).or_default(),
            };
            if !up || (w.fresh == epoch && !new_interest) {
                continue; // current, or a read would fail at once
            }
            w.readers.push((key, req));
            left += 1;
            if w.reading {
                continue;
            }
            w.reading = true;
            let token = c.request(pattern, now, Kind::Wild(epoch));
            let ask = ClusterOut::LastAll {
                token,
                pattern: pattern.clone(),
            };
            if !c.send(ask) {
                c.forget_token(token);
                // Its readers were only this one (none wait while no read
                // is on its way).
                if let Some(w) = c.wild.get_mut(&**pattern) {
                    w.reading = false;
                    w.readers.clear();
                }
                left -= 1;
                continue;
            }
            inc(&self.stats[me].cluster_snapshot_reads_total, 1);
        }
        for topic in patterns.iter().filter(|p| !is_pattern(p)) {
            let (epoch, up) = (c.epoch, c.connected);
            let st = match c.topics.get_mut(&**topic) {
                Some(st) => st,
                None => c.topics.entry(topic.clone()).or_default(),
            };
            if !up || (st.fresh == epoch && !new_interest) {
                // Current, or a read would fail at once: serve what is here.
                continue;
            }
            left += 1;
            if st.reading && !st.read_stale {
                st.readers.push((key, req));
                continue; // one read of a topic serves every waiter
            }
            if st.reading {
                // The read on its way was fenced before this subscriber's
                // interest (the topic's lapsed since): the next one.
                st.next_readers.push((key, req));
                continue;
            }
            st.readers.push((key, req));
            if !read_topic(c, topic, now) {
                left -= 1; // the bridge's queue is full: serve what is here
                continue;
            }
            inc(&self.stats[me].cluster_snapshot_reads_total, 1);
        }
        if left == 0 {
            return false;
        }
        self.served.entry(key).or_default().reading = Some(Reading {
            req,
            patterns: patterns.to_vec(),
            left,
        });
        true
    }

    /// The stream's last message of `topic`, read in `epoch` for the
    /// snapshots waiting on it. It makes the node's value current only if
    /// the node still holds interest in the topic and has held it since
    /// the read went out (`read_stale`: a lapse between, and later copies
    /// may not come).
    pub(super) fn snapshot_read_answered<H: Host>(
        &mut self,
        io: &mut H,
        topic: &str,
        epoch: u32,
        found: Option<Stored>,
    ) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let held = self.owned.wanted(topic);
        let current = c.connected && c.epoch == epoch && held;
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        let current = current && !st.read_stale;
        let delivered = st.delivered;
        if current && found.as_ref().is_none_or(|f| f.stream_seq <= delivered) {
            st.fresh = epoch;
        }
        if let Some(copy) = found.filter(|f| f.stream_seq > delivered) {
            // Newer than anything delivered here: it is the value now, and
            // its copy (if it comes) a duplicate.
            self.take_copy(io, copy, epoch);
        }
        self.snapshot_read_done(io, topic);
    }

    /// `topic`'s read is over (answered, or it could not be: NATS down, no
    /// answer by the deadline, and then snapshots are served from here):
    /// each request waiting on it has one read fewer to wait for, and
    /// starts its scan after its last.
    pub(super) fn snapshot_read_done<H: Host>(&mut self, io: &mut H, topic: &str) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        st.reading = false;
        st.read_stale = false;
        let readers = std::mem::take(&mut st.readers);
        let next = std::mem::take(&mut st.next_readers);
        if !next.is_empty() {
            // Those that came after a lapse get a read of their own.
            let now = io.now_ms();
            let me = io.shard();
            if let Some(st) = c.topics.get_mut(topic) {
                st.readers = next;
            }
            if read_topic(c, topic, now) {
                inc(&self.stats[me].cluster_snapshot_reads_total, 1);
            } else if let Some(st) = c.topics.get_mut(topic) {
                let failed = std::mem::take(&mut st.readers);
                self.readers_done(io, failed);
            }
        }
        self.readers_done(io, readers);
    }

    /// A wildcard read of `pattern` is over: answered in `epoch` (its
    /// topics on this shard came before, as copies), or failed (`None`).
    pub(super) fn wild_read_done<H: Host>(
        &mut self,
        io: &mut H,
        pattern: &str,
        epoch: Option<u32>,
    ) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let current = epoch.filter(|&e| c.connected && c.epoch == e);
        let Some(w) = c.wild.get_mut(pattern) else {
            return;
        };
        w.reading = false;
        if let Some(e) = current {
            w.fresh = e;
        }
        let readers = std::mem::take(&mut w.readers);
        self.readers_done(io, readers);
    }

    /// Each request in `readers` has one read fewer to wait for, and
    /// starts its scan after its last.
    fn readers_done<H: Host>(&mut self, io: &mut H, readers: Vec<(ConnKey, u32)>) {
        for (key, req) in readers {
            let Some(s) = self.served.get_mut(&key) else {
                continue; // the connection closed meanwhile
            };
            let Some(r) = s.reading.as_mut().filter(|r| r.req == req) else {
                continue;
            };
            r.left -= 1;
            if r.left > 0 {
                continue;
            }
            if let Some(r) = s.reading.take() {
                self.start_scan(io, key, r.req, &r.patterns);
            }
        }
    }

    /// On the owner: shard `from` gained its first (or lost its last)
    /// subscriber of `pattern`. Cluster mode: a lapse ends the right to
    /// serve the topics it covered from here (their copies may stop).
    pub(super) fn owner_interest(&mut self, pattern: &str, from: usize, add: bool) {
        self.owned.interest(pattern, from as u16, add);
        let Some(c) = self.cluster.as_mut().filter(|_| !add) else {
            return;
        };
        if is_pattern(pattern) {
            c.epoch = c.epoch.wrapping_add(1).max(1);
            c.lapses = c.lapses.wrapping_add(1).max(1);
        } else if let Some(st) = c.topics.get_mut(pattern) {
            st.fresh = 0;
            st.followed = 0;
            // A read on its way was fenced before any new interest.
            st.read_stale |= st.reading;
        }
    }
}

/// Send a fenced read of `topic` for the readers already in its state;
/// false when the bridge's queue is full (the state is left not reading).
fn read_topic(c: &mut super::cluster::Cluster, topic: &str, now: u64) -> bool {
    let epoch = c.epoch;
    let token = c.request(topic, now, Kind::Read(epoch));
    let ask = ClusterOut::Last {
        token,
        topic: topic.into(),
        fence: true,
    };
    if let Some(st) = c.topics.get_mut(topic) {
        st.reading = true;
        st.read_stale = false;
    }
    if c.send(ask) {
        return true;
    }
    c.forget_token(token);
    if let Some(st) = c.topics.get_mut(topic) {
        st.reading = false;
        st.readers.clear();
    }
    false
}
