//! The broker's auth bookkeeping with a stand-in token checker (the JWT
//! side is tested in `crate::auth` and end to end in
//! tests/python/test_auth.py): what it keeps per connection goes when the
//! connection or its token does.

use super::auth::{Authenticator, Grant, Opening, Refusal};
use super::permissions::Permissions;
use super::sim::Cluster;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Tokens are `user:exp_seconds:pattern`; the clock is set by the test.
struct Checker {
    now_ms: AtomicU64,
    users: std::sync::Mutex<Vec<String>>,
}

impl Authenticator for Checker {
    fn verify(&self, token: &str) -> Result<Grant, Refusal> {
        let mut parts = token.split(':');
        let (Some(user), Some(exp), Some(pattern)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal {
                reason: "malformed",
                message: "malformed".into(),
                user: None,
            });
        };
        let exp: u64 = exp.parse().map_err(|_| Refusal {
            reason: "malformed",
            message: "bad exp".into(),
            user: None,
        })?;
        Ok(Grant {
            perms: Arc::new(Permissions::new([pattern], [pattern]).map_err(|_| Refusal {
                reason: "bad_claim",
                message: "bad pattern".into(),
                user: None,
            })?),
            exp: Some(exp),
            ends_ms: Some(exp * 1000),
            jti: None,
            user: Some(user.into()),
        })
    }
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
    fn expiring_lead_s(&self) -> u64 {
        60
    }
    fn auth_timeout_ms(&self) -> u64 {
        10_000
    }
    fn admit_user(&self, user: &str) -> bool {
        self.users.lock().map(|mut u| u.push(user.into())).is_ok()
    }
    fn release_user(&self, user: &str) {
        if let Ok(mut u) = self.users.lock() {
            if let Some(i) = u.iter().position(|x| x == user) {
                u.swap_remove(i);
            }
        }
    }
    fn epoch(&self) -> u64 {
        0
    }
    fn denied(&self, _: &str) -> bool {
        false
    }
}

fn cluster() -> (Cluster, Arc<Checker>) {
    let checker = Arc::new(Checker {
        now_ms: AtomicU64::new(1_000_000),
        users: Default::default(),
    });
    let mut cl = Cluster::new(1);
    cl.brokers[0].set_authenticator(checker.clone());
    (cl, checker)
}

#[test]
fn timers_go_with_the_connection_and_with_a_replaced_token() {
    let (mut cl, checker) = cluster();
    let a = cl.connect(0);
    cl.brokers[0].open_auth(a.1, Opening::Awaiting);
    assert_eq!(cl.brokers[0].auth_timers(), 1, "the first-message deadline");
    cl.send_text(a, r#"{"op":"auth","token":"u1:5000:a.>","id":1}"#);
    assert_eq!(
        cl.brokers[0].auth_timers(),
        2,
        "warn and end, not the deadline"
    );
    // Refreshes replace the timers, whether exp moves or not.
    for token in ["u1:5000:a.>", "u1:9000:a.>", "u1:9000:a.b"] {
        let req = format!(r#"{{"op":"auth","token":"{token}","id":2}}"#);
        cl.send_text(a, &req);
        assert_eq!(cl.brokers[0].auth_timers(), 2, "after {token}");
    }
    assert_eq!(checker.users.lock().map(|u| u.len()).unwrap_or(0), 1);
    cl.close(a);
    assert_eq!(
        cl.brokers[0].auth_timers(),
        0,
        "a closed connection keeps none"
    );
    assert_eq!(checker.users.lock().map(|u| u.len()).unwrap_or(9), 0);
}

#[test]
fn a_connection_refused_before_it_authenticated_keeps_no_deadline() {
    let (mut cl, _) = cluster();
    let a = cl.connect(0);
    cl.brokers[0].open_auth(a.1, Opening::Awaiting);
    cl.send_text(a, r#"{"op":"auth","token":"garbage","id":1}"#);
    assert_eq!(cl.brokers[0].auth_timers(), 0);
    let b = cl.connect(0);
    cl.brokers[0].open_auth(b.1, Opening::Awaiting);
    cl.send_text(b, r#"{"op":"sub","topic":"a","id":1}"#);
    assert_eq!(cl.brokers[0].auth_timers(), 0);
    let received = cl.received(b);
    assert_eq!(received[0]["code"], "unauthorized", "{received:?}");
}
