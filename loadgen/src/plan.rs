//! What a run does, decided before any connection opens: which global
//! connection index is a subscriber (and of which topic), which publishes
//! (how fast, on what), which source address it dials from, which shard
//! drives it. Every figure the report checks against (expected deliveries,
//! subscriber counts) follows from this and from what actually connected.

use crate::zipf::{self, Zipf};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Feed,
    Echo,
    Conns,
    /// Hold subscribers under a feed, drop some at once, reconnect them.
    Storm,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::Feed => "feed",
            Self::Echo => "echo",
            Self::Conns => "conns",
            Self::Storm => "storm",
        }
    }

    /// How long to wait for deliveries in flight once publishing stops,
    /// unless --grace says: conns' one broadcast to every connection can
    /// take long to reach them all.
    pub fn default_grace(self) -> Duration {
        match self {
            Self::Conns => Duration::from_secs(60),
            _ => Duration::from_secs(5),
        }
    }

    /// How often a shard checks its send schedule, unless --tick says:
    /// holding idle connections (conns) needs no fine-grained schedule.
    pub fn default_tick(self) -> Duration {
        match self {
            Self::Conns => Duration::from_millis(5),
            _ => Duration::from_micros(100),
        }
    }
}

/// What one connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subscribes to one topic (by index) and accounts what arrives.
    Subscriber { topic: u32 },
    /// Publishes; `index` among the publishers.
    Publisher { index: u32 },
    /// Sends to `/echo` and times the round trip; `index` among them.
    Echo { index: u32 },
}

/// A reconnect storm: `drop` of the subscribers are closed at once, `at`
/// into the measured window, and reconnect at once, resubscribing with
/// `snapshot: true`; the others are held throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storm {
    pub drop: u64,
    pub at: Duration,
}

/// How publishers choose the topic of each message.
#[derive(Debug, Clone)]
pub enum Publishing {
    /// Uniformly over all topics (fanout).
    Uniform,
    /// Each publisher owns the topics `t % P == index` and picks among them
    /// by these weights (feed: Zipf update rates, one feed handler per
    /// symbol so that each symbol's updates come from one place).
    Owned(Vec<f64>),
    /// One message in all, on topic 0, when measuring starts (conns).
    Once,
}

/// What a published message's `data` is (fanout's `--data`; feed and
/// storm always publish quotes).
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Data {
    /// `{"t":…,"p":"abc…"}`, padded to `--payload` bytes.
    #[default]
    Pad,
    /// The feed's quotes and trades (about 100 bytes): realistic to
    /// compress, unlike the padding.
    Quote,
}

/// How publishers reach the broker (`--publish-via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Each publisher is a WebSocket connection sending `pub`s.
    Ws,
    /// Each publisher is an HTTP/1.1 keep-alive connection sending
    /// `POST /publish` with up to `batch` messages a request, driven by
    /// its own thread (`http_pub`), not by the client shards.
    Http { batch: u32 },
}

/// One broker to connect to (a `--url`): its address, request path, and
/// for wss:// the TLS side of the dial.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: String,
    pub tls: Option<ringfan::runtime::TlsDial>,
}

impl Endpoint {
    /// A ws:// endpoint (no TLS).
    pub fn ws(addr: SocketAddr, path: &str) -> Self {
        Endpoint {
            addr,
            path: path.into(),
            tls: None,
        }
    }
}

/// Every endpoint is on IPv4 loopback: the generator may then spread its
/// connections over source addresses of 127.0.0.0/8, and the listen
/// backlog it meets is this machine's.
pub fn all_loopback<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> bool {
    endpoints
        .into_iter()
        .all(|e| e.addr.ip().is_loopback() && e.addr.is_ipv4())
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    /// The brokers (`--url`, one or more): subscribers and echo connections
    /// are spread over them round-robin, in their order in the plan.
    pub endpoints: Vec<Endpoint>,
    /// Where publishers connect (`--publish-url`), round-robin by
    /// publisher index; empty: over `endpoints` as the others.
    pub publish_endpoints: Vec<Endpoint>,
    pub topics: Vec<String>,
    /// Subscribers per topic; subscriber k (in topic order) is connection k.
    pub subs_per_topic: Vec<u64>,
    pub subscribers: u64,
    pub publishers: u64,
    pub echoers: u64,
    /// Messages per second over all publishers (or echo connections); 0 is
    /// closed loop: as fast as acknowledgements come back, `window` in
    /// flight per connection.
    pub rate: f64,
    pub window: u32,
    pub payload: usize,
    /// Padding or quotes (`--data`).
    pub data: Data,
    pub publishing: Publishing,
    /// How publishers publish.
    pub via: Via,
    /// Feed: burst multiplier and its window in seconds after the start.
    pub burst: Option<(f64, f64, f64)>,
    pub warmup: Duration,
    pub duration: Duration,
    /// After the last publish, how long to wait for deliveries still in
    /// flight before counting the missing ones as lost.
    pub grace: Duration,
    /// Conns: how long to hold every connection before the broadcast.
    pub hold: Duration,
    pub sources: Vec<IpAddr>,
    /// Source ports bound exactly (--source-ports), or None: the kernel
    /// picks them.
    pub source_ports: Option<(u16, u16)>,
    pub shards: usize,
    /// Handshakes in flight per shard while connecting.
    pub connect_window: usize,
    /// Offer permessage-deflate (`--deflate`).
    pub deflate: bool,
    pub connect_timeout: Duration,
    pub tick: Duration,
    pub snapshot: bool,
    /// Storm: which subscribers are dropped, and when.
    pub storm: Option<Storm>,
    /// Storm: drive the held subscribers and publishers on shard 0 apart
    /// from the dropped ones (see `held_apart()`).
    pub held_apart: bool,
    /// The token each connection presents, if any (--token, --token-file,
    /// --mint-secret-file).
    pub auth: crate::auth::Auth,
    /// Running sum of `subs_per_topic` (see [`Plan::seal`]).
    pub prefix: Vec<u64>,
}

impl Plan {
    /// WebSocket connections: what the client shards dial.
    pub fn connections(&self) -> u64 {
        self.subscribers + self.ws_publishers() + self.echoers
    }

    /// Publishers that are WebSocket connections.
    pub fn ws_publishers(&self) -> u64 {
        match self.via {
            Via::Ws => self.publishers,
            Via::Http { .. } => 0,
        }
    }

    /// Publishers that are HTTP connections, each on its own thread.
    pub fn http_publishers(&self) -> u64 {
        self.publishers - self.ws_publishers()
    }

    /// Connection `i`'s role. Subscribers first (grouped by topic), then
    /// publishers, then echo connections.
    pub fn kind(&self, i: u64) -> Kind {
        if i < self.subscribers {
            // The last topic whose first subscriber is at or before i
            // (topics with none share the next one's start and are passed).
            let topic = self.prefix.partition_point(|&start| start <= i) - 1;
            Kind::Subscriber {
                topic: topic as u32,
            }
        } else if i < self.subscribers + self.ws_publishers() {
            Kind::Publisher {
                index: (i - self.subscribers) as u32,
            }
        } else {
            Kind::Echo {
                index: (i - self.subscribers - self.ws_publishers()) as u32,
            }
        }
    }

    /// The broker connection `i` dials (and redials: a storm's reconnection
    /// goes back to the same one): subscriber `k` to endpoint `k % n`, so
    /// each topic's subscribers are spread evenly over the brokers;
    /// publisher and echo connection `j` to the `j % n`-th of theirs.
    pub fn endpoint_of(&self, i: u64) -> &Endpoint {
        match self.kind(i) {
            Kind::Subscriber { .. } => pick(&self.endpoints, i),
            Kind::Publisher { index } => self.publisher_endpoint(index),
            Kind::Echo { index } => pick(&self.endpoints, u64::from(index)),
        }
    }

    /// Where publisher `index` (a WebSocket or an HTTP one) connects.
    pub fn publisher_endpoint(&self, index: u32) -> &Endpoint {
        if self.publish_endpoints.is_empty() {
            pick(&self.endpoints, u64::from(index))
        } else {
            pick(&self.publish_endpoints, u64::from(index))
        }
    }

    /// The first broker, for messages that name one.
    pub fn target(&self) -> SocketAddr {
        self.endpoints[0].addr
    }

    /// Every broker address, as `a, b, c`, for messages.
    pub fn targets(&self) -> String {
        self.brokers()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The distinct broker addresses, in the order first named.
    pub fn brokers(&self) -> Vec<SocketAddr> {
        let mut all = Vec::new();
        for e in self.endpoints.iter().chain(&self.publish_endpoints) {
            if !all.contains(&e.addr) {
                all.push(e.addr);
            }
        }
        all
    }

    /// Compute what follows from the fields; call once they are set.
    pub fn seal(&mut self) {
        assert!(!self.endpoints.is_empty(), "a plan needs a broker");
        let mut sum = 0;
        self.prefix = self
            .subs_per_topic
            .iter()
            .map(|n| {
                let at = sum;
                sum += n;
                at
            })
            .collect();
        self.subscribers = sum;
    }

    /// Whether connection `i` is one the storm drops (and reconnects):
    /// `drop` of the subscribers, spread evenly over them (and so over the
    /// topics, which group them).
    pub fn dropped(&self, i: u64) -> bool {
        self.dropped_before(i.saturating_add(1)) > self.dropped_before(i)
    }

    /// How many of the subscribers before `i` the storm drops: the
    /// spacing `dropped` follows (its rank, for `shard_of`).
    fn dropped_before(&self, i: u64) -> u64 {
        let (Some(s), n) = (self.storm, self.subscribers) else {
            return 0;
        };
        if n == 0 {
            return 0;
        }
        let m = u128::from(s.drop.min(n));
        (u128::from(i.min(n)) * m / u128::from(n)) as u64
    }

    /// Nanoseconds (on the run's clock) at which the storm drops its
    /// connections, given when publishing started.
    pub fn storm_at_ns(&self, start_ns: u64) -> Option<u64> {
        self.storm
            .map(|s| start_ns.saturating_add((self.warmup + s.at).as_nanos() as u64))
    }

    /// Which shard drives connection `i`: round-robin, except in a storm
    /// with two or more shards (`held_apart`).
    pub fn shard_of(&self, i: u64) -> usize {
        let n = self.shards as u64;
        if !self.held_apart() {
            (i % n) as usize
        } else if self.dropped(i) {
            // By its rank among the dropped (they are spaced evenly, so
            // `i` itself can fall on one residue for all of them).
            (1 + self.dropped_before(i) % (n - 1)) as usize
        } else {
            0
        }
    }

    /// A storm with two or more client shards (`held_apart` set, as the
    /// storm scenario does when the held fit one ring): shard 0 drives the held
    /// subscribers and the publishers, the others the dropped subscribers.
    /// The held subscribers' latency is what the storm measures; on one
    /// thread with the reconnections it measured the generator's own
    /// storm work (on the 2-core VM, a held p99 of 250-300 ms while the
    /// broker's own publish-to-send p99 was 2.5-5 ms: issue #11).
    pub fn held_apart(&self) -> bool {
        self.held_apart && self.shards >= 2 && self.storm.is_some_and(|s| s.drop > 0)
    }

    pub fn source_of(&self, i: u64) -> Option<IpAddr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[(i % self.sources.len() as u64) as usize])
        }
    }

    /// The address connection `i` binds on its `attempt`-th try: its
    /// source with port 0 (the kernel picks), or with --source-ports the
    /// `i / port_share`-th port of the range; a retry (the port was taken
    /// by another socket) moves past the ports the plan itself uses.
    pub fn bind_of(&self, i: u64, attempt: u32) -> Option<SocketAddr> {
        let ip = self.source_of(i);
        let Some((lo, hi)) = self.source_ports else {
            return ip.map(|ip| SocketAddr::new(ip, 0));
        };
        let k = port_share(self.sources.len(), &self.endpoints);
        let span = u64::from(hi - lo) + 1;
        let stride = self.connections().div_ceil(k).max(1);
        let at = (i / k + u64::from(attempt) * stride) % span;
        let ip = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Some(SocketAddr::new(ip, lo + at as u16))
    }

    /// Seconds after the start at which message `k` of a sender at `rate`
    /// is due (the open-loop schedule), with the feed's burst (a stretch
    /// of time at `mult` times the rate) folded in.
    pub fn due_at(&self, rate: f64, k: u64) -> f64 {
        let x = k as f64 / rate;
        match self.burst {
            Some((mult, at, len)) if mult > 0.0 => {
                if x < at {
                    x
                } else if x < at + mult * len {
                    at + (x - at) / mult
                } else {
                    x - (mult - 1.0) * len
                }
            }
            _ => x,
        }
    }

    /// Whether messages go out on a schedule (a rate), so that how late
    /// the generator sent them (the send lag) means something. Closed loop
    /// and conns' one broadcast send when they can: on time by definition.
    pub fn open_loop(&self) -> bool {
        self.rate > 0.0
    }

    /// Messages per second for one publisher or echo connection.
    pub fn rate_each(&self) -> f64 {
        let n = match self.scenario {
            Scenario::Echo => self.echoers,
            _ => self.publishers,
        };
        if n == 0 {
            0.0
        } else {
            self.rate / n as f64
        }
    }
}

/// How many connections one bound (source address, source port) carries
/// under --source-ports: one per broker address they reach, since a TCP
/// connection is its four-tuple (two broker addresses behind one source
/// give 2 x 64,512, as `bench/storm-s17/netstorm.sh` needs). Subscriber
/// `i` goes from source `i % k` to endpoint `i % E`, and any lcm(k, E)
/// consecutive `i` differ in that pair, so port `i / lcm(k, E)` is never
/// bound twice for one pair. Endpoints that repeat an address count once
/// for all (only the sources then). Publishers choose their endpoint by
/// index: a clash of theirs is a retry (`bind_of`).
pub fn port_share(sources: usize, endpoints: &[Endpoint]) -> u64 {
    let k = sources.max(1) as u64;
    let mut addrs: Vec<SocketAddr> = endpoints.iter().map(|e| e.addr).collect();
    addrs.sort_unstable();
    addrs.dedup();
    if addrs.len() < endpoints.len() || endpoints.len() < 2 {
        return k;
    }
    let e = endpoints.len() as u64;
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    k / gcd(k, e) * e
}

fn pick(endpoints: &[Endpoint], k: u64) -> &Endpoint {
    &endpoints[(k % endpoints.len() as u64) as usize]
}

/// Subscribers per topic for `subscribers` spread over `topics` by Zipf
/// exponent `s` (0: uniform), exactly summing to `subscribers`.
pub fn spread(subscribers: u64, topics: usize, s: f64) -> Result<Vec<u64>, String> {
    let z = Zipf::new(topics, s)?;
    Ok(zipf::quotas(subscribers, &z))
}

/// `k` loopback source addresses 127.0.0.1 … 127.0.0.k.
pub fn loopback_sources(k: usize) -> Vec<IpAddr> {
    (1..=k.clamp(1, 250))
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(subs: Vec<u64>, publishers: u64) -> Plan {
        let mut p = Plan {
            scenario: Scenario::Fanout,
            endpoints: vec![Endpoint::ws("127.0.0.1:1".parse().unwrap(), "/ws")],
            publish_endpoints: Vec::new(),
            topics: (0..subs.len()).map(|i| format!("t.{i}")).collect(),
            subs_per_topic: subs,
            subscribers: 0,
            publishers,
            echoers: 0,
            rate: 100.0,
            window: 1,
            payload: 100,
            data: Data::Pad,
            publishing: Publishing::Uniform,
            via: Via::Ws,
            burst: None,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            grace: Duration::ZERO,
            hold: Duration::ZERO,
            sources: loopback_sources(3),
            source_ports: None,
            shards: 2,
            connect_window: 1,
            deflate: false,
            connect_timeout: Duration::from_secs(1),
            tick: Duration::from_millis(1),
            snapshot: false,
            storm: None,
            held_apart: false,
            auth: Default::default(),
            prefix: Vec::new(),
        };
        p.seal();
        p
    }

    #[test]
    fn connections_map_to_topics_publishers_shards_and_sources() {
        // Topic 1 has no subscribers: nobody may be assigned to it.
        let p = plan(vec![2, 0, 3], 2);
        assert_eq!(p.subscribers, 5);
        assert_eq!(p.connections(), 7);
        let kinds: Vec<Kind> = (0..7).map(|i| p.kind(i)).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                Subscriber { topic: 0 },
                Subscriber { topic: 0 },
                Subscriber { topic: 2 },
                Subscriber { topic: 2 },
                Subscriber { topic: 2 },
                Publisher { index: 0 },
                Publisher { index: 1 },
            ]
        );
        assert_eq!((p.shard_of(0), p.shard_of(1), p.shard_of(6)), (0, 1, 0));
        let src: Vec<String> = (0..4)
            .map(|i| p.source_of(i).unwrap().to_string())
            .collect();
        assert_eq!(src, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"]);
        assert_eq!(p.bind_of(4, 0), Some("127.0.0.2:0".parse().unwrap()));
        let mut q = p.clone();
        q.source_ports = Some((40_000, 40_009));
        // 7 connections over 3 sources: 3 ports each, retries past them.
        assert_eq!(q.bind_of(4, 0), Some("127.0.0.2:40001".parse().unwrap()));
        assert_eq!(q.bind_of(4, 1), Some("127.0.0.2:40004".parse().unwrap()));
        assert_eq!(q.bind_of(4, 3), Some("127.0.0.2:40000".parse().unwrap()));
        assert_eq!(p.rate_each(), 50.0);
    }

    #[test]
    fn a_source_port_carries_one_connection_per_broker_address() {
        let at = |a: u8| Endpoint::ws(SocketAddr::from(([10, 77, 0, a], 8080)), "/ws");
        let mut p = plan(vec![9, 3], 0);
        p.sources = Vec::new();
        p.source_ports = Some((1024, 1029));
        // One source, two broker addresses: 12 connections on 6 ports.
        p.endpoints = vec![at(1), at(2)];
        assert_eq!(port_share(0, &p.endpoints), 2);
        let mut seen = std::collections::HashSet::new();
        for i in 0..12 {
            let bind = p.bind_of(i, 0).unwrap();
            assert!(bind.port() <= 1029, "{bind}");
            assert!(
                seen.insert((bind, p.endpoint_of(i).addr)),
                "{i} reuses {bind}"
            );
        }
        // Sources and brokers of a common factor: lcm(2, 4) = 4 a port.
        let four = vec![at(1), at(2), at(3), at(4)];
        assert_eq!(port_share(2, &four), 4);
        assert_eq!(port_share(3, &four), 12);
        // The same address twice is one destination.
        assert_eq!(port_share(1, &[at(1), at(1)]), 1);
        assert_eq!(port_share(3, &[at(1)]), 3);
    }

    #[test]
    fn connections_spread_round_robin_over_the_brokers() {
        let at = |port: u16| Endpoint::ws(SocketAddr::from(([127, 0, 0, 1], port)), "/ws");
        // Two topics of 3 and 4 subscribers, 3 publishers, over 3 brokers.
        let mut p = plan(vec![3, 4], 3);
        p.endpoints = vec![at(1), at(2), at(3)];
        let port = |p: &Plan, i| p.endpoint_of(i).addr.port();
        let subs: Vec<u16> = (0..7).map(|i| port(&p, i)).collect();
        assert_eq!(subs, [1, 2, 3, 1, 2, 3, 1]);
        // Topic 1 (connections 3..7) has subscribers on every broker.
        let pubs: Vec<u16> = (7..10).map(|i| port(&p, i)).collect();
        assert_eq!(pubs, [1, 2, 3], "publishers counted from their own index");
        // --publish-url: publishers only there; subscribers unchanged.
        p.publish_endpoints = vec![at(9)];
        assert_eq!((port(&p, 7), port(&p, 9), port(&p, 2)), (9, 9, 3));
        assert_eq!(p.publisher_endpoint(5).addr.port(), 9);
        assert_eq!(
            p.targets(),
            "127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3, 127.0.0.1:9"
        );
        // One broker: everyone on it, as before.
        let one = plan(vec![2, 2], 2);
        assert!((0..6).all(|i| port(&one, i) == 1));
        assert_eq!(one.targets(), "127.0.0.1:1");
    }

    #[test]
    fn the_schedule_is_open_loop_and_folds_in_the_burst() {
        let mut p = plan(vec![1], 1);
        // 10 messages a second: message k is due at k/10 s.
        assert_eq!(p.due_at(10.0, 0), 0.0);
        assert!((p.due_at(10.0, 25) - 2.5).abs() < 1e-9);
        // 5x from 1 s to 3 s: 10 messages before it, 100 during it, then
        // back to 10 a second.
        p.burst = Some((5.0, 1.0, 2.0));
        assert!((p.due_at(10.0, 10) - 1.0).abs() < 1e-9);
        assert!((p.due_at(10.0, 60) - 2.0).abs() < 1e-9);
        assert!((p.due_at(10.0, 110) - 3.0).abs() < 1e-9);
        assert!((p.due_at(10.0, 120) - 4.0).abs() < 1e-9);
        // Never earlier for a later message.
        let times: Vec<f64> = (0..200).map(|k| p.due_at(10.0, k)).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_storm_drops_exactly_its_share_spread_over_the_subscribers() {
        let mut p = plan(vec![100, 100, 100], 1);
        assert!(!(0..301).any(|i| p.dropped(i)), "no storm, no drop");
        p.storm = Some(Storm {
            drop: 100,
            at: Duration::from_secs(1),
        });
        let dropped: Vec<u64> = (0..301).filter(|&i| p.dropped(i)).collect();
        assert_eq!(dropped.len(), 100);
        // A third of each topic's subscribers, and never the publisher.
        for t in 0..3 {
            let n = dropped.iter().filter(|&&i| i / 100 == t).count();
            assert!((33..=34).contains(&n), "topic {t}: {n}");
        }
        assert!(!p.dropped(300));
        p.storm = Some(Storm {
            drop: 300,
            at: Duration::ZERO,
        });
        assert!((0..300).all(|i| p.dropped(i)));
    }

    #[test]
    fn a_storm_holds_its_held_apart_from_the_dropped() {
        let mut p = plan(vec![100, 100, 100], 1);
        p.shards = 3;
        p.storm = Some(Storm {
            drop: 100,
            at: Duration::from_secs(1),
        });
        // Not asked for: round-robin as before.
        assert!(!p.held_apart());
        assert_eq!((p.shard_of(0), p.shard_of(1), p.shard_of(2)), (0, 1, 2));
        p.held_apart = true;
        assert!(p.held_apart());
        let mut per_shard = [0u64; 3];
        for i in 0..p.connections() {
            let s = p.shard_of(i);
            // Held subscribers and the publisher (index 300) on shard 0,
            // every dropped one elsewhere, spread over the rest.
            assert_eq!(s == 0, !p.dropped(i), "connection {i} on shard {s}");
            per_shard[s] += 1;
        }
        assert_eq!(per_shard[0], 201);
        assert!((45..=55).contains(&per_shard[1]), "{per_shard:?}");
        assert_eq!(per_shard[1] + per_shard[2], 100);
        // Dropped every other subscriber, two shards for them: even
        // indices are never dropped, so `i` alone would put them all on
        // one; by rank they split evenly (the review's 20,000 / 10,000 /
        // 3 shards).
        let mut p2 = plan(vec![10_000, 10_000], 1);
        p2.shards = 3;
        p2.held_apart = true;
        p2.storm = Some(Storm {
            drop: 10_000,
            at: Duration::from_secs(1),
        });
        let mut per = [0u64; 3];
        for i in 0..p2.connections() {
            per[p2.shard_of(i)] += 1;
        }
        assert_eq!(per, [10_001, 5_000, 5_000]);
        // One shard cannot hold them apart.
        p.shards = 1;
        assert!(!p.held_apart());
        assert!((0..p.connections()).all(|i| p.shard_of(i) == 0));
    }

    #[test]
    fn spread_is_exact() {
        let s = spread(10_000, 1000, 0.0).unwrap();
        assert_eq!(s.iter().sum::<u64>(), 10_000);
        assert!(s.iter().all(|n| *n == 10));
        let z = spread(1000, 50, 1.0).unwrap();
        assert_eq!(z.iter().sum::<u64>(), 1000);
        assert!(z[0] > z[49]);
    }
}
