//! Entitlements in the broker (issue #13): what each connection may
//! subscribe to and publish, as granted by a token the server checked, and
//! what happens as tokens are refreshed, expire or are revoked.
//!
//! The broker knows no JWT: tokens are checked behind [`Authenticator`], a
//! narrow interface it owns and the server implements. What it keeps per
//! connection lives in a map beside the subscriber table, filled only when
//! auth is on, so an idle connection of a broker without auth costs not a
//! byte more (issue #11's budget).

use super::engine::{live, Broker};
use super::host::{Client, Host};
use super::permissions::Permissions;
use super::wire::{self, ErrCode};
use crate::metrics::inc;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The close codes of auth (protocol.md, "Closing").
pub mod close {
    /// No valid `auth` first message in time, or another op before it.
    pub const AUTH_REQUIRED: u16 = 4001;
    /// The token expired and no fresher one came.
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// The first message's token was not valid.
    pub const INVALID_TOKEN: u16 = 4003;
    /// The token's `jti` is on the denylist.
    pub const TOKEN_REVOKED: u16 = 4004;
    /// The token's user holds `--max-connections-per-user` connections.
    pub const TOO_MANY_FOR_USER: u16 = 4008;
}

/// What a valid token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub perms: Arc<Permissions>,
    /// The token's `exp` (Unix seconds), if it has one.
    pub exp: Option<u64>,
    /// When the connection is closed unless a fresher token came (Unix
    /// milliseconds): `exp` plus the leeway a check allows.
    pub ends_ms: Option<u64>,
    pub jti: Option<Box<str>>,
    /// The token's `sub` claim: the user, for per-user limits.
    pub user: Option<Box<str>>,
}

/// Why a token was refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Short and stable, for metrics (`expired`, `bad_signature`…).
    pub reason: &'static str,
    /// For the client: the reason and what it was about.
    pub message: String,
    /// The token's `sub` when its signature verified (an `expired`
    /// token's), for the log; never from a token that did not verify.
    pub user: Option<Box<str>>,
}

/// How the broker checks tokens; the server implements it with JWT.
pub trait Authenticator: Send + Sync {
    /// Check a token (counted by result).
    fn verify(&self, token: &str) -> Result<Grant, Refusal>;
    /// The wall clock, in Unix milliseconds (tokens speak Unix time).
    fn now_ms(&self) -> u64;
    /// Seconds before `exp` that a connection hears `expiring`.
    fn expiring_lead_s(&self) -> u64;
    /// How long a connection that upgraded without a token has to send
    /// its `auth` (under `--auth required`), in milliseconds.
    fn auth_timeout_ms(&self) -> u64;
    /// Take a connection for `user`; false past the per-user cap.
    fn admit_user(&self, user: &str) -> bool;
    /// A connection admitted for `user` ended.
    fn release_user(&self, user: &str);
    /// Changes whenever the keys or the denylist are reloaded.
    fn epoch(&self) -> u64;
    /// Is this token ID on the denylist?
    fn denied(&self, jti: &str) -> bool;
}

/// How a connection starts, as the handshake found it.
#[derive(Debug, Clone)]
pub enum Opening {
    /// A valid token came with the handshake (its user already admitted).
    Granted(Grant),
    /// No token, under `--auth optional`: the anonymous permissions.
    Anonymous(Arc<Permissions>),
    /// No token, under `--auth required`: `auth` must come first.
    Awaiting,
}

/// One connection's auth state.
#[derive(Debug)]
pub(super) struct ConnAuth {
    gen: u32,
    state: State,
}

#[derive(Debug)]
enum State {
    Granted {
        grant: Grant,
        warned: bool,
    },
    Anonymous(Arc<Permissions>),
    /// Until `deadline` (Unix ms) for its first `auth`.
    Awaiting {
        deadline: u64,
    },
    /// Refused before it authenticated: its `err` and then its close are
    /// on the way (see [`Broker::close_after_reply`]); it is served
    /// nothing meanwhile.
    Closing,
}

/// Timed auth events, by Unix millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Time for `expiring`.
    Warn,
    /// Time to close an expired connection.
    End,
    /// An `auth` first message is overdue.
    Deadline,
}

/// The broker's auth bookkeeping: empty, and never looked at, with auth off.
#[derive(Default)]
pub(super) struct Auth {
    pub checker: Option<Arc<dyn Authenticator>>,
    conns: rustc_hash::FxHashMap<u32, ConnAuth>,
    timers: BTreeSet<(u64, u32, u32, Due)>,
    epoch: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("on", &self.checker.is_some())
            .field("conns", &self.conns.len())
            .field("timers", &self.timers.len())
            .finish()
    }
}

impl Auth {
    fn get(&self, conn: Client) -> Option<&State> {
        self.conns
            .get(&conn.slot)
            .filter(|a| a.gen == conn.gen)
            .map(|a| &a.state)
    }

    /// What `conn` may do: None for everything (auth off).
    fn perms(&self, conn: Client) -> Option<&Permissions> {
        self.checker.as_ref()?;
        static NONE: std::sync::OnceLock<Permissions> = std::sync::OnceLock::new();
        Some(match self.get(conn) {
            Some(State::Granted { grant, .. }) => &grant.perms,
            Some(State::Anonymous(p)) => p,
            Some(State::Awaiting { .. } | State::Closing) | None => {
                NONE.get_or_init(Permissions::none)
            }
        })
    }

    pub(super) fn user(&self, conn: Client) -> Option<&str> {
        match self.get(conn) {
            Some(State::Granted { grant, .. }) => grant.user.as_deref(),
            _ => None,
        }
    }

    fn schedule(&mut self, conn: Client, grant: &Grant, lead_s: u64) {
        if let Some(end) = grant.ends_ms {
            self.timers.insert((end, conn.slot, conn.gen, Due::End));
            if let Some(exp) = grant.exp {
                let warn = warn_at(exp, lead_s);
                self.timers.insert((warn, conn.slot, conn.gen, Due::Warn));
            }
        }
    }

    /// Forget the timers of `slot`'s state: a refresh or a close must not
    /// leave them until a token's `exp` (a day-long token on a connection
    /// churning every second kept ~60 bytes each for a day).
    fn drop_timers(&mut self, slot: u32) {
        let Auth {
            checker,
            conns,
            timers,
            ..
        } = self;
        let Some(a) = conns.get(&slot) else {
            return;
        };
        let gen = a.gen;
        match &a.state {
            State::Granted { grant, .. } => {
                if let Some(end) = grant.ends_ms {
                    timers.remove(&(end, slot, gen, Due::End));
                }
                if let (Some(exp), Some(c)) = (grant.exp, checker) {
                    timers.remove(&(warn_at(exp, c.expiring_lead_s()), slot, gen, Due::Warn));
                }
            }
            State::Awaiting { deadline } => {
                timers.remove(&(*deadline, slot, gen, Due::Deadline));
            }
            State::Anonymous(_) | State::Closing => {}
        }
    }

    /// Set `conn`'s state, dropping the timers of the one it replaces.
    fn set(&mut self, conn: Client, state: State) {
        self.drop_timers(conn.slot);
        self.conns.insert(
            conn.slot,
            ConnAuth {
                gen: conn.gen,
                state,
            },
        );
    }
}

/// A valid token refused for `reason` (`user_limit`, `other_user`), as the
/// log reports it.
fn refused(reason: &'static str, message: &str) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        user: None,
    }
}

/// When a token expiring at `exp` (Unix seconds) is warned of, in Unix
/// milliseconds.
fn warn_at(exp: u64, lead_s: u64) -> u64 {
    exp.saturating_sub(lead_s).saturating_mul(1000)
}

impl Broker {
    /// Check tokens with `checker` from now on (`--auth` not off).
    pub fn set_authenticator(&mut self, checker: Arc<dyn Authenticator>) {
        self.auth.checker = Some(checker);
    }

    /// A connection opened with auth on (after [`Broker::open`]).
    pub fn open_auth(&mut self, conn: Client, opening: Opening) {
        let Some(a) = self.auth.checker.clone() else {
            return;
        };
        match opening {
            Opening::Granted(grant) => {
                let lead = a.expiring_lead_s();
                self.auth.set(
                    conn,
                    State::Granted {
                        grant: grant.clone(),
                        warned: false,
                    },
                );
                self.auth.schedule(conn, &grant, lead);
            }
            Opening::Anonymous(p) => self.auth.set(conn, State::Anonymous(p)),
            Opening::Awaiting => {
                let deadline = a.now_ms().saturating_add(a.auth_timeout_ms());
                self.auth.set(conn, State::Awaiting { deadline });
                self.auth
                    .timers
                    .insert((deadline, conn.slot, conn.gen, Due::Deadline));
            }
        }
    }

    /// The connection ended: its user's count goes down.
    pub(super) fn auth_closed(&mut self, conn: Client) {
        let Some(a) = self.auth.checker.clone() else {
            return;
        };
        if self.auth.get(conn).is_none() {
            return;
        }
        if let Some(user) = self.auth.user(conn) {
            a.release_user(user);
        }
        self.auth.drop_timers(conn.slot);
        self.auth.conns.remove(&conn.slot);
    }

    /// Timed auth events held (tests: none may outlive what they are for).
    #[cfg(test)]
    pub(super) fn auth_timers(&self) -> usize {
        self.auth.timers.len()
    }

    /// Must `conn` still send `auth` before anything else? (Also true of
    /// a connection being closed for its first message, so that nothing
    /// it sends meanwhile is served.)
    pub(super) fn awaiting_auth(&self, conn: Client) -> bool {
        self.auth.checker.is_some()
            && matches!(
                self.auth.get(conn),
                Some(State::Awaiting { .. } | State::Closing)
            )
    }

    fn closing(&self, conn: Client) -> bool {
        matches!(self.auth.get(conn), Some(State::Closing))
    }

    /// `conn` sent something other than `auth` first, under `required`.
    pub(super) fn auth_first<H: Host>(&mut self, io: &mut H, conn: Client, id: Option<u64>) {
        if self.closing(conn) {
            return;
        }
        self.reply(io, conn, id, ErrCode::Unauthorized, "authenticate first");
        self.close_after_reply(io, conn, close::AUTH_REQUIRED, "authentication required");
    }

    /// Close `conn` after the `err` just queued for it: `Host::close`
    /// drops what is still queued, and the client is promised the `err`
    /// before the close (found by tests/python/test_auth.py).
    fn close_after_reply<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        code: u16,
        reason: &'static str,
    ) {
        self.auth.set(conn, State::Closing);
        if io.close_after(conn, code, reason) {
            self.log_close(io, conn, code, reason);
        }
    }

    /// The first pattern of a `sub` that `conn` may not subscribe to.
    pub(super) fn sub_refused<'a, S: AsRef<str>>(
        &self,
        conn: Client,
        topics: &'a [S],
    ) -> Option<&'a str> {
        let perms = self.auth.perms(conn)?;
        topics
            .iter()
            .map(|t| t.as_ref())
            .find(|t| !perms.may_subscribe(t))
    }

    /// May `conn` publish to `topic`? Checked once per publish.
    pub(super) fn pub_allowed(&self, conn: Client, topic: &str) -> bool {
        self.auth.perms(conn).is_none_or(|p| p.may_publish(topic))
    }

    /// Answer a refusal for lack of permission.
    pub(super) fn forbidden<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        id: Option<u64>,
        what: &str,
        topic: &str,
    ) {
        inc(&self.my_stats(io).forbidden_total, 1);
        let msg = format!("not allowed to {what} '{}'", wire::quote(topic));
        self.reply(io, conn, id, ErrCode::Forbidden, &msg);
    }

    /// `{"op":"auth"}`: a first token, or a fresh one replacing the
    /// connection's permissions.
    pub(super) fn authenticate<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        token: &str,
        id: Option<u64>,
    ) {
        let Some(a) = self.auth.checker.clone() else {
            let msg = "auth is not enabled on this server";
            return self.reply(io, conn, id, ErrCode::BadOp, msg);
        };
        if self.closing(conn) {
            return;
        }
        let first = self.awaiting_auth(conn);
        let grant = match a.verify(token) {
            Ok(g) => g,
            Err(r) => {
                self.log_auth_failed(io, conn, &r, None);
                let msg = format!("invalid token: {}", r.message);
                self.reply(io, conn, id, ErrCode::Unauthorized, &msg);
                if first {
                    self.close_after_reply(io, conn, close::INVALID_TOKEN, "invalid token");
                }
                return;
            }
        };
        let held_user = self.auth.user(conn).map(Box::<str>::from);
        match (&held_user, &grant.user) {
            (Some(held), new) if new.as_deref() != Some(&**held) => {
                let msg = "token is for another user";
                let r = refused("other_user", msg);
                self.log_auth_failed(io, conn, &r, new.as_deref());
                return self.reply(io, conn, id, ErrCode::Unauthorized, msg);
            }
            (None, Some(user)) if !a.admit_user(user) => {
                let msg = "too many connections for this user";
                let r = refused("user_limit", msg);
                self.log_auth_failed(io, conn, &r, Some(user));
                self.reply(io, conn, id, ErrCode::Unauthorized, msg);
                if first {
                    self.close_after_reply(
                        io,
                        conn,
                        close::TOO_MANY_FOR_USER,
                        "too many connections for this user",
                    );
                }
                return;
            }
            _ => {}
        }
        if !first {
            inc(&self.my_stats(io).auth_refreshes_total, 1);
        }
        // Subscriptions the new token no longer covers go now.
        let gone: Vec<Box<str>> = match live(&mut self.conns, conn) {
            Some(st) => st
                .patterns()
                .filter(|p| !grant.perms.may_subscribe(p))
                .map(Box::from)
                .collect(),
            None => Vec::new(),
        };
        if !gone.is_empty() {
            self.drop_subscriptions(io, conn, &gone);
            inc(&self.my_stats(io).auth_revoked_total, gone.len() as u64);
            io.send(conn, wire::revoked(&gone));
        }
        // Set first: it drops the replaced token's timers, which may be
        // the very ones the new token schedules (the same `exp`).
        self.auth.set(
            conn,
            State::Granted {
                grant: grant.clone(),
                warned: false,
            },
        );
        self.auth.schedule(conn, &grant, a.expiring_lead_s());
        if let Some(id) = id {
            self.answer(io, conn, wire::ack(id));
        }
    }

    /// On the tick: warnings and closes that are due, and after a reload,
    /// connections whose token ID was denied.
    pub(super) fn auth_tick<H: Host>(&mut self, io: &mut H) {
        let Some(a) = self.auth.checker.clone() else {
            return;
        };
        let now = a.now_ms();
        while let Some(&(at, slot, gen, due)) = self.auth.timers.first() {
            if at > now {
                break;
            }
            self.auth.timers.pop_first();
            self.auth_due(io, &*a, Client { slot, gen }, due, now);
        }
        let epoch = a.epoch();
        if epoch != self.auth.epoch {
            self.auth.epoch = epoch;
            let denied: Vec<Client> = self
                .auth
                .conns
                .iter()
                .filter_map(|(&slot, c)| match &c.state {
                    State::Granted { grant, .. } => grant
                        .jti
                        .as_deref()
                        .filter(|j| a.denied(j))
                        .map(|_| Client { slot, gen: c.gen }),
                    _ => None,
                })
                .collect();
            for c in denied {
                if io.close(c, close::TOKEN_REVOKED, "token revoked") {
                    inc(&self.my_stats(io).auth_denied_total, 1);
                    self.log_close(io, c, close::TOKEN_REVOKED, "token revoked");
                }
            }
        }
    }

    fn auth_due<H: Host>(
        &mut self,
        io: &mut H,
        a: &dyn Authenticator,
        c: Client,
        due: Due,
        now: u64,
    ) {
        let lead_ms = a.expiring_lead_s().saturating_mul(1000);
        let Some(entry) = self.auth.conns.get_mut(&c.slot).filter(|e| e.gen == c.gen) else {
            return;
        };
        match (&mut entry.state, due) {
            (State::Awaiting { .. }, Due::Deadline) => {
                let reason = "authentication required";
                if io.close(c, close::AUTH_REQUIRED, reason) {
                    self.log_close(io, c, close::AUTH_REQUIRED, reason);
                }
            }
            (State::Granted { grant, warned }, Due::Warn) => {
                // An entry from an earlier token fires early: not yet.
                let Some(exp) = grant.exp else { return };
                let exp_ms = exp.saturating_mul(1000);
                if *warned || exp_ms > now.saturating_add(lead_ms) {
                    return;
                }
                *warned = true;
                let left = exp_ms.saturating_sub(now).div_ceil(1000);
                io.send(c, wire::expiring(left));
            }
            (State::Granted { grant, .. }, Due::End) if grant.ends_ms.is_some_and(|e| e <= now) => {
                inc(&self.my_stats(io).auth_expired_total, 1);
                if io.close(c, close::TOKEN_EXPIRED, "token expired") {
                    self.log_close(io, c, close::TOKEN_EXPIRED, "token expired");
                }
            }
            _ => {}
        }
    }
}
