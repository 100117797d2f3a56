use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use clap::Parser;
use std::io::Write as _;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    auth: AuthArgs,
}

fn parse(args: &[&str]) -> Result<AuthArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("lg").chain(args.iter().copied())).map(|c| c.auth)
}

/// A file with `bytes` in it, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let p = std::env::temp_dir().join(format!("lg-auth-{}-{name}", std::process::id()));
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(bytes))
            .expect("temp file");
        TempFile(p)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A token's header and payload, decoded.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let part = |s: &str| -> Value {
        serde_json::from_slice(&B64URL.decode(s).expect("base64url")).expect("json")
    };
    (part(parts[0]), part(parts[1]))
}

fn token_of(auth: &Auth, conn: u64) -> String {
    let (path, headers) = auth.request(conn, "/ws");
    assert!(headers.is_empty());
    path.strip_prefix("/ws?token=")
        .expect("a query token")
        .to_string()
}

#[test]
fn no_flags_no_token() {
    let a = parse(&[]).unwrap();
    assert!(matches!(a.resolve().unwrap(), Auth::None));
    assert_eq!(a.describe(), json!({"source": "none"}));
    assert_eq!(
        Auth::None.request(7, "/ws"),
        ("/ws".to_string(), Vec::new())
    );
}

#[test]
fn minted_tokens_carry_the_claims_asked_for() {
    // The secret file as an editor saves it: a trailing newline.
    let mut bytes = SECRET.to_vec();
    bytes.extend_from_slice(b"\r\n");
    let secret = TempFile::new("secret", &bytes);
    let a = parse(&[
        "--mint-secret-file",
        secret.path(),
        "--mint-sub",
        "md.NASDAQ.*",
        "--mint-sub",
        "news.>",
        "--mint-pub",
        "",
        "--mint-kid",
        "hs1",
        "--mint-ttl",
        "60",
        "--mint-aud",
        "ringfan",
        "--mint-iss",
        "lg",
    ])
    .unwrap();
    let auth = a.resolve().unwrap();
    let before = unix_now();
    let t = token_of(&auth, 42);
    let (header, claims) = decode(&t);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "hs1");
    assert_eq!(claims["sub"], "lg-42");
    assert_eq!(
        claims["ringfan"],
        json!({"sub": ["md.NASDAQ.*", "news.>"], "pub": []})
    );
    assert_eq!(
        (claims["aud"].clone(), claims["iss"].clone()),
        (json!("ringfan"), json!("lg"))
    );
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat >= before && iat <= unix_now());
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 60);
    // Each connection its own user.
    assert_eq!(decode(&token_of(&auth, 43)).1["sub"], "lg-43");
    // Signed with the secret less its CR/LF, as the broker reads it.
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
    v.set_audience(&["ringfan"]);
    jsonwebtoken::decode::<Value>(&t, &key, &v).expect("verifies with the trimmed secret");
    // The report says how, not what.
    let d = a.describe();
    assert_eq!(d["source"], "mint");
    assert_eq!(d["via"], "query");
    assert_eq!(d["sub"], json!(["md.NASDAQ.*", "news.>"]));
    assert!(!d.to_string().contains("0123456789abcdef"));
}

#[test]
fn minting_defaults_allow_everything_for_an_hour() {
    let secret = TempFile::new("secret-defaults", SECRET);
    let a = parse(&["--mint-secret-file", secret.path()]).unwrap();
    let (header, claims) = decode(&token_of(&a.resolve().unwrap(), 0));
    assert!(header.get("kid").is_none_or(Value::is_null));
    assert_eq!(claims["ringfan"], json!({"sub": [">"], "pub": [">"]}));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    assert!(claims.get("aud").is_none() && claims.get("iss").is_none());
    // Another claim name.
    let a = parse(&["--mint-secret-file", secret.path(), "--mint-claim", "perm"]).unwrap();
    let (_, claims) = decode(&token_of(&a.resolve().unwrap(), 0));
    assert!(claims.get("ringfan").is_none());
    assert_eq!(claims["perm"]["sub"], json!([">"]));
}

#[test]
fn bad_auth_flags_are_refused_before_any_connection() {
    let short = TempFile::new("short", b"too short\n");
    let e = parse(&["--mint-secret-file", short.path()])
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(e.contains("--mint-secret-file"), "{e}");
    assert!(parse(&["--mint-secret-file", "/nonexistent/lg-secret"])
        .unwrap()
        .resolve()
        .is_err());
    // One source at a time; minting options need a secret.
    assert!(parse(&["--token", "a.b.c", "--token-file", "/x"]).is_err());
    assert!(parse(&["--token", "a.b.c", "--mint-secret-file", "/x"]).is_err());
    assert!(parse(&["--token-file", "/x", "--mint-secret-file", "/x"]).is_err());
    assert!(parse(&["--mint-sub", "a"]).is_err());
    assert!(parse(&["--mint-ttl", "5"]).is_err());
    assert!(parse(&["--token-via", "cookie"]).is_err());
    // Tokens that would need escaping, or end a header line, are refused
    // without echoing them.
    for bad in ["", "a b", "a.b.c\r\nX: y", "a&b", "a+b/c"] {
        let e = parse(&["--token", bad]).unwrap().resolve().unwrap_err();
        assert!(e.starts_with("--token"), "{e}");
        assert!(bad.is_empty() || !e.contains(bad), "{e}");
    }
    let blank = TempFile::new("blank", b"  \n");
    assert!(parse(&["--token-file", blank.path()])
        .unwrap()
        .resolve()
        .is_err());
}

#[test]
fn a_token_file_is_trimmed_and_goes_in_a_header_when_asked() {
    let f = TempFile::new("token", b"  aaa.bbb.ccc\n");
    let a = parse(&["--token-file", f.path(), "--token-via", "header"]).unwrap();
    let auth = a.resolve().unwrap();
    let (path, headers) = auth.request(3, "/ws");
    assert_eq!(path, "/ws");
    assert_eq!(
        headers,
        vec![(
            "Authorization".to_string(),
            "Bearer aaa.bbb.ccc".to_string()
        )]
    );
    let d = a.describe();
    assert_eq!(
        (d["source"].as_str(), d["via"].as_str()),
        (Some("token-file"), Some("header"))
    );
    assert!(!d.to_string().contains("aaa.bbb"));
    assert!(!format!("{a:?} {auth:?}").contains("aaa.bbb"));
    // --token: the same token on every connection.
    let a = parse(&["--token", "x.y.z"]).unwrap();
    let auth = a.resolve().unwrap();
    assert_eq!(token_of(&auth, 0), "x.y.z");
    assert_eq!(token_of(&auth, 9), "x.y.z");
    assert_eq!(a.describe(), json!({"source": "token", "via": "query"}));
}

#[test]
fn the_query_token_joins_any_query_already_there() {
    assert_eq!(with_query_token("/ws", "a.b.c"), "/ws?token=a.b.c");
    assert_eq!(with_query_token("/ws?x=1", "a.b.c"), "/ws?x=1&token=a.b.c");
    assert_eq!(with_query_token("/ws?", "a.b.c"), "/ws?token=a.b.c");
    assert_eq!(with_query_token("/ws?x=1&", "a.b.c"), "/ws?x=1&token=a.b.c");
    assert_eq!(with_query_token("/echo", "t"), "/echo?token=t");
}

#[test]
fn the_broker_handshake_reads_the_token_either_way() {
    use ringfan::ws::client::ClientHandshake;
    use ringfan::ws::handshake::{accept, Config, Outcome};
    for via in [Via::Query, Via::Header] {
        let auth = Auth::Fixed {
            token: "h.p.s".into(),
            via,
        };
        let (path, headers) = auth.request(0, "/ws?x=1");
        let (_, req) = ClientHandshake::with_headers("127.0.0.1:1", &path, &[], &headers);
        match accept(&req, &Config::default()) {
            Outcome::Upgrade { upgrade, .. } => {
                assert_eq!(&*upgrade.path, "/ws", "{via:?}");
                assert_eq!(upgrade.token.as_deref(), Some("h.p.s"), "{via:?}");
            }
            other => panic!("{via:?}: {other:?}"),
        }
    }
}

/// What minting costs per connection (debug builds are ~10x slower);
/// run with `--ignored --nocapture` in release to see it.
#[test]
#[ignore]
fn mint_cost() {
    let secret = TempFile::new("secret-cost", SECRET);
    let auth = parse(&["--mint-secret-file", secret.path()])
        .unwrap()
        .resolve()
        .unwrap();
    let n = 100_000u64;
    let t = std::time::Instant::now();
    let mut len = 0;
    for i in 0..n {
        len += auth.request(i, "/ws").0.len();
    }
    let each = t.elapsed().as_secs_f64() / n as f64;
    eprintln!("{:.2} us per minted request ({len} bytes)", each * 1e6);
}

#[test]
fn minted_users_are_shared_by_connections_when_asked() {
    let secret = TempFile::new("secret-users", SECRET);
    let a = parse(&["--mint-secret-file", secret.path(), "--mint-users", "3"]).unwrap();
    let auth = a.resolve().unwrap();
    let subs: Vec<String> = (0..7)
        .map(|i| {
            decode(&token_of(&auth, i)).1["sub"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        subs,
        ["lg-0", "lg-1", "lg-2", "lg-0", "lg-1", "lg-2", "lg-0"]
    );
}
