//! One client shard's application: it dials its share of the plan's
//! connections on ringfan's own runtime (outbound connections in direct
//! descriptors), subscribes, publishes on an open-loop schedule, and
//! accounts every message that arrives.
//!
//! The receive path is the generator's ceiling, so it does per delivery
//! only: one frame decode (the runtime's sans-IO core), one fixed-shape
//! parse (`msg::parse`), a seq comparison, one clock read and one
//! histogram record. Shared counters are published once a tick, never per
//! message.

use crate::control::{Control, Phase, Report, ShardResult, StormResult};
use crate::feed;
use crate::msg::{self, Server};
use crate::plan::{Kind, Plan, Publishing, Scenario};
use crate::schedule::{self, Schedule};
use hdrhistogram::Histogram;
use ringfan::runtime::{App, ConnId, Dial, Io};
use ringfan::ws::Message;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Latencies above this are clamped (and still counted).
const MAX_LATENCY_NS: u64 = 120_000_000_000;
/// How often a shard sends its interval histogram.
const INTERVAL_NS: u64 = 250_000_000;
/// Largest message accepted from the broker.
const MAX_MESSAGE: usize = 16 << 20;
/// Storm: how often a resubscription refused with `rate_limited` is
/// retried, and the wait before the n-th retry (n × this, at most 10×).
const RESUB_RETRIES: u32 = 100;
const RETRY_NS: u64 = 10_000_000;
/// Other source ports a connection tries when its exact one is taken.
const PORT_RETRIES: u32 = 8;

pub fn histogram() -> Histogram<u64> {
    // 3 significant digits from 1 ns to 2 minutes: ~0.1 % error, fixed
    // memory, and recording is a few adds.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

struct Slot {
    id: ConnId,
    /// Its index in the plan, and which try this is (a retry after its
    /// exact source port was taken).
    index: u64,
    attempt: u32,
    kind: Kind,
    last_seq: u64,
    last_t: u64,
    sender: Option<usize>,
    rejoin: Rejoin,
    /// Resubscriptions retried after `rate_limited`.
    retries: u32,
}

/// Whether a connection is a storm's reconnection, and whether its
/// resubscription has been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejoin {
    No,
    Pending,
    Answered,
}

/// The slot of `id` if it still owns it. A function of the table alone, so
/// a caller holding the slot can still update the driver's counters.
fn slot(conns: &mut [Option<Slot>], id: ConnId) -> Option<&mut Slot> {
    conns
        .get_mut(id.key as usize)
        .and_then(Option::as_mut)
        .filter(|s| s.id == id)
}

/// A publishing (or echoing) connection and where it is in its schedule.
struct Sender {
    id: ConnId,
    open: bool,
    sent: u64,
    acked: u64,
    schedule: Schedule,
}

pub struct Driver {
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    me: usize,
    conns: Vec<Option<Slot>>,
    next: u64,
    dialing: usize,
    senders: Vec<Sender>,
    rng: fastrand::Rng,
    buf: Vec<u8>,
    data: Vec<u8>,
    books: Vec<Option<feed::Book>>,
    counts: crate::report::Counts,
    latency: Histogram<u64>,
    interval: Histogram<u64>,
    lag: Histogram<u64>,
    delivered_measured: u64,
    published_measured: u64,
    /// Bytes of `data` in the deliveries counted.
    data_bytes: u64,
    failures: BTreeMap<String, u64>,
    last_interval: u64,
    reported: bool,
    /// Storm: whether this shard has dropped its share, and the dropped
    /// connections (plan indices) still to redial.
    stormed: bool,
    redial: Vec<u64>,
    /// Resubscriptions refused with `rate_limited` ("retry later"), and
    /// when to send them again.
    retry: Vec<(u64, ConnId)>,
    storm: StormResult,
}

impl Driver {
    /// Called on the shard's own thread (`Server::start`'s factory).
    pub fn new(plan: Arc<Plan>, ctl: Arc<Control>, me: usize) -> Self {
        if plan.held_apart() && me != 0 {
            yield_to_held();
        }
        Self {
            next: 0,
            me,
            conns: Vec::new(),
            dialing: 0,
            senders: Vec::new(),
            rng: fastrand::Rng::with_seed(0x5eed ^ me as u64),
            buf: Vec::with_capacity(plan.payload + 256),
            data: Vec::with_capacity(plan.payload + 64),
            books: schedule::books(&plan),
            counts: Default::default(),
            latency: histogram(),
            interval: histogram(),
            lag: histogram(),
            delivered_measured: 0,
            published_measured: 0,
            data_bytes: 0,
            failures: BTreeMap::new(),
            last_interval: 0,
            reported: false,
            stormed: false,
            redial: Vec::new(),
            retry: Vec::new(),
            storm: StormResult::new(),
            plan,
            ctl,
        }
    }

    fn slot(&mut self, id: ConnId) -> Option<&mut Slot> {
        slot(&mut self.conns, id)
    }

    fn dial_more(&mut self, io: &mut Io<'_, ()>) {
        let total = self.plan.connections();
        while self.dialing < self.plan.connect_window && self.next < total {
            let i = self.next;
            self.next += 1;
            if self.plan.shard_of(i) == self.me {
                self.dial(io, i, 0, Rejoin::No);
            }
        }
    }

    /// Storm: once its time has come, close this shard's share of the
    /// dropped subscribers at once and start reconnecting them.
    fn storm(&mut self, io: &mut Io<'_, ()>) {
        if self.stormed {
            return;
        }
        let start = self.ctl.start_ns.load(Ordering::Acquire);
        let Some(at) = self.plan.storm_at_ns(start) else {
            return;
        };
        if start == u64::MAX || self.ctl.now_ns() < at {
            return;
        }
        self.stormed = true;
        for s in self.conns.iter_mut() {
            let Some(slot) = s else { continue };
            if !matches!(slot.kind, Kind::Subscriber { .. }) || !self.plan.dropped(slot.index) {
                continue;
            }
            // The slot goes now, so its close is ours, not a problem; a
            // subscriber not yet answered is not reconnected.
            let id = slot.id;
            let index = slot.index;
            *s = None;
            if io.close(id, 1001, "storm") {
                self.redial.push(index);
            }
        }
        self.storm.dropped = self.redial.len() as u64;
        // The plan's dropped subscribers of this shard that were not open
        // (failed at the start, closed since) will not come back.
        let planned = (0..self.plan.subscribers)
            .filter(|&i| self.plan.dropped(i) && self.plan.shard_of(i) == self.me)
            .count() as u64;
        self.ctl
            .storm_resolved(planned.saturating_sub(self.storm.dropped));
        // Reconnect in the order they were dropped.
        self.redial.reverse();
        self.redial_more(io);
    }

    /// Storm: reconnect dropped subscribers, within the connect window.
    fn redial_more(&mut self, io: &mut Io<'_, ()>) {
        while self.dialing < self.plan.connect_window {
            let Some(i) = self.redial.pop() else {
                return;
            };
            // Attempt 1: with --source-ports, a port past the plan's own
            // (the dropped connection's may still be closing).
            self.dial(io, i, 1, Rejoin::Pending);
        }
    }

    fn subscribe(&mut self, io: &mut Io<'_, ()>, id: ConnId, topic: u32, snapshot: bool) {
        self.buf.clear();
        let name = self
            .plan
            .topics
            .get(topic as usize)
            .map_or("", String::as_str);
        msg::write_sub(&mut self.buf, &[name], u64::from(topic) + 1, snapshot);
        io.send_text(id, &self.buf);
    }

    /// Storm: resend the resubscriptions the broker asked to retry later
    /// whose time has come.
    fn resubscribe_due(&mut self, io: &mut Io<'_, ()>) {
        if self.retry.is_empty() {
            return;
        }
        let now = self.ctl.now_ns();
        let mut due = Vec::new();
        self.retry.retain(|&(at, id)| {
            if at <= now {
                due.push(id);
            }
            at > now
        });
        for id in due {
            let Some(s) = self.slot(id) else { continue };
            if let (Kind::Subscriber { topic }, Rejoin::Pending) = (s.kind, s.rejoin) {
                self.subscribe(io, id, topic, true);
            }
        }
    }

    /// Storm: a reconnection failed or ended before its answer.
    fn rejoin_failed(&mut self) {
        self.storm.failed += 1;
        self.ctl.storm_resolved(1);
    }

    /// Open connection `i` of the plan (its `attempt`-th try).
    fn dial(&mut self, io: &mut Io<'_, ()>, i: u64, attempt: u32, rejoin: Rejoin) {
        let kind = self.plan.kind(i);
        let at = self.plan.endpoint_of(i);
        let path = match kind {
            Kind::Echo { .. } => "/echo",
            _ => at.path.as_str(),
        };
        // A minted token is minted here, per dial (a reconnection gets a
        // fresh one).
        let (path, mut headers) = self.plan.auth.request(i, path);
        if self.plan.deflate {
            headers.push((
                "Sec-WebSocket-Extensions".into(),
                "permessage-deflate; client_max_window_bits".into(),
            ));
        }
        let id = io.connect(Dial {
            to: at.addr,
            from: self.plan.bind_of(i, attempt),
            path,
            protocols: Vec::new(),
            headers,
            max_message: MAX_MESSAGE,
            tls: at.tls.clone(),
        });
        let k = id.key as usize;
        if self.conns.len() <= k {
            self.conns.resize_with(k + 1, || None);
        }
        self.conns[k] = Some(Slot {
            id,
            index: i,
            attempt,
            kind,
            last_seq: 0,
            last_t: 0,
            sender: None,
            rejoin,
            retries: 0,
        });
        self.dialing += 1;
    }

    fn new_sender(&mut self, id: ConnId, index: u32) -> Sender {
        Sender {
            id,
            open: true,
            sent: 0,
            acked: 0,
            schedule: Schedule::new(&self.plan, index),
        }
    }

    /// Send whatever the schedule says is due by now (open loop), or fill
    /// the window (closed loop).
    fn pump(&mut self, io: &mut Io<'_, ()>, s: usize) {
        let now = self.ctl.now_ns();
        let start = self.ctl.start_ns.load(Ordering::Acquire);
        if now < start {
            return;
        }
        let end_s = (self.plan.warmup + self.plan.duration).as_secs_f64();
        loop {
            let Some(snd) = self.senders.get(s) else {
                return;
            };
            if !snd.open {
                return;
            }
            let intended = if matches!(self.plan.publishing, Publishing::Once) {
                if snd.sent > 0 || snd.schedule.index != 0 {
                    return;
                }
                now
            } else if snd.schedule.rate > 0.0 {
                match snd.schedule.due_ns(&self.plan, start, snd.sent) {
                    Some(at_ns) if at_ns <= now => at_ns,
                    _ => return,
                }
            } else {
                if now >= start + (end_s * 1e9) as u64
                    || snd.sent - snd.acked >= u64::from(self.plan.window)
                {
                    return;
                }
                now
            };
            self.publish(io, s, intended, now);
        }
    }

    fn publish(&mut self, io: &mut Io<'_, ()>, s: usize, intended: u64, now: u64) {
        let plan = &*self.plan;
        let Some(snd) = self.senders.get_mut(s) else {
            return;
        };
        let topic = snd.schedule.pick(plan, &mut self.rng);
        snd.sent += 1;
        let id = snd.sent;
        let conn = snd.id;
        self.data.clear();
        schedule::write_data(
            plan,
            &mut self.books,
            &mut self.rng,
            topic,
            intended,
            &mut self.data,
        );
        let sent = if plan.scenario == Scenario::Echo {
            io.send_text(conn, &self.data)
        } else {
            self.buf.clear();
            let name = plan.topics.get(topic as usize).map_or("", String::as_str);
            msg::write_pub(&mut self.buf, name, Some(id), &self.data);
            io.send_text(conn, &self.buf)
        };
        if !sent {
            return;
        }
        self.counts.published += 1;
        self.counts.expected_deliveries += match plan.scenario {
            Scenario::Echo => 1,
            _ => u64::from(
                self.ctl
                    .topic_subs
                    .get(topic as usize)
                    .map_or(0, |n| n.load(Ordering::Relaxed)),
            ),
        };
        if intended >= self.measure_from() {
            self.published_measured += 1;
        }
        self.lag
            .saturating_record(now.saturating_sub(intended).clamp(1, MAX_LATENCY_NS));
    }

    /// A sender's message was answered (a publish acked, an echo came
    /// back): in closed loop that makes room for the next one.
    fn answered(&mut self, io: &mut Io<'_, ()>, sender: Option<usize>) {
        self.counts.acked += 1;
        let Some(s) = sender else {
            return;
        };
        if let Some(snd) = self.senders.get_mut(s) {
            snd.acked += 1;
        }
        if self.plan.rate == 0.0 && self.ctl.phase() == Phase::Running {
            self.pump(io, s);
        }
    }

    fn measure_from(&self) -> u64 {
        self.ctl
            .start_ns
            .load(Ordering::Relaxed)
            .saturating_add(self.plan.warmup.as_nanos() as u64)
    }

    /// A message arrived at time `now` stamped `t` (the publisher's
    /// intended send time).
    #[inline]
    fn latency(&mut self, t: u64) {
        let now = self.ctl.now_ns();
        if t >= self.measure_from() {
            let v = now.saturating_sub(t).clamp(1, MAX_LATENCY_NS);
            self.latency.saturating_record(v);
            self.interval.saturating_record(v);
            self.delivered_measured += 1;
            if self.plan.storm.is_some() {
                self.storm_latency(now, v);
            }
        }
    }

    /// A held subscriber's delivery, by when it arrived: from the drop to
    /// the last resubscription answered, or outside that window.
    fn storm_latency(&mut self, now: u64, v: u64) {
        let start = self.ctl.start_ns.load(Ordering::Relaxed);
        let from = self.plan.storm_at_ns(start).unwrap_or(u64::MAX);
        let to = self.ctl.storm_end_ns.load(Ordering::Acquire);
        if now >= from && now < to {
            self.storm.during.saturating_record(v);
        } else {
            self.storm.outside.saturating_record(v);
        }
    }

    fn publish_live(&self) {
        let l = &self.ctl.live[self.me];
        let c = &self.counts;
        l.opened.store(c.connections_opened, Ordering::Relaxed);
        l.failed.store(c.connect_failures, Ordering::Relaxed);
        l.subscribed.store(c.subscribed, Ordering::Relaxed);
        l.ready.store(self.senders.len() as u64, Ordering::Relaxed);
        l.published.store(c.published, Ordering::Relaxed);
        l.expected.store(c.expected_deliveries, Ordering::Relaxed);
        l.delivered.store(c.delivered, Ordering::Relaxed);
        l.acked.store(c.acked, Ordering::Relaxed);
        l.errors.store(c.errors, Ordering::Relaxed);
    }

    fn final_report(&mut self) {
        let r = ShardResult {
            counts: std::mem::take(&mut self.counts),
            latency: std::mem::replace(&mut self.latency, histogram()),
            send_lag: std::mem::replace(&mut self.lag, histogram()),
            delivered_measured: self.delivered_measured,
            published_measured: self.published_measured,
            data_bytes: self.data_bytes,
            failures: std::mem::take(&mut self.failures),
            storm: StormResult {
                during: std::mem::replace(&mut self.storm.during, histogram()),
                outside: std::mem::replace(&mut self.storm.outside, histogram()),
                ..self.storm
            },
        };
        self.ctl.report(self.me, Report::Final(Box::new(r)));
    }
}

impl App for Driver {
    type Mail = ();

    fn connected(&mut self, io: &mut Io<'_, ()>, id: ConnId) {
        self.dialing = self.dialing.saturating_sub(1);
        let info = self.slot(id).map(|s| (s.kind, s.rejoin));
        // Reconnections are the storm's figures, not the plan's count.
        if info.is_none_or(|(_, r)| r == Rejoin::No) {
            self.counts.connections_opened += 1;
        }
        let Some((kind, rejoin)) = info else {
            return;
        };
        // A storm's reconnection asks for the snapshot it missed.
        let snapshot = self.plan.snapshot || rejoin != Rejoin::No;
        match kind {
            Kind::Subscriber { topic } => self.subscribe(io, id, topic, snapshot),
            Kind::Publisher { index } | Kind::Echo { index } => {
                let s = self.new_sender(id, index);
                self.senders.push(s);
                let n = self.senders.len() - 1;
                if let Some(slot) = self.slot(id) {
                    slot.sender = Some(n);
                }
            }
        }
        if rejoin == Rejoin::No {
            self.dial_more(io);
        } else {
            self.redial_more(io);
        }
    }

    fn connect_failed(&mut self, io: &mut Io<'_, ()>, id: ConnId, why: &str) {
        self.dialing = self.dialing.saturating_sub(1);
        let slot = self
            .conns
            .get_mut(id.key as usize)
            .filter(|s| s.as_ref().is_some_and(|s| s.id == id))
            .and_then(Option::take);
        let rejoin = slot.as_ref().is_some_and(|s| s.rejoin != Rejoin::No);
        if let Some(s) = slot {
            // An exact source port another socket holds (a listener, a
            // connection of another process): try the next one, a few
            // times, before counting a failure.
            if self.plan.source_ports.is_some()
                && why.contains("EADDRINUSE")
                && s.attempt < PORT_RETRIES
            {
                self.counts.port_retries += 1;
                self.dial(io, s.index, s.attempt + 1, s.rejoin);
                return;
            }
        }
        self.counts.connect_failures += 1;
        if rejoin {
            self.rejoin_failed();
            *self
                .failures
                .entry(format!("reconnect: {why}"))
                .or_default() += 1;
            self.redial_more(io);
            return;
        }
        *self.failures.entry(why.to_string()).or_default() += 1;
        if self.ctl.phase() == Phase::Connecting {
            self.dial_more(io);
        }
    }

    fn message(&mut self, io: &mut Io<'_, ()>, id: ConnId, m: Message<'_>) {
        let Some(slot) = slot(&mut self.conns, id) else {
            return;
        };
        match slot.kind {
            Kind::Subscriber { topic } => {
                // Only subscribers the storm never drops are owed every
                // delivery; the others are counted apart.
                let held = !self.plan.dropped(slot.index);
                let (seq, t, snapshot, len) = match msg::delivery(m.payload) {
                    Some(d) => (d.seq, d.stamp, d.snapshot, d.data_len),
                    None => match msg::parse(m.payload) {
                        Ok(Server::Msg {
                            seq,
                            data,
                            snapshot,
                            ..
                        }) => (seq, msg::stamp(data), snapshot, data.len()),
                        Ok(Server::Ack { .. }) => {
                            if slot.rejoin == Rejoin::Pending {
                                slot.rejoin = Rejoin::Answered;
                                self.storm.resubscribed += 1;
                                self.ctl.storm_resolved(1);
                                return;
                            }
                            self.counts.subscribed += 1;
                            if held {
                                if let Some(n) = self.ctl.topic_subs.get(topic as usize) {
                                    n.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            return;
                        }
                        Ok(Server::Err { code, .. })
                            if slot.rejoin == Rejoin::Pending
                                && code == "rate_limited"
                                && slot.retries < RESUB_RETRIES =>
                        {
                            // The broker sheds a storm with "retry later":
                            // do as a client would, a little later each
                            // time, and count it.
                            slot.retries += 1;
                            let wait = RETRY_NS * u64::from(slot.retries.min(10));
                            self.retry.push((self.ctl.now_ns() + wait, id));
                            self.storm.retried += 1;
                            return;
                        }
                        other => {
                            if slot.rejoin == Rejoin::Pending {
                                // Failures by cause: the broker's code.
                                slot.rejoin = Rejoin::Answered;
                                let why = match other {
                                    Ok(Server::Err { code, .. }) => format!("`err` {code}"),
                                    _ => "not an ack".to_string(),
                                };
                                *self
                                    .failures
                                    .entry(format!("resubscribe answered with {why}"))
                                    .or_default() += 1;
                                self.rejoin_failed();
                            }
                            self.counts.errors += 1;
                            return;
                        }
                    },
                };
                let last = slot.last_seq;
                if last != 0 && seq != last + 1 {
                    if seq > last + 1 {
                        self.counts.gaps += 1;
                    } else if seq == last {
                        self.counts.duplicated += 1;
                    } else {
                        self.counts.out_of_order += 1;
                    }
                }
                slot.last_seq = last.max(seq);
                if !held {
                    self.storm.unheld_deliveries += 1;
                    if snapshot && slot.rejoin != Rejoin::No {
                        self.storm.snapshots += 1;
                    }
                    return;
                }
                self.counts.delivered += 1;
                self.data_bytes += len as u64;
                if let Some(t) = t {
                    self.latency(t);
                }
            }
            Kind::Publisher { .. } => match msg::parse(m.payload) {
                Ok(Server::Ack { .. }) => {
                    let s = slot.sender;
                    self.answered(io, s);
                }
                _ => self.counts.errors += 1,
            },
            Kind::Echo { .. } => {
                let Some(t) = msg::stamp(m.payload) else {
                    self.counts.errors += 1;
                    return;
                };
                if t < slot.last_t {
                    self.counts.out_of_order += 1;
                }
                slot.last_t = t;
                self.counts.delivered += 1;
                let s = slot.sender;
                self.latency(t);
                self.answered(io, s);
            }
        }
    }

    fn closed(&mut self, io: &mut Io<'_, ()>, id: ConnId) {
        let code = io.close_code(id);
        // Taken only if it is this connection's: a slot is never emptied
        // for an id that no longer owns it.
        let Some(slot) = self
            .conns
            .get_mut(id.key as usize)
            .filter(|s| s.as_ref().is_some_and(|s| s.id == id))
            .and_then(Option::take)
        else {
            return;
        };
        if let Some(s) = slot.sender {
            if let Some(snd) = self.senders.get_mut(s) {
                snd.open = false;
            }
        }
        if slot.rejoin == Rejoin::Pending {
            self.rejoin_failed();
            let why = code.map_or_else(|| "abnormally".to_string(), |c| format!("with {c}"));
            *self
                .failures
                .entry(format!(
                    "reconnected, then closed {why} before its resubscription was answered"
                ))
                .or_default() += 1;
        }
        if !self.reported {
            // Closes during the run (ours at the end are not counted).
            let key = code.map_or_else(|| "abnormal".to_string(), |c| c.to_string());
            *self.counts.closes.entry(key).or_default() += 1;
            self.ctl.live[self.me]
                .closed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn tick(&mut self, io: &mut Io<'_, ()>) {
        match self.ctl.phase() {
            Phase::Connecting => self.dial_more(io),
            Phase::Holding => {}
            Phase::Draining => {
                self.redial_more(io);
                self.resubscribe_due(io);
            }
            Phase::Running => {
                for s in 0..self.senders.len() {
                    self.pump(io, s);
                }
                self.storm(io);
                self.redial_more(io);
                self.resubscribe_due(io);
            }
            Phase::Collect => {
                if !self.reported {
                    self.publish_live();
                    self.final_report();
                    self.reported = true;
                }
                return;
            }
        }
        self.publish_live();
        let now = self.ctl.now_ns();
        if now >= self.last_interval + INTERVAL_NS && !self.interval.is_empty() {
            self.last_interval = now;
            let h = std::mem::replace(&mut self.interval, histogram());
            self.ctl
                .report(self.me, Report::Interval { hist: Box::new(h) });
        }
    }
}

/// A storm's reconnecting shard lowers its own scheduling priority (nice
/// 10, which needs no privilege) so that the shard driving the held
/// subscribers runs as soon as their deliveries arrive when both share a
/// core: the generator measures the broker's delay, not its own storm
/// work (on the 2-core VM the held p50 during a 15,000-connection storm
/// went from ~1 ms to 0.2-0.3 ms with it). Best effort: a refusal leaves
/// the default priority.
fn yield_to_held() {
    // Linux schedules threads one by one: a thread id names this thread.
    let me = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(me), 10);
}
