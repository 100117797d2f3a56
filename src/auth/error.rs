//! Why a token was refused.

use std::fmt;

/// Why [`super::Verifier::verify`] refused a token. [`AuthError::reason`]
/// is a short, stable label for metrics and logs; `Display` adds the
/// detail (which claim, which pattern) for a log line. Neither ever holds
/// the token or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Not three base64url parts with a JSON header and a JSON object
    /// payload, too long, or an unsupported header (`crit`).
    Malformed(String),
    /// The signature does not verify with the selected key(s).
    BadSignature,
    /// The header names a `kid` that the key set does not hold.
    UnknownKid,
    /// No `kid`, and no key accepts the header's algorithm.
    NoKey,
    /// `exp` (plus leeway) is not after now.
    Expired,
    /// `nbf` is after now (plus leeway).
    NotYetValid,
    /// `iss` is missing or not one of the configured issuers.
    WrongIssuer,
    /// `aud` does not name a configured audience (or names one while none
    /// is configured).
    WrongAudience,
    /// A claim has the wrong type, a pattern is invalid, or a required
    /// claim is missing.
    BadClaim(String),
    /// The header's `alg` is `none`, unknown, not allowed by the rules, or
    /// not one the selected key is for.
    AlgorithmNotAllowed(String),
    /// The token's `jti` is on the denylist.
    DeniedJti,
}

impl AuthError {
    /// Stable label; changing one breaks dashboards, so add, don't rename.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnknownKid => "unknown_kid",
            Self::NoKey => "no_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::BadClaim(_) => "bad_claim",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::DeniedJti => "denied_jti",
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(d) | Self::BadClaim(d) | Self::AlgorithmNotAllowed(d) => {
                write!(f, "{}: {d}", self.reason())
            }
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for AuthError {}
