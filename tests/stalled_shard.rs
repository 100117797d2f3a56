//! A shard that could not run for a while (a long turn, a stalled
//! machine) must not close a peer that did answer in time: when it runs
//! again, the input that arrived meanwhile is read before the deadlines
//! are judged (issue #11). The stall is made real by stopping the broker
//! process (SIGSTOP) after its ping went out, answering the ping while it
//! is stopped, and resuming it after the pong deadline has passed.

mod common;

use common::wsraw::{
    bounded, close_body, encode, masked, metric, wait_metric, RawWs, OP_CLOSE, OP_PING, OP_PONG,
    OP_TEXT,
};
use common::Broker;
use std::time::Duration;

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned and own; no memory involved.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

/// SIGSTOP, and wait until the process is stopped: kill(2) returns before
/// the target's threads have stopped, and what a test sends next must
/// arrive while they are.
async fn stop(pid: u32) {
    signal(pid, libc::SIGSTOP);
    // Every thread's state (the shards' too) follows its command's closing
    // parenthesis in /proc/PID/task/TID/stat.
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|stat| Some(stat.rsplit_once(") ")?.1.starts_with('T')))
                .unwrap_or(false)
        })
    };
    for _ in 0..500 {
        if all_stopped() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("process {pid} did not stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_sent_while_the_shard_stalled_is_read_before_its_deadline() {
    let b = Broker::start(&["--shards", "1", "--idle-ping", "1", "--pong-timeout", "1"]);
    let pid = b.child.id();
    let mut ws = RawWs::connect(b.addr, "/ws").await;
    // The server's idle ping, after about a second of silence.
    let ping = bounded(5, "the idle ping", ws.frame()).await;
    assert_eq!(ping.opcode, OP_PING);
    stop(pid).await;
    // Let a few of the stopped shard's ticks (100 ms) expire before the
    // pong arrives, so the tick's completion comes first when it resumes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ws.send(&masked(OP_PONG, &ping.payload)).await;
    // Past the pong deadline (1 s after the ping, plus a tick).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    signal(pid, libc::SIGCONT);
    // Still open: a ping of ours is answered.
    ws.send(&masked(OP_PING, b"alive")).await;
    let f = bounded(5, "our pong", ws.frame()).await;
    assert_eq!(
        (f.opcode, &f.payload[..]),
        (OP_PONG, &b"alive"[..]),
        "closed although the pong arrived in time (close code {:?})",
        f.close_code()
    );
}

/// Input that piled up while the shard could not run (here: 300 messages
/// sent while the process was stopped) is more than the kernel runs in
/// one enter under DEFER_TASKRUN (20 deferred items): the shard enters
/// again within the turn to run the rest (`drain_deferred`), and every
/// message is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pile_of_input_is_run_past_the_kernels_batch_of_20() {
    let b = Broker::start(&["--shards", "1", "--echo"]);
    let pid = b.child.id();
    let mut clients = Vec::new();
    for _ in 0..300 {
        clients.push(RawWs::connect(b.addr, "/echo").await);
    }
    let before = metric(b.addr, "ringfan_deferred_work_enters_total").await;
    stop(pid).await;
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(&masked(OP_TEXT, format!("piled {i}").as_bytes()))
            .await;
    }
    // Let loopback deliver all of it while the shard is stopped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(pid, libc::SIGCONT);
    for (i, ws) in clients.iter_mut().enumerate() {
        let f = bounded(10, "the echo", ws.frame()).await;
        assert_eq!(
            (f.opcode, &f.payload[..]),
            (OP_TEXT, format!("piled {i}").as_bytes()),
            "client {i}"
        );
    }
    let after = metric(b.addr, "ringfan_deferred_work_enters_total").await;
    assert!(
        after > before,
        "300 piled-up receives were run without an extra enter ({before} -> {after})"
    );
}

/// How the clients of `torn_down_a_budget_at_a_time` end.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// The close handshake (the storm): the reply is a send, then
    /// the receive's cancel and the close, each a step.
    Close,
    /// EOF: the broker half-closes first (a shutdown step).
    Eof,
    /// A reset: a dead connection, its slot closed, no shutdown.
    Reset,
}

/// A storm of closes (here: 400 clients ending while the shard was
/// stopped, so that their ends arrive together) is torn down a budget at a
/// time, counted with the flush's sends: a close is the kernel's
/// tcp_close, and a shard's 10,000 of them in one flush were one long
/// enter that every publish waited for (issue #11). The turns end with
/// connections still in line, every close frame is answered, and every
/// connection is released in the end.
async fn torn_down_a_budget_at_a_time(end: End) {
    let b = Broker::start(&["--shards", "1", "--echo"]);
    let pid = b.child.id();
    let mut clients = Vec::new();
    for _ in 0..400 {
        clients.push(RawWs::connect(b.addr, "/echo").await);
    }
    // Every one upgraded (an echo answered) before the stop.
    for ws in clients.iter_mut() {
        ws.send(&masked(OP_TEXT, b"up")).await;
        let f = bounded(10, "the echo", ws.frame()).await;
        assert_eq!(f.opcode, OP_TEXT);
        if end == End::Reset {
            ws.stream.set_zero_linger().expect("SO_LINGER 0");
        }
    }
    let before = metric(b.addr, "ringfan_flush_budget_spent_total").await;
    stop(pid).await;
    if end == End::Close {
        for ws in clients.iter_mut() {
            ws.send(&masked(OP_CLOSE, &close_body(1000, "bye"))).await;
        }
    } else {
        clients.clear();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(pid, libc::SIGCONT);
    for ws in clients.iter_mut() {
        bounded(10, "the close reply", ws.expect_close(1000)).await;
    }
    drop(clients);
    // The /metrics request's own connection is the one left.
    wait_metric(
        b.addr,
        "ringfan_connections_open",
        1,
        Duration::from_secs(10),
    )
    .await;
    let after = metric(b.addr, "ringfan_flush_budget_spent_total").await;
    assert!(
        after > before,
        "400 connections' ends were torn down in one flush: no turn spent its budget ({before} -> {after})"
    );
    // Still serving.
    let mut ws = RawWs::connect(b.addr, "/echo").await;
    ws.send(&masked(OP_TEXT, b"after")).await;
    let f = bounded(10, "the echo", ws.frame()).await;
    assert_eq!((f.opcode, &f.payload[..]), (OP_TEXT, &b"after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_close_handshakes_is_answered_a_budget_at_a_time() {
    torn_down_a_budget_at_a_time(End::Close).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_closes_is_torn_down_a_budget_at_a_time() {
    torn_down_a_budget_at_a_time(End::Eof).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_resets_is_torn_down_a_budget_at_a_time() {
    torn_down_a_budget_at_a_time(End::Reset).await;
}

/// What a stalled shard reads in the turn where a deadline of the
/// connection's fires is answered, not timed out: `input` (sent while the
/// broker is stopped) ends the connection with `code`, and the flush has
/// not settled it when the deadline looks. Here the upgrade's handshake
/// deadline (3 s) fires in the turn that reads it, 3.5 s after the
/// upgrade, past the close timeout (1 s) counted from it. (The deadline
/// judged such a connection by its close clock from the upgrade, counted a
/// timeout and dropped the close frame queued for it: in the storm
/// 10-17 % of the clean closes.)
async fn answered_though_a_deadline_is_due(input: Vec<u8>, code: u16) {
    let b = Broker::start(&[
        "--shards",
        "1",
        "--echo",
        "--handshake-timeout",
        "3",
        "--close-timeout",
        "1",
    ]);
    let pid = b.child.id();
    let connecting = std::time::Instant::now();
    let mut ws = RawWs::connect(b.addr, "/echo").await;
    ws.send(&masked(OP_TEXT, b"up")).await;
    assert_eq!(bounded(5, "the echo", ws.frame()).await.opcode, OP_TEXT);
    stop(pid).await;
    // The case needs the handshake deadline still ahead at the stop: had
    // it fired while the connection was open, the next one would be the
    // idle ping's, 30 s on, and the close would be flushed as usual.
    let stopped = connecting.elapsed();
    assert!(
        stopped < Duration::from_millis(2_500),
        "the stop came {stopped:?} after the connect, too late for the case"
    );
    ws.send(&input).await;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    signal(pid, libc::SIGCONT);
    bounded(5, "the close frame", ws.expect_close(code)).await;
    assert_eq!(
        metric(b.addr, "ringfan_timeouts_total").await,
        0,
        "counted as timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_read_with_a_due_deadline_is_answered_not_timed_out() {
    answered_though_a_deadline_is_due(masked(OP_CLOSE, &close_body(1000, "bye")), 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_error_read_with_a_due_deadline_gets_its_close() {
    // An unmasked client frame: 1002.
    let unmasked = encode(true, 0, OP_TEXT, b"no mask", None);
    answered_though_a_deadline_is_due(unmasked, 1002).await;
}
