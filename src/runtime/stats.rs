//! The runtime's per-shard counters (connections, bytes, sends, mail) and
//! histograms (publish-to-send latency, queued bytes at each send); see
//! [`crate::metrics`] for how they are kept and rendered.

use crate::metrics::{counters, BytesHistogram, LatencyHistogram};

counters! { ShardStats {
    connections_open: gauge, "Connections currently open (any phase).";
    direct_descriptors: gauge, "Connections holding a slot of the shard's io_uring direct descriptor table (not file descriptors: they do not show in process_open_fds).";
    direct_descriptor_slots: gauge, "Size of the shard's direct descriptor table (--max-connections-per-shard, capped by the hard RLIMIT_NOFILE).";
    connections_accepted_total: counter, "Connections accepted.";
    websocket_upgrades_total: counter, "Handshakes that upgraded to WebSocket.";
    handshakes_rejected_total: counter, "Requests answered with an HTTP error.";
    messages_received_total: counter, "Complete WebSocket messages received.";
    bytes_received_total: counter, "Bytes received from clients.";
    frames_sent_total: counter, "WebSocket frames (and HTTP responses) sent.";
    deflate_compressions_total: counter, "Fan-out messages compressed for permessage-deflate, counted on the shard that did it: at most one per publish in the process (and one per snapshot value), whatever the number of shards and subscribers (including those found not to pay).";
    deflate_frames_total: counter, "Fan-out frames queued compressed, to connections that agreed to permessage-deflate.";
    bytes_sent_total: counter, "Bytes sent to clients.";
    sends_total: counter, "Send operations submitted (each may carry many frames).";
    protocol_errors_total: counter, "Connections failed for a protocol violation.";
    timeouts_total: counter, "Connections closed by a handshake, pong or close deadline.";
    recv_enobufs_total: counter, "Receives stopped because the buffer ring was empty.";
    deferred_work_enters_total: counter, "Extra io_uring enters a loop turn made to run the kernel's deferred completion work past its 20-item batch, each after one that brought 16 or more completions (a burst of input waiting: a reconnect storm, a stalled shard).";
    flush_budget_spent_total: counter, "Loop turns whose flush spent its budget (64 sends and teardown steps: a receive's cancel, a shutdown, a close; no budget under --write-delay-ms) with connections still in line; they go on in the next turn, after its input (a storm of closes, a broadcast's sends).";
    accept_table_full_total: counter, "Accepts paused because the direct descriptor table was full.";
    upgrades_refused_full_total: counter, "WebSocket upgrades answered 503: the shard's table is down to its HTTP reserve.";
    recv_paused_total: counter, "Times reading from a connection stopped because its own send backlog was over --max-backlog-read.";
    recv_too_slow_total: counter, "Connections closed 1008 for holding an unfinished message while sending under --min-recv-rate.";
    handshakes_shed_total: counter, "Connections in their HTTP handshake closed to keep slots free (--max-handshakes-per-shard, or a busy table).";
    handshakes_deferred_total: counter, "Request heads left for a later loop turn: the turn had parsed --handshakes-per-turn already (the admin listener's never wait).";
    peer_connections_refused_total: counter, "Connections answered 429: their address already had --max-connections-per-ip open.";
    peer_rate_refused_total: counter, "Connections answered 429: their address opened more than --max-handshakes-per-ip a second.";
    peer_addresses_tracked: summed_gauge, "Client addresses (IPv4, or IPv6 /64) counted by the per-address limits.";
    proxy_header_errors_total: counter, "Connections closed unanswered under --proxy-protocol: their first bytes were not a valid PROXY header.";
    close_reasons_dropped_total: counter, "Closes the application asked for whose reason was sent empty: over 255 distinct reasons were seen.";
    tls_handshakes_full ["tls_handshakes_total", "result" = "full"]: counter, "TLS handshakes, by result: full, resumed (a session ticket or ID), failed (an alert was sent), incomplete (the connection ended first: a timeout, EOF, or shed).";
    tls_handshakes_resumed ["tls_handshakes_total", "result" = "resumed"]: counter, "";
    tls_handshakes_failed ["tls_handshakes_total", "result" = "failed"]: counter, "";
    tls_handshakes_incomplete ["tls_handshakes_total", "result" = "incomplete"]: counter, "";
    tls_handshakes_deferred_total: counter, "TLS handshake input left for a later loop turn: the turn had computed --tls-handshakes-per-turn flights already.";
    tls_errors_total: counter, "TLS connections failed after their handshake (a bad record, an unexpected message).";
    tls_bytes_received_total: counter, "TLS bytes received (ciphertext), included in bytes_received_total.";
    tls_bytes_sent_total: counter, "TLS bytes sent (ciphertext), included in bytes_sent_total.";
    mail_received_total: counter, "Cross-shard messages received.";
    doorbells_rung_total: counter, "Wake-ups sent to sleeping shards.";
    doorbells_received_total: counter, "Wake-ups received from other shards.";
} histograms {
    publish_to_send_seconds: LatencyHistogram, "From a publish's arrival (the loop turn that read its pub frame, on the publisher's shard) to the submission of the send carrying it to a subscriber, once per (message, subscriber). Not counted: snapshots, messages held back by --slow-consumer conflate, messages never sent (dropped, shed, closed connections).";
    loop_turn_seconds: LatencyHistogram, "How long one loop turn's work took (completions, deadlines, mail, flush; not the wait for the next completion), once per turn that did any.";
    connection_queued_bytes: BytesHistogram, "A connection's backlog (queued and unsent bytes, each frame counted with 64 bytes of overhead) when a send to it is submitted, once per send.";
}}
