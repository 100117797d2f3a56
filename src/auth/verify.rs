//! Verifying a token against a [`KeySet`] and [`Rules`], at a time the
//! caller passes in (sans-clock: tests and the runtime's coarse clock
//! decide "now", never the system clock behind the caller's back).

use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::claims::{self, Claims, DEFAULT_PERMISSIONS_CLAIM};
use super::keys::{Key, KeySet};
use super::{AuthError, Denylist};

/// Default clock-skew allowance for `exp` and `nbf`. Small on purpose:
/// issuers and brokers run NTP (skew well under a second), every second
/// of leeway is a second more of life for a leaked or revoked token, and
/// a badly skewed clock should show up as `not_yet_valid`/`expired`
/// counts rather than be absorbed silently.
pub const DEFAULT_LEEWAY_S: u64 = 5;
/// A token without `kid` is tried against at most this many keys that
/// accept its algorithm (in load order), so a forged kid-less token costs
/// at most this many signature checks. Enough for a rotation overlap
/// (old and new key); issuers with more keys should send `kid`.
pub const MAX_KIDLESS_TRIES: usize = 4;
/// Tokens longer than this are refused before any decoding; real tokens
/// with a few hundred patterns stay well under it.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Refuse tokens without `exp`. Off by default: long-lived service
    /// tokens are common, and they end by key rotation or the denylist.
    pub require_exp: bool,
    /// If non-empty, `iss` must be present and one of these.
    pub issuers: Vec<String>,
    /// If non-empty, `aud` must name one of these. If empty, a token that
    /// has an `aud` is refused (RFC 7519 4.1.3: a recipient not named in
    /// `aud` must reject), so tokens minted for other services fail.
    pub audiences: Vec<String>,
    /// The claim holding `{"sub": [...], "pub": [...]}`.
    pub permissions_claim: String,
    /// Algorithms accepted at all; a key narrows this further to its own.
    pub algorithms: Vec<Algorithm>,
    pub max_token_len: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            leeway_s: DEFAULT_LEEWAY_S,
            require_exp: false,
            issuers: Vec::new(),
            audiences: Vec::new(),
            permissions_claim: DEFAULT_PERMISSIONS_CLAIM.to_string(),
            // The ones issue #13 asks for; RS384/PS256/ES384... are
            // supported by the keys but must be opted into.
            algorithms: vec![
                Algorithm::HS256,
                Algorithm::HS384,
                Algorithm::HS512,
                Algorithm::RS256,
                Algorithm::ES256,
                Algorithm::EdDSA,
            ],
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

/// Verifies tokens. Cheap to clone; a reload builds a new one (or swaps
/// `keys`/`denylist`) and keeps `rules`.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub keys: Arc<KeySet>,
    pub rules: Rules,
    pub denylist: Arc<Denylist>,
}

/// The header fields we act on; everything else is ignored except
/// `crit`, which by RFC 7515 4.1.11 we must refuse when we do not
/// understand its extensions (we understand none).
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

impl Verifier {
    /// A verifier with an empty denylist.
    pub fn new(keys: Arc<KeySet>, rules: Rules) -> Verifier {
        Verifier {
            keys,
            rules,
            denylist: Arc::new(Denylist::default()),
        }
    }

    /// Check `token`'s signature, times (against `now_unix`, seconds since
    /// the epoch), issuer, audience, jti and permissions claim.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, AuthError> {
        self.verify_subject(token, now_unix).map_err(|(e, _)| e)
    }

    /// [`Verifier::verify`], with the token's `sub` beside a refusal made
    /// after its signature verified (`expired`, `wrong_audience`,
    /// `denied_jti`…), for the log: whose token it was. A token whose
    /// signature did not verify names no one.
    pub fn verify_subject(
        &self,
        token: &str,
        now_unix: u64,
    ) -> Result<Claims, (AuthError, Option<String>)> {
        let (claims, reg) = self.verify_signature(token).map_err(|e| (e, None))?;
        match self.check(&claims, &reg, now_unix) {
            Ok(()) => Ok(claims),
            Err(e) => Err((e, claims.subject)),
        }
    }

    /// The signature, and the claims parsed (not yet checked).
    fn verify_signature(&self, token: &str) -> Result<(Claims, claims::Registered), AuthError> {
        if token.len() > self.rules.max_token_len {
            return Err(AuthError::Malformed(format!(
                "longer than {} bytes",
                self.rules.max_token_len
            )));
        }
        let (alg, kid) = self.header(token)?;
        let payload = match kid {
            Some(kid) => {
                let key = self.keys.by_kid(&kid).ok_or(AuthError::UnknownKid)?;
                if !key.algs.contains(&alg) {
                    return Err(AuthError::AlgorithmNotAllowed(format!(
                        "{alg:?} with key {kid:?}"
                    )));
                }
                decode(token, key, alg)?
            }
            None => self.decode_kidless(token, alg)?,
        };
        claims::parse(&payload, &self.rules.permissions_claim)
    }

    /// The algorithm (allowed by the rules) and kid of the token.
    fn header(&self, token: &str) -> Result<(Algorithm, Option<String>), AuthError> {
        let mut parts = token.split('.');
        let (Some(head), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed("not three dot-separated parts".into()));
        };
        let json = URL_SAFE_NO_PAD
            .decode(head)
            .map_err(|_| AuthError::Malformed("header is not base64url".into()))?;
        let raw: RawHeader = serde_json::from_slice(&json)
            .map_err(|_| AuthError::Malformed("header is not a JSON object with alg".into()))?;
        if raw.crit.is_some() {
            return Err(AuthError::Malformed("header has crit".into()));
        }
        // Parsed here rather than by jsonwebtoken so that "none" or an
        // unknown alg is counted as algorithm_not_allowed, not malformed.
        let shown: String = raw.alg.chars().take(16).collect();
        let alg = Algorithm::from_str(&raw.alg)
            .ok()
            .filter(|a| self.rules.algorithms.contains(a))
            .ok_or(AuthError::AlgorithmNotAllowed(format!("{shown:?}")))?;
        Ok((alg, raw.kid))
    }

    fn decode_kidless(&self, token: &str, alg: Algorithm) -> Result<Map<String, Value>, AuthError> {
        let mut tried = false;
        for key in self.keys.for_alg(alg).take(MAX_KIDLESS_TRIES) {
            tried = true;
            match decode(token, key, alg) {
                Err(AuthError::BadSignature) => continue,
                other => return other,
            }
        }
        Err(if tried {
            AuthError::BadSignature
        } else {
            AuthError::NoKey
        })
    }

    fn check(&self, c: &Claims, reg: &claims::Registered, now: u64) -> Result<(), AuthError> {
        let leeway = self.rules.leeway_s;
        match c.exp {
            None if self.rules.require_exp => return Err(AuthError::BadClaim("no exp".into())),
            // RFC 7519 4.1.4: valid only while now is before exp.
            Some(exp) if now >= exp.saturating_add(leeway) => return Err(AuthError::Expired),
            _ => {}
        }
        if let Some(nbf) = reg.nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        if !self.rules.issuers.is_empty() {
            match &reg.iss {
                Some(iss) if self.rules.issuers.contains(iss) => {}
                _ => return Err(AuthError::WrongIssuer),
            }
        }
        match &reg.aud {
            None if self.rules.audiences.is_empty() => {}
            Some(aud) if aud.iter().any(|a| self.rules.audiences.contains(a)) => {}
            _ => return Err(AuthError::WrongAudience),
        }
        if let Some(jti) = &c.jti {
            if self.denylist.contains(jti) {
                return Err(AuthError::DeniedJti);
            }
        }
        Ok(())
    }
}

/// Signature check by jsonwebtoken; its claim checks are all off because
/// it would read the system clock, and we check claims ourselves above.
fn decode(token: &str, key: &Key, alg: Algorithm) -> Result<Map<String, Value>, AuthError> {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v.leeway = 0;
    match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::InvalidAlgorithmName => AuthError::AlgorithmNotAllowed(format!("{alg:?}")),
            // Base64, JSON, UTF-8 and shape errors, in whatever part.
            _ => AuthError::Malformed(e.to_string()),
        }),
    }
}
