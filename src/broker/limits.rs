//! The checks a request passes before it changes anything: its
//! connection's request rate, room in the mail it must send, the topic
//! cap, and the snapshot bounds. Each refusal is an `err` with the
//! request's id and a counter (protocol.md, "Limits").

use super::engine::{bits, owners, Broker};
use super::host::{Client, Host, ShardMask};
use super::wire::ErrCode;
use crate::metrics::inc;

impl Broker {
    /// Within the connection's request rate (`publish`: the pub bucket,
    /// else the sub/unsub one, `cost` patterns)? If not, it is answered
    /// `rate_limited` with its id and changes nothing.
    pub(super) fn admit<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        publish: bool,
        cost: usize,
        id: Option<u64>,
    ) -> bool {
        let rate = if publish {
            self.config.pub_rate
        } else {
            self.config.sub_rate
        };
        if rate.is_off() {
            return true; // the default for pub: one branch per publish
        }
        let now = io.now_ms();
        let Some(st) = self.state(conn) else {
            return true;
        };
        let st = st.more();
        let bucket = if publish {
            &mut st.pub_bucket
        } else {
            &mut st.sub_bucket
        };
        if bucket.take(rate, now, cost) {
            return true;
        }
        inc(&self.my_stats(io).requests_rate_limited_total, 1);
        let (what, flag) = if publish {
            ("pub requests", "--max-pub-rate")
        } else {
            ("sub/unsub patterns", "--max-sub-rate")
        };
        let msg = format!(
            "too many {what}: limit {} per second per connection ({flag}, burst {}); retry later",
            rate.per_s, rate.burst
        );
        self.reply(io, conn, id, ErrCode::RateLimited, &msg);
        false
    }

    /// May a `sub`/`unsub` of `patterns` post its mail? Interest and
    /// subscription mail (`Host::post`) is never dropped: what does not fit
    /// a full ring waits in a backlog without a bound. So a request that
    /// would mail a shard whose backlog is not empty is refused, before it
    /// changes anything, with `rate_limited`: each backlog then holds at
    /// most one request's mail (≤ 2 per pattern) besides owners' answers
    /// (one per request that got through the ring) and closing
    /// connections' unsubscribes (≤ --max-subscriptions each).
    pub(super) fn mail_has_room<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        patterns: &[std::borrow::Cow<'_, str>],
        id: Option<u64>,
    ) -> bool {
        let me = io.shard();
        let shards = io.shards();
        let mut targets: ShardMask = 0;
        for p in patterns {
            for o in owners(p, shards) {
                targets |= 1 << o;
            }
        }
        targets &= !(1 << me);
        if !bits(targets).any(|o| io.mail_waiting(o)) {
            return true;
        }
        inc(&self.my_stats(io).subs_refused_total, 1);
        self.reply(
            io,
            conn,
            id,
            ErrCode::RateLimited,
            "broker overloaded: a shard these patterns need is behind; retry later",
        );
        false
    }

    /// A publish to a new topic on a shard full of wanted topics.
    pub(super) fn refuse_topic<H: Host>(&mut self, io: &mut H, conn: Client, id: Option<u64>) {
        inc(&self.my_stats(io).topics_refused_total, 1);
        let msg = format!(
            "too many topics on this topic's shard (limit {} per shard); retry later",
            self.config.max_topics
        );
        self.reply(io, conn, id, ErrCode::RateLimited, &msg);
    }

    /// Why a snapshot subscription listing `patterns` may not go now, if
    /// it may not: each bound keeps what the owners build and mail for it
    /// (protocol.md, "Limits").
    pub(super) fn snapshot_refusal(
        &mut self,
        conn: Client,
        patterns: usize,
    ) -> Option<(ErrCode, String)> {
        let c = &self.config;
        let (max_patterns, per_conn, per_shard) = (
            c.max_snapshot_patterns,
            c.max_snapshots_per_conn,
            c.max_snapshots_per_shard,
        );
        let in_flight = self.snapshots_in_flight;
        let st = self.state(conn)?;
        if patterns > max_patterns {
            Some((
                ErrCode::TooLarge,
                format!("too many patterns for a snapshot (limit {max_patterns} per request)"),
            ))
        } else if st.snapshots_in_flight() >= per_conn {
            Some((
                ErrCode::RateLimited,
                format!(
                    "snapshot requests still on their way (limit {per_conn} per connection); wait for their ack"
                ),
            ))
        } else if in_flight >= per_shard {
            Some((
                ErrCode::RateLimited,
                "broker busy with snapshots; retry later".to_string(),
            ))
        } else {
            None
        }
    }
}
