//! A shard that could not run for a while (a long turn, a stalled
//! machine) must not close a peer that did answer in time: when it runs
//! again, the input that arrived meanwhile is read before the deadlines
//! are judged (issue #11). The stall is made real by stopping the broker
//! process (SIGSTOP) after its ping went out, answering the ping while it
//! is stopped, and resuming it after the pong deadline has passed.

mod common;

use common::wsraw::{bounded, masked, metric, RawWs, OP_PING, OP_PONG, OP_TEXT};
use common::Broker;
use std::time::Duration;

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned and own; no memory involved.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pong_sent_while_the_shard_stalled_is_read_before_its_deadline() {
    let b = Broker::start(&["--shards", "1", "--idle-ping", "1", "--pong-timeout", "1"]);
    let pid = b.child.id();
    let mut ws = RawWs::connect(b.addr, "/ws").await;
    // The server's idle ping, after about a second of silence.
    let ping = bounded(5, "the idle ping", ws.frame()).await;
    assert_eq!(ping.opcode, OP_PING);
    signal(pid, libc::SIGSTOP);
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
    signal(pid, libc::SIGSTOP);
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
