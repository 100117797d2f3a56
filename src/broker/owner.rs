//! What a shard keeps for the topics it owns (by hash): the sequence
//! counter, the last message (the last-value cache) and which shards have
//! subscribers whose patterns match.

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::host::ShardMask;
use super::topic::matches;
use super::trie::Trie;
use super::wire::{self, TopicAt};

#[derive(Debug, Default)]
struct TopicState {
    seq: u64,
    /// The last message, and where its data starts, to rebuild it as a
    /// snapshot (`"snapshot":true`) on demand.
    last: Option<(Bytes, u32)>,
}

#[derive(Debug)]
pub struct Owned {
    topics: FxHashMap<Box<str>, TopicState>,
    /// Patterns (exact or wildcard) → shards subscribed to them.
    interest: Trie<u16>,
    /// Bytes held by last values, and the most allowed.
    lvc_bytes: usize,
    max_lvc_bytes: usize,
}

impl Default for Owned {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

/// A published message, framed.
pub struct Published {
    pub frame: Bytes,
    pub at: TopicAt,
    /// Shards with a matching subscription, as a bitmask.
    pub shards: ShardMask,
}

impl Owned {
    pub fn new(max_lvc_bytes: usize) -> Self {
        Self {
            topics: FxHashMap::default(),
            interest: Trie::new(),
            lvc_bytes: 0,
            max_lvc_bytes,
        }
    }

    /// Bytes of last values held.
    pub fn lvc_bytes(&self) -> usize {
        self.lvc_bytes
    }

    pub fn interest(&mut self, pattern: &str, shard: u16, add: bool) {
        if add {
            self.interest.insert(pattern, shard);
        } else {
            self.interest.remove(pattern, shard);
        }
    }

    /// Assign the next seq, frame the message once, remember it, and say
    /// which shards want it.
    pub fn publish(&mut self, topic: &str, data: &[u8]) -> Published {
        let st = match self.topics.get_mut(topic) {
            Some(st) => st,
            None => self.topics.entry(topic.into()).or_default(),
        };
        st.seq += 1;
        let (frame, at) = wire::msg(topic, st.seq, data, false);
        let old = st.last.as_ref().map_or(0, |(f, _)| f.len());
        st.last = Some((frame.clone(), (frame.len() - data.len() - 1) as u32));
        self.lvc_bytes = self.lvc_bytes + frame.len() - old;
        if self.lvc_bytes > self.max_lvc_bytes {
            self.evict(topic);
        }
        let mut shards: ShardMask = 0;
        self.interest.for_each_match(topic, |s| shards |= 1 << s);
        Published { frame, at, shards }
    }

    /// Forget last values (not seq counters) until a tenth below the cap,
    /// keeping `keep`'s. Done in bulk so the scan is rare.
    fn evict(&mut self, keep: &str) {
        let target = self.max_lvc_bytes - self.max_lvc_bytes / 10;
        for (t, st) in self.topics.iter_mut() {
            if self.lvc_bytes <= target {
                break;
            }
            if &**t != keep {
                if let Some((f, _)) = st.last.take() {
                    self.lvc_bytes -= f.len();
                }
            }
        }
    }

    /// The last message of every owned topic matching any of `patterns`,
    /// as snapshot frames.
    pub fn snapshot(&self, patterns: &[Box<str>]) -> Vec<(Bytes, TopicAt)> {
        let mut out = Vec::new();
        let mut emit = |topic: &str, st: &TopicState| {
            if let Some((frame, data_at)) = &st.last {
                let data = frame
                    .get(*data_at as usize..frame.len() - 1)
                    .unwrap_or_default();
                out.push(wire::msg(topic, st.seq, data, true));
            }
        };
        if let [p] = patterns {
            if !super::topic::is_pattern(p) {
                // One exact topic: a lookup, not a scan.
                if let Some((t, st)) = self.topics.get_key_value(p.as_ref()) {
                    emit(t, st);
                }
                return out;
            }
        }
        for (t, st) in &self.topics {
            if patterns.iter().any(|p| matches(p, t)) {
                emit(t, st);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(f: &Bytes) -> String {
        let h = crate::ws::frame::parse_header(f).unwrap().unwrap();
        String::from_utf8(f[h.len..].to_vec()).unwrap()
    }

    #[test]
    fn seq_is_per_topic_and_gapless() {
        let mut o = Owned::default();
        for i in 1..=3 {
            let p = o.publish("a.b", b"1");
            assert!(payload(&p.frame).contains(&format!("\"seq\":{i},")));
        }
        let p = o.publish("a.c", b"1");
        assert!(payload(&p.frame).contains("\"seq\":1,"));
    }

    #[test]
    fn interest_by_pattern() {
        let mut o = Owned::default();
        o.interest("a.*", 1, true);
        o.interest("a.b", 3, true);
        o.interest(">", 0, true);
        assert_eq!(o.publish("a.b", b"1").shards, 0b1011);
        assert_eq!(o.publish("a.c", b"1").shards, 0b0011);
        o.interest(">", 0, false);
        assert_eq!(o.publish("x", b"1").shards, 0);
    }

    #[test]
    fn last_values_stay_under_the_cap() {
        let mut o = Owned::new(10_000);
        for i in 0..1000 {
            o.publish(&format!("t{i}"), &[b'1'; 100]);
            assert!(o.lvc_bytes() <= 10_000, "{} after {i}", o.lvc_bytes());
        }
        // The newest is always kept; seq keeps counting for forgotten ones.
        assert_eq!(o.snapshot(&["t999".into()]).len(), 1);
        o.publish("t0", b"2");
        let p = o.publish("t0", b"3");
        let h = crate::ws::frame::parse_header(&p.frame).unwrap().unwrap();
        assert!(String::from_utf8_lossy(&p.frame[h.len..]).contains("\"seq\":3,"));
    }

    #[test]
    fn snapshots_carry_the_last_message() {
        let mut o = Owned::default();
        o.publish("md.X.A", br#"{"p":1}"#);
        o.publish("md.X.A", br#"{"p":2}"#);
        o.publish("md.Y.A", br#"[3]"#);
        o.publish("other", b"4");
        let mut snap: Vec<String> = o
            .snapshot(&["md.*.A".into()])
            .iter()
            .map(|(f, _)| payload(f))
            .collect();
        snap.sort();
        assert_eq!(
            snap,
            vec![
                r#"{"op":"msg","topic":"md.X.A","seq":2,"snapshot":true,"data":{"p":2}}"#,
                r#"{"op":"msg","topic":"md.Y.A","seq":1,"snapshot":true,"data":[3]}"#,
            ]
        );
        let exact = o.snapshot(&["other".into()]);
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0].1.get(&exact[0].0), "other");
        assert!(o.snapshot(&["nothing".into()]).is_empty());
    }
}
