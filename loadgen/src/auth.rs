//! Tokens for a broker with auth on (#13), so that every scenario can run
//! with it: one token for every connection (`--token`, `--token-file`), or
//! an HS256 token minted for each connection from the broker's own secret
//! file (`--mint-secret-file`), whose `sub` is `lg-<connection index>` so
//! that per-user limits can be measured. The token goes in the upgrade
//! request as `?token=` or as `Authorization: Bearer`.
//!
//! Minting happens at dial time, in the shard that dials (~1-2 us each,
//! against tens of microseconds for the connect and handshake): nothing is
//! held per connection, and a storm's reconnections get fresh `iat`/`exp`.

use clap::{Args, ValueEnum};
use ringfan::auth::{mint_hs, Algorithm};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the token goes in the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Via {
    /// `GET /ws?token=<jwt>` (appended with `&` when the URL has a query).
    #[default]
    Query,
    /// `Authorization: Bearer <jwt>`.
    Header,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Header => "header",
        }
    }
}

/// The auth flags every scenario shares. Serialised into the report's
/// params as what was used (the source, the file names, the minted
/// claims), never the token or the secret; Debug shows the same.
#[derive(Args, Clone)]
#[command(next_help_heading = "Auth (tokens for a broker with --auth on)")]
pub struct AuthArgs {
    /// A JWT every connection presents. Anyone who can run `ps` sees it:
    /// prefer --token-file.
    #[arg(long, value_name = "JWT", conflicts_with_all = ["token_file", "mint_secret_file"])]
    pub token: Option<String>,
    /// Read the JWT every connection presents from PATH (surrounding
    /// whitespace trimmed).
    #[arg(long, value_name = "PATH", conflicts_with = "mint_secret_file")]
    pub token_file: Option<PathBuf>,
    /// Mint an HS256 token per connection, with `sub` = lg-<connection
    /// index>, signed with the secret in PATH (raw bytes, trailing CR/LF
    /// stripped, at least 32 bytes: read as the broker's --jwt-secret-file
    /// reads it).
    #[arg(long, value_name = "PATH")]
    pub mint_secret_file: Option<PathBuf>,
    /// Minted tokens: a pattern they may subscribe to (repeatable; `''`
    /// for none).
    #[arg(
        long,
        value_name = "PATTERN",
        default_value = ">",
        requires = "mint_secret_file"
    )]
    pub mint_sub: Vec<String>,
    /// Minted tokens: a topic pattern they may publish to (repeatable;
    /// `''` for none).
    #[arg(
        long,
        value_name = "PATTERN",
        default_value = ">",
        requires = "mint_secret_file"
    )]
    pub mint_pub: Vec<String>,
    /// Minted tokens: `kid` in the header (the broker's kid for a secret
    /// file is its name up to the first dot).
    #[arg(long, value_name = "KID", requires = "mint_secret_file")]
    pub mint_kid: Option<String>,
    /// Minted tokens: seconds from dialing to `exp` (`iat` is the dial
    /// time).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 3600,
        requires = "mint_secret_file"
    )]
    pub mint_ttl: u64,
    /// Minted tokens: the claim holding the permissions (the broker's
    /// --jwt-claim).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "ringfan",
        requires = "mint_secret_file"
    )]
    pub mint_claim: String,
    /// Minted tokens: spread the connections over N users (`sub` =
    /// lg-<connection index mod N>), so the broker's
    /// --max-connections-per-user can be measured; 0: one user each.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "mint_secret_file"
    )]
    pub mint_users: u64,
    /// Minted tokens: `aud`.
    #[arg(long, value_name = "AUD", requires = "mint_secret_file")]
    pub mint_aud: Option<String>,
    /// Minted tokens: `iss`.
    #[arg(long, value_name = "ISS", requires = "mint_secret_file")]
    pub mint_iss: Option<String>,
    /// Where the token goes: `?token=` on the request path, or an
    /// `Authorization: Bearer` header.
    #[arg(long, value_enum, default_value_t = Via::Query)]
    pub token_via: Via,
}

impl Default for AuthArgs {
    fn default() -> Self {
        AuthArgs {
            token: None,
            token_file: None,
            mint_secret_file: None,
            mint_sub: vec![">".into()],
            mint_pub: vec![">".into()],
            mint_kid: None,
            mint_ttl: 3600,
            mint_claim: "ringfan".into(),
            mint_users: 0,
            mint_aud: None,
            mint_iss: None,
            token_via: Via::Query,
        }
    }
}

/// `''` on the command line: no pattern at all.
fn patterns(v: &[String]) -> Vec<String> {
    v.iter().filter(|p| !p.is_empty()).cloned().collect()
}

impl AuthArgs {
    /// What the report's params say about auth: the token's source and
    /// where it went, never the token or the secret.
    pub fn describe(&self) -> Value {
        let via = self.token_via.name();
        if self.token.is_some() {
            json!({"source": "token", "via": via})
        } else if let Some(f) = &self.token_file {
            json!({"source": "token-file", "file": f, "via": via})
        } else if let Some(f) = &self.mint_secret_file {
            json!({
                "source": "mint",
                "secret_file": f,
                "alg": "HS256",
                "kid": self.mint_kid,
                "token_sub": if self.mint_users == 0 {
                    "lg-<connection index>".to_string()
                } else {
                    format!("lg-<connection index mod {}>", self.mint_users)
                },
                "ttl_s": self.mint_ttl,
                "claim": self.mint_claim,
                "sub": patterns(&self.mint_sub),
                "pub": patterns(&self.mint_pub),
                "aud": self.mint_aud,
                "iss": self.mint_iss,
                "via": via,
            })
        } else {
            json!({"source": "none"})
        }
    }

    /// Reads the token or the secret, and checks them: a bad file fails
    /// the run before any connection opens, not each connection.
    pub fn resolve(&self) -> Result<Auth, String> {
        let via = self.token_via;
        if let Some(t) = &self.token {
            check_token(t).map_err(|e| format!("--token: {e}"))?;
            return Ok(Auth::Fixed {
                token: t.as_str().into(),
                via,
            });
        }
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--token-file {}: {e}", f.display()))?;
            let t = text.trim();
            check_token(t).map_err(|e| format!("--token-file {}: {e}", f.display()))?;
            return Ok(Auth::Fixed {
                token: t.into(),
                via,
            });
        }
        let Some(f) = &self.mint_secret_file else {
            return Ok(Auth::None);
        };
        let secret = ringfan::auth::keys::read_secret_file(f)
            .map_err(|e| format!("--mint-secret-file: {e}"))?;
        if self.mint_claim.is_empty() {
            return Err("--mint-claim must not be empty".into());
        }
        if self.mint_ttl == 0 {
            return Err("--mint-ttl must be at least 1 second".into());
        }
        let m = Minter {
            secret,
            kid: self.mint_kid.clone(),
            ttl: self.mint_ttl,
            claim: self.mint_claim.clone(),
            users: self.mint_users,
            sub: patterns(&self.mint_sub),
            publ: patterns(&self.mint_pub),
            aud: self.mint_aud.clone(),
            iss: self.mint_iss.clone(),
        };
        // A trial token: whatever would fail at dial time fails here.
        m.mint(0, unix_now())?;
        Ok(Auth::Mint {
            minter: Arc::new(m),
            via,
        })
    }
}

impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthArgs({})", self.describe())
    }
}

impl serde::Serialize for AuthArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.describe().serialize(s)
    }
}

/// A JWT is base64url parts joined by dots; anything else would need
/// escaping in a URL or could end a header line.
fn check_token(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    match t
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || b"-_.=".contains(&b)))
    {
        // The token itself is not echoed: it may be a real credential.
        Some(i) => Err(format!(
            "byte {i} of the token is not base64url or '.' (a JWT is base64url parts joined by dots)"
        )),
        None => Ok(()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Mints each connection's token.
pub struct Minter {
    secret: Vec<u8>,
    kid: Option<String>,
    ttl: u64,
    claim: String,
    /// Connections share `users` users (0: one each).
    users: u64,
    sub: Vec<String>,
    publ: Vec<String>,
    aud: Option<String>,
    iss: Option<String>,
}

impl Minter {
    /// The claims of connection `conn`'s token, minted at `now` (Unix
    /// seconds).
    pub fn claims(&self, conn: u64, now: u64) -> Value {
        let user = match self.users {
            0 => conn,
            n => conn % n,
        };
        let mut c = json!({
            "sub": format!("lg-{user}"),
            "iat": now,
            "exp": now + self.ttl,
        });
        c[&self.claim] = json!({"sub": self.sub, "pub": self.publ});
        if let Some(a) = &self.aud {
            c["aud"] = json!(a);
        }
        if let Some(i) = &self.iss {
            c["iss"] = json!(i);
        }
        c
    }

    pub fn mint(&self, conn: u64, now: u64) -> Result<String, String> {
        mint_hs(
            Algorithm::HS256,
            &self.secret,
            self.kid.as_deref(),
            &self.claims(conn, now),
        )
    }
}

/// The tokens of a run, resolved from [`AuthArgs`].
#[derive(Clone, Default)]
pub enum Auth {
    /// No token.
    #[default]
    None,
    /// The same token on every connection.
    Fixed { token: Arc<str>, via: Via },
    /// A token minted for each connection.
    Mint { minter: Arc<Minter>, via: Via },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Fixed { via, .. } => write!(f, "Fixed({})", via.name()),
            Self::Mint { via, .. } => write!(f, "Mint({})", via.name()),
        }
    }
}

/// The upgrade request of one connection: its request target and any
/// extra headers.
pub type Request = (String, Vec<(String, String)>);

impl Auth {
    /// Connection `conn`'s request for `path` (which may have a query).
    /// A token that cannot be minted (it was minted once at start-up, so
    /// this does not happen) leaves the connection without one, which the
    /// broker's answer then shows.
    pub fn request(&self, conn: u64, path: &str) -> Request {
        let Some((token, via)) = self.token(conn) else {
            return (path.to_string(), Vec::new());
        };
        match via {
            Via::Query => (with_query_token(path, &token), Vec::new()),
            Via::Header => (path.to_string(), vec![bearer(&token)]),
        }
    }
}

impl Auth {
    /// Connection `conn`'s token and how it is meant to travel, if any
    /// (`--publish-via http` always sends it as a bearer: `POST /publish`
    /// reads no query token).
    pub fn token(&self, conn: u64) -> Option<(String, Via)> {
        match self {
            Self::None => None,
            Self::Fixed { token, via } => Some((token.to_string(), *via)),
            Self::Mint { minter, via } => minter.mint(conn, unix_now()).ok().map(|t| (t, *via)),
        }
    }
}

/// `path` with `token=<token>` added to its query. A JWT needs no
/// percent-encoding (base64url and dots).
pub fn with_query_token(path: &str, token: &str) -> String {
    let sep = match path.find('?') {
        None => "?",
        Some(i) if i + 1 == path.len() || path.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{path}{sep}token={token}")
}

/// The `Authorization` header carrying `token`.
pub fn bearer(token: &str) -> (String, String) {
    ("Authorization".to_string(), format!("Bearer {token}"))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
