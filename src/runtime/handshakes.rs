//! Connections still in their HTTP handshake hold descriptor slots like
//! any other. Idle TCP connections could fill a shard's table (40 idle
//! connections on a 40-slot table made `/healthz` fail) because the
//! slots kept for plain HTTP only stop upgrades. Two bounds keep the table
//! usable: at most `Config::max_handshakes` per shard (the oldest is
//! closed to make room for a new one), and when the table is busy,
//! handshakes older than `Config::handshake_timeout_busy` (1 s: a real
//! client sends its request within a round trip) are closed, oldest
//! first. Each is counted in `handshakes_shed_total`.
//!
//! Busy: more than 3/4 full, and the handshakes in progress could take
//! every free slot left (plus the HTTP reserve). 3/4 full alone shed real
//! clients in a connection storm: 60,000 connections on 4 shards of
//! 20,000 slots lost 32 whose requests came after a second (the load
//! generator's core was saturated) with 5,000 slots free a shard.

use super::app::App;
use super::conn::Phase;
use super::inbound;
use super::shard::{http_reserve, Shard};
use super::timer::{Entry, Ticks};
use super::tls;
use crate::metrics::inc;

impl<M> Shard<M> {
    /// Parse the request heads left over from earlier turns (see
    /// `Config::handshakes_per_turn`), oldest first, within this turn's
    /// budget; the rest wait again.
    pub(super) fn run_deferred<A: App<Mail = M>>(&mut self, app: &mut A) {
        let keys = std::mem::take(&mut self.table.deferred);
        let mut rest = Vec::new();
        for key in keys {
            // A TLS connection still in its TLS handshake waits for the
            // TLS budget, and its `rx` holds ciphertext.
            let cipher = self.table.tls.handshaking(key);
            let budget = if cipher {
                self.table.tls.budget
            } else {
                self.table.handshake_budget
            };
            let Some(c) = self.table.conns.get_mut(key as usize) else {
                continue;
            };
            // Past the budget only the admin listener's requests go on (a
            // pipelined one waits here behind an answer given `Later`, or
            // one past its own budget).
            if budget == 0
                && !super::table::ConnTable::head_skips_budget(c.admin(), self.table.admin_budget)
            {
                rest.push(key);
                continue;
            }
            if !c.deferred() {
                // Its slot's earlier connection's entry, or handled.
                continue;
            }
            c.set_deferred(false);
            // A TLS handshake may go on while its connection flushes an
            // answer decided before it (`tls::delivered`), which checks
            // that itself.
            if !matches!(c.phase, Phase::Handshake | Phase::Http) && !cipher {
                c.rx.clear();
                continue;
            }
            let mut rx = c.rx.take();
            if cipher {
                // Decrypted, its plaintext (if any) goes where plaintext
                // goes, `rx` included: the ciphertext is not put back.
                let (table, mail) = (&mut self.table, &mut self.mail);
                tls::delivered(app, table, mail, &self.config, key, &rx);
                self.after_input(key, true);
                continue;
            }
            let (table, mail) = (&mut self.table, &mut self.mail);
            inbound::received_buffered(app, table, mail, &self.config, key, &mut rx);
            let Some(c) = self.table.conns.get_mut(key as usize) else {
                continue;
            };
            c.rx.put(rx);
            self.after_input(key, true);
        }
        rest.append(&mut self.table.deferred);
        self.table.deferred = rest;
    }

    /// A connection was accepted: note its handshake, then shed.
    pub(super) fn handshake_started(&mut self, key: u32, gen: u32, now: Ticks) {
        self.handshakes.push_back((Entry { key, gen }, now));
        self.shed_handshakes();
    }

    /// Whether `e` is still a connection in its handshake.
    fn handshaking(&self, e: Entry) -> bool {
        self.table
            .conns
            .get(e.key as usize)
            .is_some_and(|c| c.gen == e.gen && c.phase == Phase::Handshake && !c.outbound())
    }

    /// On the tick: forget handshakes that ended (so the count is exact
    /// again; in between it may count some that ended this tick, which
    /// only sheds early under the cap), then shed.
    pub(super) fn tidy_handshakes(&mut self) {
        let mut q = std::mem::take(&mut self.handshakes);
        q.retain(|&(e, _)| self.handshaking(e));
        self.handshakes = q;
        self.shed_handshakes();
    }

    /// Close the oldest handshakes while there are too many, or while the
    /// table is busy and they are older than the busy deadline.
    fn shed_handshakes(&mut self) {
        let now = self.table.now;
        let busy_t = self.periods.handshake_busy;
        let used = self.table.conns.len();
        let free = (self.table_size as usize).saturating_sub(used);
        let busy = used * 4 > self.table_size as usize * 3
            && free <= self.handshakes.len() + http_reserve(self.table_size);
        while let Some(&(e, since)) = self.handshakes.front() {
            if !self.handshaking(e) {
                self.handshakes.pop_front();
                continue;
            }
            let over = self.handshakes.len() > self.config.max_handshakes;
            let stale = busy && now >= since + busy_t;
            if !(over || stale) {
                break;
            }
            self.handshakes.pop_front();
            inc(&self.table.my_stats().handshakes_shed_total, 1);
            self.kill(e.key);
        }
    }
}
