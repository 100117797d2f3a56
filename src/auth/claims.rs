//! What a verified token grants ([`Claims`]), and reading it, with the
//! registered claims the verifier checks, out of the JSON payload.

use serde_json::{Map, Value};

use crate::broker::topic::check_pattern;

use super::AuthError;

/// The default name of the permissions claim.
pub const DEFAULT_PERMISSIONS_CLAIM: &str = "ringfan";
/// Most patterns per list: a token is checked once per connection, but a
/// huge list would still cost every match on the connection afterwards.
pub const MAX_PATTERNS: usize = 256;

/// A verified token's identity and permissions. `sub`/`publ` are raw
/// patterns, each valid per `check_pattern`; an absent permissions claim
/// gives empty lists (no permissions), not "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The JWT `sub` (who), for logs.
    pub subject: Option<String>,
    /// The JWT `exp`, so the caller may end the session when it passes.
    pub exp: Option<u64>,
    /// The JWT `jti`, for logs and the denylist.
    pub jti: Option<String>,
    /// Patterns the holder may subscribe to.
    pub sub: Vec<String>,
    /// Patterns the holder may publish to (`pub` is a keyword).
    pub publ: Vec<String>,
}

/// The registered claims the verifier checks, read but not yet judged.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    pub(crate) nbf: Option<u64>,
    pub(crate) iss: Option<String>,
    /// `aud` as a list, whether the token gave a string or an array.
    pub(crate) aud: Option<Vec<String>>,
}

/// Read `payload` (the JWT claims object): registered claims must have
/// their RFC 7519 types, and the permissions claim named `perm_claim`
/// must be `{"sub": [patterns], "pub": [patterns]}` (either list may be
/// absent; other members are ignored, so issuers may add fields older
/// brokers do not know).
pub(crate) fn parse(
    payload: &Map<String, Value>,
    perm_claim: &str,
) -> Result<(Claims, Registered), AuthError> {
    let claims = Claims {
        subject: string(payload, "sub")?,
        // Floor: a fractional exp must not stretch the token's life.
        exp: numeric_date(payload, "exp", f64::floor)?,
        jti: string(payload, "jti")?,
        sub: Vec::new(),
        publ: Vec::new(),
    };
    let registered = Registered {
        // Ceil: a fractional nbf must not start the token early.
        nbf: numeric_date(payload, "nbf", f64::ceil)?,
        iss: string(payload, "iss")?,
        aud: match payload.get("aud") {
            None => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("aud is not a string or array of strings"))?,
            ),
            Some(_) => return Err(bad("aud is not a string or array of strings")),
        },
    };
    let (sub, publ) = match payload.get(perm_claim) {
        None => (Vec::new(), Vec::new()),
        Some(Value::Object(perms)) => (
            patterns(perms, perm_claim, "sub")?,
            patterns(perms, perm_claim, "pub")?,
        ),
        Some(_) => return Err(bad(&format!("{perm_claim} is not an object"))),
    };
    Ok((
        Claims {
            sub,
            publ,
            ..claims
        },
        registered,
    ))
}

fn bad(what: &str) -> AuthError {
    AuthError::BadClaim(what.to_string())
}

fn string(payload: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match payload.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("{name} is not a string"))),
    }
}

/// A NumericDate (seconds since the epoch; RFC 7519 allows fractions).
fn numeric_date(
    payload: &Map<String, Value>,
    name: &str,
    round: fn(f64) -> f64,
) -> Result<Option<u64>, AuthError> {
    let Some(v) = payload.get(name) else {
        return Ok(None);
    };
    if let Some(n) = v.as_u64() {
        return Ok(Some(n));
    }
    match v.as_f64() {
        // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast exact.
        Some(f) if f.is_finite() && f >= 0.0 && round(f) < u64::MAX as f64 => {
            Ok(Some(round(f) as u64))
        }
        _ => Err(bad(&format!("{name} is not a non-negative NumericDate"))),
    }
}

fn patterns(perms: &Map<String, Value>, claim: &str, list: &str) -> Result<Vec<String>, AuthError> {
    let Some(v) = perms.get(list) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| bad(&format!("{claim}.{list} is not an array")))?;
    if items.len() > MAX_PATTERNS {
        return Err(bad(&format!(
            "{claim}.{list} has more than {MAX_PATTERNS} patterns"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let p = item
            .as_str()
            .ok_or_else(|| bad(&format!("{claim}.{list} holds a non-string")))?;
        check_pattern(p).map_err(|e| {
            // Bounded: a pattern may be long, a log line should not be.
            let shown: String = p.chars().take(80).collect();
            bad(&format!("{claim}.{list}: pattern {shown:?}: {e}"))
        })?;
        out.push(p.to_string());
    }
    Ok(out)
}
