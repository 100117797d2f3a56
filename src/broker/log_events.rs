//! The broker's log events ([`crate::logs`]): slow-consumer disconnects,
//! authentication failures and the closes auth decides. The broker knows
//! the user (the token's `sub`); it asks the host for the peer address,
//! only here, once per logged event, never per message.

use super::auth::Refusal;
use super::config::SlowPolicy;
use super::engine::Broker;
use super::host::{Client, Host};
use crate::logs::{self, ConnLabel, Who};

impl Broker {
    /// Who `conn` is, as far as the broker and its host know.
    fn who<H: Host>(&self, io: &mut H, conn: Client) -> Who<'_> {
        Who {
            conn: Some(ConnLabel {
                shard: io.shard(),
                key: conn.slot,
                gen: conn.gen,
            }),
            peer: io.peer(conn),
            user: self.auth.user(conn),
        }
    }

    /// `conn` was just closed 1008 for being slow under the policy.
    #[cold]
    #[inline(never)]
    pub(super) fn log_slow<H: Host>(&self, io: &mut H, conn: Client) {
        let policy = match self.config.policy {
            SlowPolicy::Disconnect => "disconnect",
            SlowPolicy::Drop => "drop",
            SlowPolicy::Conflate => "conflate",
        };
        let queued = io.backlog(conn);
        logs::slow_consumer(&self.who(io, conn), policy, queued);
    }

    /// `conn`'s `auth` op failed: `refusal` (a token refused), or the
    /// label and message of a valid token refused (`user_limit`,
    /// `other_user`) for `user`.
    #[cold]
    #[inline(never)]
    pub(super) fn log_auth_failed<H: Host>(
        &self,
        io: &mut H,
        conn: Client,
        refusal: &Refusal,
        user: Option<&str>,
    ) {
        let mut who = self.who(io, conn);
        // The connection's user if it has one, else the one the token
        // named (known once its signature verified: `expired`…).
        who.user = who.user.or(user).or(refusal.user.as_deref());
        logs::auth_failed(&who, "auth_op", refusal.reason, &refusal.message);
    }

    /// The broker closes `conn` with `code` (4xxx) for `reason`.
    #[cold]
    #[inline(never)]
    pub(super) fn log_close<H: Host>(&self, io: &mut H, conn: Client, code: u16, reason: &str) {
        logs::policy_close(&self.who(io, conn), code, reason);
    }
}
