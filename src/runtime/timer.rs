//! A coarse timing wheel for connection deadlines (handshake, idle ping,
//! pong, close linger). A 100 ms resolution is plenty for these, and it
//! makes each connection cost one 8-byte wheel entry, with no per-message
//! work: activity only updates a timestamp, and the wheel re-checks lazily.

use std::time::Duration;

/// Time in wheel ticks since the shard started.
pub type Ticks = u32;

pub const TICK: Duration = Duration::from_millis(100);

/// A duration in whole ticks, rounded up so that no deadline comes early.
pub fn ticks(d: Duration) -> Ticks {
    let t = d.as_nanos().div_ceil(TICK.as_nanos());
    t.min(u32::MAX as u128 / 2) as Ticks
}

/// The tick that `elapsed` falls in.
pub fn now(elapsed: Duration) -> Ticks {
    (elapsed.as_nanos() / TICK.as_nanos()).min(u32::MAX as u128 / 2) as Ticks
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: u32,
    pub gen: u32,
}

pub struct Wheel {
    slots: Vec<Vec<Entry>>,
    /// The next tick not yet expired.
    next: Ticks,
}

impl Wheel {
    /// A wheel that schedules up to `span` ticks ahead; later deadlines
    /// land in the farthest slot and are simply re-checked then.
    pub fn new(span: u32) -> Self {
        let n = span.max(2).next_power_of_two() as usize;
        Self {
            slots: (0..n).map(|_| Vec::new()).collect(),
            next: 0,
        }
    }

    fn mask(&self) -> u32 {
        self.slots.len() as u32 - 1
    }

    /// Wake `entry` at tick `at` (or at the next expiry if `at` passed).
    pub fn schedule(&mut self, at: Ticks, entry: Entry) {
        let at = at.clamp(self.next, self.next + self.mask());
        let i = (at & self.mask()) as usize;
        self.slots[i].push(entry);
    }

    /// Move every entry due up to and including `now` into `due`.
    pub fn expire(&mut self, now: Ticks, due: &mut Vec<Entry>) {
        while self.next <= now {
            let i = (self.next & self.mask()) as usize;
            // The slot's buffer goes with its entries: kept, every slot
            // would hold room for the most entries it ever had (a connect
            // storm's 80+ a tick on each of 512 slots a shard) for good.
            due.extend(std::mem::take(&mut self.slots[i]));
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: u32) -> Entry {
        Entry { key, gen: 0 }
    }

    #[test]
    fn durations_round_up() {
        assert_eq!(ticks(Duration::from_secs(1)), 10);
        assert_eq!(ticks(Duration::from_millis(1)), 1);
        assert_eq!(ticks(Duration::ZERO), 0);
        assert_eq!(now(Duration::from_millis(199)), 1);
    }

    #[test]
    fn fires_at_the_tick() {
        let mut w = Wheel::new(64);
        w.schedule(3, e(1));
        w.schedule(5, e(2));
        let mut due = Vec::new();
        w.expire(2, &mut due);
        assert!(due.is_empty());
        w.expire(4, &mut due);
        assert_eq!(due, vec![e(1)]);
        due.clear();
        w.expire(10, &mut due);
        assert_eq!(due, vec![e(2)]);
    }

    #[test]
    fn past_and_far_deadlines() {
        let mut w = Wheel::new(8);
        let mut due = Vec::new();
        w.expire(20, &mut due);
        w.schedule(5, e(1)); // already past: next expiry
        w.schedule(1000, e(2)); // beyond the span: farthest slot
        w.expire(21, &mut due);
        assert_eq!(due, vec![e(1)]);
        due.clear();
        w.expire(28, &mut due);
        assert_eq!(due, vec![e(2)]);
    }
}
