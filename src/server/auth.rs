//! The server's side of entitlements (issue #13): JWT checks behind the
//! broker's [`Authenticator`], the handshake's `401`, per-user connection
//! counts over all shards, reloads on SIGHUP, and the auth metrics.

use crate::auth::{AuthError, Claims, Denylist, KeyConfig, KeySet, Rules, Verifier};
use crate::broker::auth::{Authenticator, Grant, Opening, Refusal};
use crate::broker::Permissions;
use crate::logs::{self, Who};
use crate::ws::http;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Tokens are ignored; everyone may do everything.
    Off,
    /// A token grants its permissions; no token gets the anonymous ones.
    Optional,
    /// No valid token, no service.
    Required,
}

/// What the gate is built from (the binary's flags).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: Mode,
    pub keys: KeyConfig,
    pub rules: Rules,
    pub denylist: Option<PathBuf>,
    pub anonymous_sub: Vec<String>,
    pub anonymous_pub: Vec<String>,
    pub auth_timeout: Duration,
    pub expiring_lead: Duration,
    /// Connections per `sub` claim over all shards; 0: no cap.
    pub max_per_user: u32,
}

/// The results a check is counted by (`ringfan_auth_total{result=…}`).
const RESULTS: [&str; 12] = [
    "ok",
    "malformed",
    "bad_signature",
    "unknown_kid",
    "no_key",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "bad_claim",
    "algorithm_not_allowed",
    "denied_jti",
];

/// Checks tokens for every shard. Shared: keys are read under a lock
/// taken for a pointer copy, so a reload never waits on a check.
pub struct Gate {
    config: AuthConfig,
    verifier: RwLock<Arc<Verifier>>,
    anonymous: Arc<Permissions>,
    epoch: AtomicU64,
    users: Mutex<FxHashMap<Box<str>, u32>>,
    results: [AtomicU64; RESULTS.len()],
    user_limited: AtomicU64,
}

impl Gate {
    /// Load keys and denylist; every error names its file and reason.
    pub fn new(config: AuthConfig) -> Result<Gate, String> {
        let anonymous = Permissions::new(&config.anonymous_sub, &config.anonymous_pub)
            .map_err(|(p, e)| format!("anonymous permission '{p}': {e}"))?;
        let verifier = load(&config)?;
        Ok(Gate {
            verifier: RwLock::new(Arc::new(verifier)),
            anonymous: Arc::new(anonymous),
            epoch: AtomicU64::new(0),
            users: Mutex::new(FxHashMap::default()),
            results: Default::default(),
            user_limited: AtomicU64::new(0),
            config,
        })
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// What a request without a token may do under `--auth optional`.
    pub fn anonymous(&self) -> Arc<Permissions> {
        self.anonymous.clone()
    }

    /// Load keys and denylist again (SIGHUP). On failure the old ones stay.
    /// Returns what was loaded, for the log.
    pub fn reload(&self) -> Result<String, String> {
        let v = load(&self.config)?;
        let summary = format!(
            "{} key(s), {} denied token id(s)",
            v.keys.len(),
            v.denylist.len()
        );
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
        // Release: a shard that sees the new epoch sees the new denylist.
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(summary)
    }

    fn current(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How a `/ws` upgrade carrying `token` (or none) starts, or the
    /// response refusing it (`401`, `429`).
    pub fn at_handshake(&self, token: Option<&str>) -> Result<Opening, Bytes> {
        self.at_handshake_from(token, Who::default())
    }

    /// [`Gate::at_handshake`] for the connection `who` (its id and peer,
    /// for the log line of a refusal).
    pub fn at_handshake_from(&self, token: Option<&str>, who: Who<'_>) -> Result<Opening, Bytes> {
        let Some(token) = token else {
            return Ok(match self.config.mode {
                Mode::Required => Opening::Awaiting,
                _ => Opening::Anonymous(self.anonymous.clone()),
            });
        };
        let grant = self.verify(token).map_err(|r| {
            let who = Who {
                user: r.user.as_deref(),
                ..who
            };
            logs::auth_failed(&who, "handshake", r.reason, &r.message);
            let body = format!("invalid token: {}", r.message);
            let challenge = [("WWW-Authenticate", "Bearer error=\"invalid_token\"")];
            http::error(401, &challenge, &body)
        })?;
        if let Some(user) = &grant.user {
            if !self.admit_user(user) {
                let who = Who {
                    user: Some(user),
                    ..who
                };
                let msg = "too many connections for this user";
                logs::auth_failed(&who, "handshake", "user_limit", msg);
                return Err(http::error(
                    429,
                    &[("Retry-After", "1")],
                    "too many connections for this user",
                ));
            }
        }
        Ok(Opening::Granted(grant))
    }

    fn grant(&self, claims: Claims) -> Result<Grant, Refusal> {
        let perms = Permissions::new(&claims.sub, &claims.publ).map_err(|(p, e)| Refusal {
            reason: "bad_claim",
            message: format!("bad_claim: pattern '{p}': {e}"),
            user: claims.subject.as_deref().map(Into::into),
        })?;
        let leeway = self.config.rules.leeway_s;
        Ok(Grant {
            perms: Arc::new(perms),
            exp: claims.exp,
            ends_ms: claims
                .exp
                .map(|e| e.saturating_add(leeway).saturating_mul(1000)),
            jti: claims.jti.map(Into::into),
            user: claims.subject.map(Into::into),
        })
    }

    fn count(&self, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.results[i].fetch_add(1, Relaxed);
        }
    }

    /// The auth counters for `/metrics` (`server::metrics`): the checks
    /// by result, and the valid tokens refused for their user's count.
    /// Process-wide (the gate is shared by every shard; a check is once
    /// per connection, so its shared counter costs nothing that matters).
    pub fn counts(&self) -> (Vec<(&'static str, u64)>, u64) {
        let results = RESULTS
            .iter()
            .zip(&self.results)
            .map(|(r, n)| (*r, n.load(Relaxed)))
            .collect();
        (results, self.user_limited.load(Relaxed))
    }
}

fn load(config: &AuthConfig) -> Result<Verifier, String> {
    let keys = KeySet::load(&config.keys)?;
    let mut v = Verifier::new(Arc::new(keys), config.rules.clone());
    if let Some(path) = &config.denylist {
        v.denylist = Arc::new(Denylist::load(path)?);
    }
    Ok(v)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Authenticator for Gate {
    fn verify(&self, token: &str) -> Result<Grant, Refusal> {
        let refusal = |(e, user): (AuthError, Option<String>)| Refusal {
            reason: e.reason(),
            message: e.to_string(),
            user: user.map(Into::into),
        };
        let result = self
            .current()
            .verify_subject(token, unix_ms() / 1000)
            .map_err(refusal)
            .and_then(|c| self.grant(c));
        self.count(match &result {
            Ok(_) => "ok",
            Err(r) => r.reason,
        });
        result
    }

    fn now_ms(&self) -> u64 {
        unix_ms()
    }

    fn expiring_lead_s(&self) -> u64 {
        self.config.expiring_lead.as_secs()
    }

    fn auth_timeout_ms(&self) -> u64 {
        self.config.auth_timeout.as_millis() as u64
    }

    fn admit_user(&self, user: &str) -> bool {
        let max = self.config.max_per_user;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        match users.get_mut(user) {
            Some(n) if max > 0 && *n >= max => {
                self.user_limited.fetch_add(1, Relaxed);
                false
            }
            Some(n) => {
                *n += 1;
                true
            }
            None => {
                users.insert(user.into(), 1);
                true
            }
        }
    }

    fn release_user(&self, user: &str) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    fn denied(&self, jti: &str) -> bool {
        self.current().denylist.contains(jti)
    }
}
