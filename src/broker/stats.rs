//! The broker's per-shard counters (publishes, deliveries, snapshots,
//! slow consumers); see [`crate::metrics`] for how they are kept.

use crate::metrics::counters;

counters! { BrokerStats {
    publishes_total: counter, "Messages published (numbered by their owner).";
    frames_built_total: counter, "msg frames built: one per publish, whatever the subscriber count.";
    deliveries_total: counter, "msg frames queued on subscribers.";
    snapshots_total: counter, "Snapshot messages sent.";
    subscriptions: gauge, "Active subscriptions (connection, pattern).";
    dropped_total: counter, "Messages dropped for slow consumers (policy drop).";
    conflated_total: counter, "Pending messages replaced by a newer one (policy conflate).";
    slow_disconnects_total: counter, "Slow consumers disconnected (policy disconnect).";
    errors_total: counter, "err replies sent.";
    publishes_refused_total: counter, "Publishes answered rate_limited: their topic's shard had a full mailbox (it is behind).";
    conflate_overflows_total: counter, "Conflating subscribers closed 1008 slow consumer: their held messages (one per topic) passed --max-queued-bytes.";
    requests_rate_limited_total: counter, "Requests answered rate_limited for their connection's rate (--max-pub-rate, --max-sub-rate).";
    subs_refused_total: counter, "sub/unsub answered rate_limited: a shard they must mail has mail waiting behind a full mailbox.";
    fanout_shed_total: counter, "Messages not passed to a shard whose mailbox was full (its subscribers see a seq gap).";
    topics: gauge, "Topics held by their owner shard (seq counter, maybe a last value).";
    topics_forgotten_total: counter, "Topics forgotten (no interest, no last value): their seq starts again at 1.";
    topics_refused_total: counter, "Publishes to a new topic refused: its shard held --max-topics-per-shard wanted topics.";
    new_topics_limited_total: counter, "Publishes answered rate_limited: the connection spent its --max-new-topics-per-conn budget.";
    snapshots_refused_total: counter, "Snapshot subscriptions refused: too many patterns, or too many snapshots in flight (connection or shard).";
    snapshot_requests_in_flight: gauge, "Snapshot requests waiting on owners.";
    json_too_deep_total: counter, "Publishes answered bad_json: data nested deeper than --max-json-depth.";
    forbidden_total: counter, "Requests answered forbidden: a sub or pub outside the connection's permissions.";
    auth_refreshes_total: counter, "Fresh tokens taken by an auth op on an authenticated connection.";
    auth_revoked_total: counter, "Subscriptions removed because a fresh token no longer covered them.";
    auth_expired_total: counter, "Connections closed 4002: their token expired.";
    auth_denied_total: counter, "Connections closed 4004: their token ID was denied by a reload.";
    cluster_publishes_total: counter, "Cluster mode: stream messages sent (one per attempt: a conflict sends again; a bundle of publishes is one).";
    cluster_owed: gauge, "Cluster mode: publishes of this shard's connections not answered yet (a drain closes connections once none is owed).";
    cluster_waiting: gauge, "Cluster mode: publishes waiting for the stream (in flight, or behind one of the same topic).";
    cluster_conflicts_total: counter, "Cluster mode: publishes the stream refused because another node published the topic first (numbered again and resent).";
    cluster_unavailable_total: counter, "Cluster mode: publishes answered unavailable (NATS unreachable, no stream leader, no answer in time).";
    cluster_copies_total: counter, "Cluster mode: stored messages received from NATS and delivered on this node (framed once each).";
    cluster_duplicates_total: counter, "Cluster mode: copies dropped as already delivered (overlapping subscriptions).";
    cluster_bundled_total: counter, "Cluster mode: publishes that went to the stream bundled with others of their topic (those that waited behind one in flight).";
    cluster_snapshot_reads_total: counter, "Cluster mode: reads of a topic's last message from the stream for snapshots this node could not serve as current (one per topic however many subscribers wait on it).";
    cluster_fills_total: counter, "Cluster mode: reads of messages a copy showed this node missed (its topic's previous stream sequence was not the last delivered here), delivered before it.";
    cluster_filled_total: counter, "Cluster mode: missed messages those reads found and delivered.";
    cluster_fill_failures_total: counter, "Cluster mode: reads of missed messages that failed or were given up (the copies behind went out; subscribers see an explicit gap).";
    cluster_bad_copies_total: counter, "Cluster mode: copies that were not a msg of their topic (dropped).";
}}
