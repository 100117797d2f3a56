//! `--publish-via http`: a publisher that is an HTTP/1.1 keep-alive
//! connection sending `POST /publish` (docs/protocol.md, "HTTP publish
//! API"), each on a thread of its own beside the client shards.
//!
//! Why its own thread and not the shards' io_uring runtime: that runtime
//! dials WebSocket connections only, and one publisher connection needs
//! a few syscalls per request, not per message (a batch of 100 is one
//! write and one read). A nonblocking socket and `ppoll` keep requests
//! pipelined (never a blocking write while the broker waits for us to
//! read its answers).
//!
//! Accounting matches the WebSocket publishers': the same schedule
//! ([`Schedule`]) and payloads (timestamped with the intended send time,
//! so subscribers measure latency the same way), and a slot of its own in
//! [`Control`] for its live counters and final [`ShardResult`]. A message
//! counts as published (and owes its topic's subscribers a delivery) only
//! once the answer gives it a seq: a 429's `null` seqs and a request that
//! never got an answer are `not_published`; every answer other than 200
//! is an error, counted by status.

use crate::control::{Control, Phase, Report, ShardResult, StormResult};
use crate::driver::histogram;
use crate::feed;
use crate::plan::{Plan, Via};
use crate::schedule::{self, Schedule};
use hdrhistogram::Histogram;
use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Open loop: requests unanswered on one connection beyond which due
/// messages wait (and their lateness shows in the send lag) rather than
/// buffer without bound in front of a broker that stopped reading.
const OPEN_LOOP_MAX_IN_FLIGHT: usize = 4096;
/// Largest answer head and body accepted: a 10,000-message batch's seqs
/// are ~120 KB of JSON.
const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 1 << 20;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 256 << 10;
/// How long to wait for the socket when there is nothing due sooner.
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// Latencies above this are clamped (and still counted), as the driver's.
const MAX_LAG_NS: u64 = 120_000_000_000;

/// Start HTTP publisher `index`, reporting through slot `slot` of `ctl`
/// (after the shards' slots), pinned to the `slot`-th allowed CPU as the
/// shards are to theirs.
pub fn spawn(
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    slot: usize,
    index: u32,
) -> std::io::Result<JoinHandle<()>> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let core = cores.get(slot % cores.len().max(1)).copied();
    std::thread::Builder::new()
        .name(format!("http-pub-{index}"))
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(c);
            }
            HttpPublisher::new(plan, ctl, slot, index).run();
        })
}

/// One message sent and not yet answered.
struct Sent {
    topic: u32,
    /// Sent for the measured window (after the warm-up).
    measured: bool,
}

/// The fields of a `/publish` answer this counts; the rest (`error`,
/// `message`) are ignored.
#[derive(serde::Deserialize)]
struct Answer {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    seqs: Option<Vec<Option<u64>>>,
}

struct HttpPublisher {
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    slot: usize,
    /// Among the publishers: which broker it publishes to.
    index: u32,
    schedule: Schedule,
    batch: usize,
    /// The request head up to `Content-Length: ` (host, credential).
    head: Vec<u8>,
    sock: Option<TcpStream>,
    /// https (a wss:// URL): the TLS session over `sock`; `out` and `rx`
    /// then hold plaintext.
    tls: Option<rustls::ClientConnection>,
    /// Requests written and to write; `out[out_at..]` is not written yet.
    out: Vec<u8>,
    out_at: usize,
    rx: Vec<u8>,
    /// What one `read` fills, before it joins `rx`.
    chunk: Box<[u8]>,
    body: Vec<u8>,
    data: Vec<u8>,
    /// Messages per unanswered request, oldest first, and those messages.
    requests: VecDeque<usize>,
    messages: VecDeque<Sent>,
    /// Messages sent so far (the schedule's position).
    sent: u64,
    rng: fastrand::Rng,
    books: Vec<Option<feed::Book>>,
    counts: crate::report::Counts,
    lag: Histogram<u64>,
    published_measured: u64,
    failures: BTreeMap<String, u64>,
}

impl HttpPublisher {
    fn new(plan: Arc<Plan>, ctl: Arc<Control>, slot: usize, index: u32) -> Self {
        let batch = match plan.via {
            Via::Http { batch } => batch.max(1) as usize,
            Via::Ws => 1,
        };
        let mut head = format!(
            "POST /publish HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
            plan.publisher_endpoint(index).addr
        );
        // The credential of the WebSocket connection it replaces (the
        // publishers come after the subscribers in the plan), always as a
        // bearer: the API reads no query token.
        if let Some((token, _)) = plan.auth.token(plan.subscribers + u64::from(index)) {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("Content-Length: ");
        Self {
            schedule: Schedule::new(&plan, index),
            batch,
            head: head.into_bytes(),
            sock: None,
            tls: None,
            out: Vec::with_capacity(1 << 20),
            out_at: 0,
            rx: Vec::with_capacity(READ_CHUNK * 2),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            body: Vec::with_capacity(batch * (plan.payload + 64) + 64),
            data: Vec::with_capacity(plan.payload + 64),
            requests: VecDeque::new(),
            messages: VecDeque::new(),
            sent: 0,
            rng: fastrand::Rng::with_seed(0x4774_7000 ^ u64::from(index)),
            books: schedule::books(&plan),
            counts: Default::default(),
            lag: histogram(),
            published_measured: 0,
            failures: BTreeMap::new(),
            plan,
            ctl,
            slot,
            index,
        }
    }

    fn run(mut self) {
        self.connect();
        loop {
            let phase = self.ctl.phase();
            if phase == Phase::Collect {
                break;
            }
            if phase == Phase::Running {
                self.pump();
            }
            let wait = self.wait_for(phase);
            if self.sock.is_some() {
                self.flush();
                let readable = self.poll(wait);
                if readable {
                    self.read();
                }
                // Answers free window room: fill it before sleeping again.
            } else {
                std::thread::sleep(wait);
            }
            self.publish_live();
        }
        self.publish_live();
        self.final_report();
    }

    fn connect(&mut self) {
        let plan = self.plan.clone();
        let at = plan.publisher_endpoint(self.index);
        let to = at.addr;
        match TcpStream::connect_timeout(&to, self.plan.connect_timeout) {
            Ok(s) => {
                // Requests are whole when written; Nagle would hold a
                // pipelined one back for the previous one's ack.
                let ok = s.set_nodelay(true).and_then(|()| s.set_nonblocking(true));
                if let Err(e) = ok {
                    self.failed(format!("http publisher: socket setup: {e}"));
                    return;
                }
                if let Some(dial) = &at.tls {
                    // The handshake runs in the poll loop: its first
                    // flight is written as the first request is.
                    match rustls::ClientConnection::new(dial.config.clone(), dial.name.clone()) {
                        Ok(c) => self.tls = Some(c),
                        Err(e) => {
                            self.failed(format!("http publisher: TLS: {e}"));
                            return;
                        }
                    }
                }
                self.sock = Some(s);
            }
            Err(e) => {
                self.counts.connect_failures += 1;
                self.failed(format!("http publisher: connect to {to}: {e}"));
            }
        }
    }

    fn failed(&mut self, why: String) {
        *self.failures.entry(why).or_default() += 1;
    }

    /// How long the next wait may last: until the next message is due
    /// (open loop, at most a tick), else a short idle wait (answers wake
    /// it at once).
    fn wait_for(&self, phase: Phase) -> Duration {
        if phase != Phase::Running || self.schedule.rate <= 0.0 {
            return IDLE_WAIT;
        }
        let start = self.ctl.start_ns.load(Ordering::Acquire);
        let now = self.ctl.now_ns();
        match self.schedule.due_ns(&self.plan, start, self.sent) {
            Some(at) => Duration::from_nanos(at.saturating_sub(now)).min(self.plan.tick),
            None => IDLE_WAIT,
        }
    }

    /// Send what is due: full batches while the window has room (closed
    /// loop), or the messages the schedule says are due by now, up to a
    /// batch a request (open loop).
    fn pump(&mut self) {
        let now = self.ctl.now_ns();
        let start = self.ctl.start_ns.load(Ordering::Acquire);
        if now < start || self.sock.is_none() {
            return;
        }
        let end_ns =
            start.saturating_add((self.plan.warmup + self.plan.duration).as_nanos() as u64);
        let window = self.plan.window.max(1) as usize;
        let open = self.schedule.rate > 0.0;
        loop {
            let n = if open {
                if self.requests.len() >= OPEN_LOOP_MAX_IN_FLIGHT {
                    return;
                }
                self.request(|me, k| {
                    me.schedule
                        .due_ns(&me.plan, start, me.sent + k as u64)
                        .filter(|&at| at <= now)
                })
            } else {
                if now >= end_ns || self.requests.len() >= window {
                    return;
                }
                let batch = self.batch;
                self.request(|_, k| (k < batch).then_some(now))
            };
            if n == 0 {
                return;
            }
        }
    }

    /// Build one request of the messages `due(self, k)` gives intended
    /// times for (k = 0, 1, … until None, at most a batch), append it to
    /// the output, and return how many messages it carries.
    fn request(&mut self, due: impl Fn(&Self, usize) -> Option<u64>) -> usize {
        let list = self.batch > 1;
        let now = self.ctl.now_ns();
        let measure_from = self
            .ctl
            .start_ns
            .load(Ordering::Relaxed)
            .saturating_add(self.plan.warmup.as_nanos() as u64);
        self.body.clear();
        self.body
            .extend_from_slice(if list { br#"{"messages":["# } else { b"" });
        let mut n = 0;
        while n < self.batch {
            let Some(intended) = due(self, n) else { break };
            let topic = self.schedule.pick(&self.plan, &mut self.rng);
            self.data.clear();
            schedule::write_data(
                &self.plan,
                &mut self.books,
                &mut self.rng,
                topic,
                intended,
                &mut self.data,
            );
            if n > 0 {
                self.body.push(b',');
            }
            self.body.extend_from_slice(br#"{"topic":"#);
            let name = self
                .plan
                .topics
                .get(topic as usize)
                .map_or("", String::as_str);
            crate::msg::write_str(&mut self.body, name);
            self.body.extend_from_slice(br#","data":"#);
            self.body.extend_from_slice(&self.data);
            self.body.push(b'}');
            self.messages.push_back(Sent {
                topic,
                measured: intended >= measure_from,
            });
            if self.schedule.rate > 0.0 {
                self.lag
                    .saturating_record(now.saturating_sub(intended).clamp(1, MAX_LAG_NS));
            }
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        if list {
            self.body.extend_from_slice(b"]}");
        }
        self.sent += n as u64;
        self.requests.push_back(n);
        self.out.extend_from_slice(&self.head);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(&self.body);
        n
    }

    /// Write what the socket takes now.
    fn flush(&mut self) {
        let Some(sock) = self.sock.as_mut() else {
            return;
        };
        let result = match self.tls.as_mut() {
            None => write_plain(sock, &self.out, &mut self.out_at),
            Some(tls) => write_tls(tls, sock, &self.out, &mut self.out_at),
        };
        if let Err(e) = result {
            self.lost(format!("http publisher: write: {e}"));
            return;
        }
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        } else if self.out_at > (1 << 20) {
            self.out.drain(..self.out_at);
            self.out_at = 0;
        }
    }

    /// Wait up to `wait` for an answer (or for room to write); whether the
    /// socket is readable.
    fn poll(&mut self, wait: Duration) -> bool {
        let Some(sock) = self.sock.as_ref() else {
            return false;
        };
        let mut events = libc::POLLIN;
        if self.out_at < self.out.len() || self.tls.as_ref().is_some_and(|t| t.wants_write()) {
            events |= libc::POLLOUT;
        }
        let mut fd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        let r = unsafe { libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
        r > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Read what has arrived and account every whole answer in it.
    fn read(&mut self) {
        let mut eof = None;
        if let Some(sock) = self.sock.as_mut() {
            let r = match self.tls.as_mut() {
                None => read_plain(sock, &mut self.chunk, &mut self.rx),
                Some(tls) => read_tls(tls, sock, &mut self.chunk, &mut self.rx),
            };
            eof = r.err();
        }
        let rx = std::mem::take(&mut self.rx);
        let (used, close) = self.answers(&rx);
        self.rx = rx;
        self.rx.drain(..used);
        if let Some(why) = close.or(eof) {
            self.lost(format!("http publisher: {why}"));
        }
    }

    /// Account the whole answers at the front of `rx`: the bytes they
    /// took, and why the connection must close, if it must.
    fn answers(&mut self, rx: &[u8]) -> (usize, Option<String>) {
        let mut at = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut r = httparse::Response::new(&mut headers);
            let head = match r.parse(&rx[at..]) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if rx.len() - at > MAX_HEAD => {
                    return (at, Some(format!("an answer head over {MAX_HEAD} bytes")));
                }
                Ok(httparse::Status::Partial) => return (at, None),
                Err(e) => return (at, Some(format!("a malformed answer: {e}"))),
            };
            let status = r.code.unwrap_or(0);
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            };
            let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
                return (
                    at,
                    Some(format!("an HTTP {status} answer without a Content-Length")),
                );
            };
            if len > MAX_BODY {
                return (at, Some(format!("an answer body of {len} bytes")));
            }
            let closing = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            if rx.len() - at < head + len {
                return (at, None);
            }
            self.answered(status, &rx[at + head..at + head + len]);
            at += head + len;
            if closing {
                return (
                    at,
                    Some(format!("the broker closed after an HTTP {status}")),
                );
            }
        }
    }

    /// One request's answer: which of its messages got a seq.
    fn answered(&mut self, status: u16, body: &[u8]) {
        let Some(n) = self.requests.pop_front() else {
            self.counts.errors += 1;
            self.failed("http publisher: an answer to no request".into());
            return;
        };
        let answer = match status {
            200 | 429 => serde_json::from_slice::<Answer>(body).ok(),
            _ => None,
        };
        // Which messages of the request were numbered.
        let numbered = |i: usize| -> bool {
            match &answer {
                Some(Answer {
                    seqs: Some(seqs), ..
                }) if self.batch > 1 => seqs.get(i).is_some_and(Option::is_some),
                Some(Answer { seq, .. }) if self.batch == 1 => seq.is_some(),
                _ => false,
            }
        };
        let well_formed = match &answer {
            Some(a) if self.batch > 1 => a.seqs.as_ref().is_some_and(|s| s.len() == n),
            Some(_) => true,
            None => false,
        };
        let flags: Vec<bool> = (0..n).map(numbered).collect();
        if status != 200 || !well_formed {
            self.counts.errors += 1;
            let key = match (status, well_formed) {
                (200, false) => "200 without a seq for every message".to_string(),
                (s, _) => s.to_string(),
            };
            *self.counts.http_status.entry(key).or_default() += 1;
        }
        for got_seq in flags {
            let Some(m) = self.messages.pop_front() else {
                break;
            };
            if !got_seq {
                self.counts.not_published += 1;
                continue;
            }
            self.counts.published += 1;
            self.counts.acked += 1;
            self.counts.expected_deliveries += self
                .ctl
                .topic_subs
                .get(m.topic as usize)
                .map_or(0, |s| u64::from(s.load(Ordering::Relaxed)));
            if m.measured {
                self.published_measured += 1;
            }
        }
    }

    /// The connection is gone: its unanswered messages were not
    /// published as far as anyone can tell, and this publisher stops
    /// (reconnecting after a 401 or 503 would only repeat it).
    fn lost(&mut self, why: String) {
        self.sock = None;
        self.tls = None;
        self.counts.not_published += self.messages.len() as u64;
        self.messages.clear();
        self.requests.clear();
        self.out.clear();
        self.out_at = 0;
        if self.ctl.phase() < Phase::Collect {
            self.failed(why);
        }
    }

    fn publish_live(&self) {
        let l = &self.ctl.live[self.slot];
        let c = &self.counts;
        l.published.store(c.published, Ordering::Relaxed);
        l.expected.store(c.expected_deliveries, Ordering::Relaxed);
        l.acked.store(c.acked, Ordering::Relaxed);
        l.errors.store(c.errors, Ordering::Relaxed);
        l.http_pending
            .store(self.requests.len() as u64, Ordering::Relaxed);
    }

    fn final_report(&mut self) {
        let r = ShardResult {
            counts: std::mem::take(&mut self.counts),
            latency: histogram(),
            send_lag: std::mem::replace(&mut self.lag, histogram()),
            delivered_measured: 0,
            published_measured: self.published_measured,
            data_bytes: 0,
            failures: std::mem::take(&mut self.failures),
            storm: StormResult::new(),
        };
        self.ctl.report(self.slot, Report::Final(Box::new(r)));
    }
}

/// Write `out[*at..]` to a plain socket until it would block.
fn write_plain(sock: &mut TcpStream, out: &[u8], at: &mut usize) -> std::io::Result<()> {
    while *at < out.len() {
        match sock.write(&out[*at..]) {
            Ok(0) => break,
            Ok(k) => *at += k,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seal `out[*at..]` (as much as the session buffers) and write its
/// records until the socket would block. Before the handshake completes
/// the session holds the plaintext and writes the handshake instead.
fn write_tls(
    tls: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    out: &[u8],
    at: &mut usize,
) -> std::io::Result<()> {
    loop {
        if *at < out.len() {
            *at += tls.writer().write(&out[*at..])?;
        }
        if !tls.wants_write() {
            return Ok(());
        }
        match tls.write_tls(sock) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Read what a plain socket has into `rx`; Err says why it is over.
fn read_plain(sock: &mut TcpStream, chunk: &mut [u8], rx: &mut Vec<u8>) -> Result<(), String> {
    loop {
        match sock.read(chunk) {
            Ok(0) => return Err("the broker closed the connection".into()),
            Ok(k) => {
                rx.extend_from_slice(&chunk[..k]);
                if k < chunk.len() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Read and open what a TLS socket has, its plaintext into `rx`.
fn read_tls(
    tls: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    chunk: &mut [u8],
    rx: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        let eof = match tls.read_tls(sock) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        tls.process_new_packets().map_err(|e| format!("TLS: {e}"))?;
        loop {
            match tls.reader().read(chunk) {
                Ok(0) => return Err("the broker closed the TLS session".into()),
                Ok(k) => rx.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("TLS read: {e}")),
            }
        }
        if eof {
            return Err("the broker closed the connection".into());
        }
    }
}
