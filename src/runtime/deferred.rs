//! The kernel's deferred completion work, run past its batch of 20 when
//! input piled up (`Shard::drain_deferred`).

use super::shard::Shard;
use crate::metrics::inc;

/// `drain_deferred`: at most this many extra enters a turn (each runs up
/// to 20 deferred items: 640 in all), and an enter that brings fewer
/// completions than `DRAIN_BATCH` ends it (the kernel's work list is empty
/// or nearly). On this VM's 20,000-connection storm the held subscribers'
/// p99 during the storm went from 122-144 ms to 99-114 ms with it
/// (docs/benchmarks.md, session 16); 16,384 completions a turn instead
/// (enters up to the completion queue's half) measured 97-116 ms: longer
/// turns, a later flush.
const DRAIN_ENTERS: usize = 32;
const DRAIN_BATCH: usize = 16;

impl<M> Shard<M> {
    /// Under DEFER_TASKRUN an enter runs at most 20 items of the ring's
    /// deferred completion work (IO_LOCAL_TW_DEFAULT_MAX, since Linux 6.13:
    /// "io_uring: limit local tw done"; this VM runs 6.18): one receive
    /// each, mostly. A storm queues thousands at once (20,000
    /// close frames arriving together), and a publisher's next message
    /// waited behind them, 20 a turn, invisible to every histogram that
    /// starts at its completion. Enter again while an enter still brings a
    /// full batch: receives are cheap to complete, and once their
    /// completions are read the flush sends fan-out first.
    pub(super) fn drain_deferred(&mut self) {
        let room = self.ring.completion().capacity() / 2;
        // What the turn's own wait brought: less than a batch, and the
        // kernel's list was (nearly) empty; no extra enter.
        let mut brought = self.ring.completion().len();
        for _ in 0..DRAIN_ENTERS {
            let before = self.ring.completion().len();
            if brought < DRAIN_BATCH || before + DRAIN_BATCH > room {
                return;
            }
            if self.submit_and_poll().is_err() {
                return;
            }
            inc(&self.table.my_stats().deferred_work_enters_total, 1);
            brought = self.ring.completion().len() - before;
        }
    }
}
