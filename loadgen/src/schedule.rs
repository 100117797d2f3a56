//! What one publisher sends and when, whether it publishes over a
//! WebSocket (`driver`) or over HTTP (`http_pub`): its share of the rate,
//! its topics, and the payload of each message. One definition for both,
//! so the two ways of publishing are measured on the same load.

use crate::feed;
use crate::msg;
use crate::plan::{Data, Plan, Publishing, Scenario};

/// A publishing (or echoing) connection's schedule.
pub struct Schedule {
    /// Its index among the publishers (or echo connections).
    pub index: u32,
    /// Messages per second (before any burst); 0 is closed loop.
    pub rate: f64,
    /// Its first message's offset, so publishers interleave.
    pub phase_s: f64,
    /// Topics it publishes on, and their cumulative weights (feed).
    topics: Vec<u32>,
    cdf: Vec<f64>,
}

impl Schedule {
    pub fn new(plan: &Plan, index: u32) -> Self {
        let n = match plan.scenario {
            Scenario::Echo => plan.echoers,
            _ => plan.publishers,
        }
        .max(1);
        let (topics, weights): (Vec<u32>, Vec<f64>) = match &plan.publishing {
            Publishing::Owned(w) => (0..plan.topics.len() as u32)
                .filter(|t| u64::from(*t) % n == u64::from(index))
                .map(|t| (t, w[t as usize]))
                .unzip(),
            _ => (Vec::new(), Vec::new()),
        };
        let rate = match &plan.publishing {
            // A feed handler publishes its symbols' share of the total.
            Publishing::Owned(_) => plan.rate * weights.iter().sum::<f64>(),
            _ => plan.rate_each(),
        };
        let mut acc = 0.0;
        let total: f64 = weights.iter().sum();
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total.max(f64::MIN_POSITIVE);
                acc
            })
            .collect();
        let phase_s = if rate > 0.0 {
            f64::from(index) / n as f64 / plan.rate_each().max(f64::MIN_POSITIVE)
        } else {
            0.0
        };
        Schedule {
            index,
            rate,
            phase_s: phase_s.min(1.0),
            topics,
            cdf,
        }
    }

    /// Open loop: when its message number `sent` (0-based) is due, in
    /// nanoseconds on the run's clock, or None once that is past the
    /// run's end. Closed loop (rate 0) has no schedule: None.
    pub fn due_ns(&self, plan: &Plan, start_ns: u64, sent: u64) -> Option<u64> {
        if self.rate <= 0.0 {
            return None;
        }
        let at = self.phase_s + plan.due_at(self.rate, sent);
        let end_s = (plan.warmup + plan.duration).as_secs_f64();
        (at < end_s).then(|| start_ns + (at * 1e9) as u64)
    }

    /// The topic of its next message.
    pub fn pick(&self, plan: &Plan, rng: &mut fastrand::Rng) -> u32 {
        match &plan.publishing {
            Publishing::Once => 0,
            Publishing::Uniform => rng.usize(..plan.topics.len().max(1)) as u32,
            Publishing::Owned(_) => {
                let x = rng.f64();
                let i = self.cdf.partition_point(|c| *c < x);
                self.topics
                    .get(i.min(self.topics.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            }
        }
    }
}

/// Each topic's book, for [`write_data`]: fanout with `--data quote`
/// starts every topic's book now, on the symbol of the topic's index
/// ([`feed::symbols`]) at a price seeded by that index, so every publisher
/// quotes a topic alike; otherwise none yet (feed and storm make each on
/// first use, from the publisher's generator, as they always have).
pub fn books(plan: &Plan) -> Vec<Option<feed::Book>> {
    let n = plan.topics.len();
    if plan.scenario == Scenario::Fanout && plan.data == Data::Quote {
        feed::symbols(n)
            .into_iter()
            .enumerate()
            .map(|(i, sym)| {
                let mut seed = fastrand::Rng::with_seed(0x7175_6f74_6500 ^ i as u64); // "quote"
                Some(feed::Book::new(sym, &mut seed))
            })
            .collect()
    } else {
        (0..n).map(|_| None).collect()
    }
}

/// The `data` of a message on `topic` meant for time `intended`: the
/// feed's book update (feed, storm, fanout with `--data quote`) or the
/// timestamped padding payload, appended to `out`. `books` holds each
/// topic's book (see [`books`]), made on first use when not there yet.
pub fn write_data(
    plan: &Plan,
    books: &mut [Option<feed::Book>],
    rng: &mut fastrand::Rng,
    topic: u32,
    intended: u64,
    out: &mut Vec<u8>,
) {
    let quotes = match plan.scenario {
        Scenario::Feed | Scenario::Storm => true,
        Scenario::Fanout => plan.data == Data::Quote,
        Scenario::Echo | Scenario::Conns => false,
    };
    if quotes {
        let Some(slot) = books.get_mut(topic as usize) else {
            msg::write_payload(out, intended, plan.payload);
            return;
        };
        let book = slot.get_or_insert_with(|| {
            let name = plan.topics.get(topic as usize).map_or("X", String::as_str);
            feed::Book::new(name.rsplit('.').next().unwrap_or("X"), rng)
        });
        book.update(rng, intended, out);
    } else {
        msg::write_payload(out, intended, plan.payload);
    }
}
