//! Tests against real keys: the openssl-made fixtures under
//! `tests/fixtures/jwt/` (see its README), tokens minted with their
//! private halves.

use std::path::PathBuf;
use std::sync::Arc;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::keys::read_secret_file;
use super::*;

const NOW: u64 = 1_800_000_000;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

/// A file in the temp dir, unique to this process and test.
fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringfan-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("temp file");
    path
}

fn all_keys() -> KeyConfig {
    KeyConfig {
        hs_secret_files: vec![fixture("hs.secret")],
        hs_secret_env: Vec::new(),
        pem_files: vec![
            fixture("rsa.pub.pem"),
            fixture("ec.pub.pem"),
            fixture("ed.pub.pem"),
        ],
        jwks_file: Some(fixture("jwks.json")),
    }
}

fn verifier(rules: Rules) -> Verifier {
    Verifier::new(Arc::new(KeySet::load(&all_keys()).expect("keys")), rules)
}

fn secret() -> Vec<u8> {
    read_secret_file(&fixture("hs.secret")).expect("secret")
}

fn claims() -> Value {
    json!({
        "sub": "alice",
        "jti": "t-1",
        "exp": NOW + 60,
        "ringfan": {"sub": ["chat.>", "news.*"], "pub": ["chat.alice"]}
    })
}

/// Sign with a private key fixture (`rsa`, `ec` or `ed`).
fn sign(alg: Algorithm, private: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture_bytes(private);
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => panic!("not an asymmetric test alg"),
    }
    .expect("private key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &key).expect("encode")
}

fn hs(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    mint_hs(alg, &secret(), kid, claims).expect("mint")
}

fn reason(r: Result<Claims, AuthError>) -> &'static str {
    r.expect_err("should be refused").reason()
}

fn assert_granted(c: &Claims) {
    assert_eq!(c.subject.as_deref(), Some("alice"));
    assert_eq!(c.jti.as_deref(), Some("t-1"));
    assert_eq!(c.exp, Some(NOW + 60));
    assert_eq!(c.sub, ["chat.>", "news.*"]);
    assert_eq!(c.publ, ["chat.alice"]);
}

#[test]
fn hs256_hs384_hs512_ok_with_and_without_kid() {
    let v = verifier(Rules::default());
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        for kid in [Some("hs"), None] {
            let c = v.verify(&hs(alg, kid, &claims()), NOW).expect("valid");
            assert_granted(&c);
        }
    }
}

#[test]
fn rs256_ok_from_pem_and_jwks() {
    let v = verifier(Rules::default());
    for kid in [Some("rsa"), Some("rsa-jwks"), None] {
        let t = sign(Algorithm::RS256, "rsa.key.pem", kid, &claims());
        assert_granted(&v.verify(&t, NOW).expect("valid"));
    }
}

#[test]
fn es256_ok_from_pem_and_jwks() {
    let v = verifier(Rules::default());
    for kid in [Some("ec"), Some("ec-jwks"), None] {
        let t = sign(Algorithm::ES256, "ec.key.pem", kid, &claims());
        assert_granted(&v.verify(&t, NOW).expect("valid"));
    }
}

#[test]
fn eddsa_ok() {
    let v = verifier(Rules::default());
    for kid in [Some("ed"), None] {
        let t = sign(Algorithm::EdDSA, "ed.key.pem", kid, &claims());
        assert_granted(&v.verify(&t, NOW).expect("valid"));
    }
}

#[test]
fn hs_secret_from_env() {
    let var = format!("RINGFAN_TEST_JWT_SECRET_{}", std::process::id());
    // Edition 2021: safe; the name is unique to this test.
    std::env::set_var(&var, "0123456789abcdef0123456789abcdef\n");
    let cfg = KeyConfig {
        hs_secret_env: vec![var.clone()],
        ..KeyConfig::default()
    };
    let v = Verifier::new(
        Arc::new(KeySet::load(&cfg).expect("keys")),
        Rules::default(),
    );
    let t = mint_hs(
        Algorithm::HS256,
        b"0123456789abcdef0123456789abcdef",
        Some(&var),
        &claims(),
    )
    .expect("mint");
    assert_granted(&v.verify(&t, NOW).expect("valid"));
    std::env::remove_var(&var);
}

#[test]
fn expired_and_not_yet_valid() {
    let v = verifier(Rules::default());
    let t = hs(Algorithm::HS256, None, &json!({"exp": NOW - 60}));
    assert_eq!(reason(v.verify(&t, NOW)), "expired");
    let t = hs(Algorithm::HS256, None, &json!({"nbf": NOW + 60}));
    assert_eq!(reason(v.verify(&t, NOW)), "not_yet_valid");
}

#[test]
fn leeway_edges() {
    let v = verifier(Rules::default());
    let leeway = verify::DEFAULT_LEEWAY_S;
    let at = |c: Value| v.verify(&hs(Algorithm::HS256, None, &c), NOW);
    // Valid while now < exp + leeway.
    assert!(at(json!({"exp": NOW - leeway + 1})).is_ok());
    assert_eq!(reason(at(json!({"exp": NOW - leeway}))), "expired");
    // Valid once now + leeway >= nbf.
    assert!(at(json!({"nbf": NOW + leeway})).is_ok());
    assert_eq!(
        reason(at(json!({"nbf": NOW + leeway + 1}))),
        "not_yet_valid"
    );
    // Fractions round against the token.
    assert_eq!(
        reason(at(json!({"exp": (NOW - leeway) as f64 + 0.5}))),
        "expired"
    );
    // Leeway 0 is exact.
    let strict = verifier(Rules {
        leeway_s: 0,
        ..Rules::default()
    });
    let t = hs(Algorithm::HS256, None, &json!({"exp": NOW}));
    assert_eq!(reason(strict.verify(&t, NOW)), "expired");
    assert!(strict.verify(&t, NOW - 1).is_ok());
}

#[test]
fn exp_optional_unless_required() {
    let t = hs(Algorithm::HS256, None, &json!({"sub": "svc"}));
    assert!(verifier(Rules::default()).verify(&t, NOW).is_ok());
    let strict = verifier(Rules {
        require_exp: true,
        ..Rules::default()
    });
    assert_eq!(reason(strict.verify(&t, NOW)), "bad_claim");
}

#[test]
fn wrong_key_is_bad_signature() {
    let v = verifier(Rules::default());
    let other = [7u8; 32];
    for kid in [Some("hs"), None] {
        let t = mint_hs(Algorithm::HS256, &other, kid, &claims()).expect("mint");
        assert_eq!(reason(v.verify(&t, NOW)), "bad_signature");
    }
    // An RSA signature checked against the other RSA key would pass (same
    // key in PEM and JWKS), so tamper with the payload instead.
    let t = sign(Algorithm::RS256, "rsa.key.pem", Some("rsa"), &claims());
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = hs(Algorithm::HS256, None, &json!({"sub": "mallory"}));
    parts[1] = forged.split('.').nth(1).expect("payload");
    assert_eq!(reason(v.verify(&parts.join("."), NOW)), "bad_signature");
}

#[test]
fn unknown_kid() {
    let v = verifier(Rules::default());
    let t = hs(Algorithm::HS256, Some("nope"), &claims());
    assert_eq!(reason(v.verify(&t, NOW)), "unknown_kid");
}

#[test]
fn kidless_without_matching_key_is_no_key() {
    let cfg = KeyConfig {
        hs_secret_files: vec![fixture("hs.secret")],
        ..KeyConfig::default()
    };
    let v = Verifier::new(
        Arc::new(KeySet::load(&cfg).expect("keys")),
        Rules::default(),
    );
    let t = sign(Algorithm::RS256, "rsa.key.pem", None, &claims());
    assert_eq!(reason(v.verify(&t, NOW)), "no_key");
}

#[test]
fn audience() {
    let v = verifier(Rules {
        audiences: vec!["ringfan".into()],
        ..Rules::default()
    });
    let ok = hs(
        Algorithm::HS256,
        None,
        &json!({"aud": ["other", "ringfan"]}),
    );
    assert!(v.verify(&ok, NOW).is_ok());
    let wrong = hs(Algorithm::HS256, None, &json!({"aud": "other"}));
    assert_eq!(reason(v.verify(&wrong, NOW)), "wrong_audience");
    let missing = hs(Algorithm::HS256, None, &json!({}));
    assert_eq!(reason(v.verify(&missing, NOW)), "wrong_audience");
    // No audience configured: a token meant for someone else is refused.
    let open = verifier(Rules::default());
    assert_eq!(reason(open.verify(&wrong, NOW)), "wrong_audience");
    assert!(open.verify(&missing, NOW).is_ok());
}

#[test]
fn issuer() {
    let v = verifier(Rules {
        issuers: vec!["https://idp".into()],
        ..Rules::default()
    });
    let ok = hs(Algorithm::HS256, None, &json!({"iss": "https://idp"}));
    assert!(v.verify(&ok, NOW).is_ok());
    let wrong = hs(Algorithm::HS256, None, &json!({"iss": "https://evil"}));
    assert_eq!(reason(v.verify(&wrong, NOW)), "wrong_issuer");
    let missing = hs(Algorithm::HS256, None, &json!({}));
    assert_eq!(reason(v.verify(&missing, NOW)), "wrong_issuer");
    assert!(verifier(Rules::default()).verify(&wrong, NOW).is_ok());
}

#[test]
fn alg_none_refused() {
    let v = verifier(Rules::default());
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let payload = b64(&claims().to_string());
    for alg in ["none", "None", "HS1"] {
        let t = format!("{}.{payload}.", b64(&format!(r#"{{"alg":"{alg}"}}"#)));
        assert_eq!(reason(v.verify(&t, NOW)), "algorithm_not_allowed", "{alg}");
    }
}

#[test]
fn hs_token_signed_with_rsa_public_key_refused() {
    // The classic confusion: the attacker knows the public key and uses
    // its PEM as an HMAC secret.
    let v = verifier(Rules::default());
    let pem = fixture_bytes("rsa.pub.pem");
    let t = mint_hs(Algorithm::HS256, &pem, Some("rsa"), &claims()).expect("mint");
    assert_eq!(reason(v.verify(&t, NOW)), "algorithm_not_allowed");
    let t = mint_hs(Algorithm::HS256, &pem, None, &claims()).expect("mint");
    assert_eq!(reason(v.verify(&t, NOW)), "bad_signature");
}

#[test]
fn algorithm_outside_rules_refused() {
    let v = verifier(Rules::default());
    let t = sign(Algorithm::RS384, "rsa.key.pem", Some("rsa"), &claims());
    assert_eq!(reason(v.verify(&t, NOW)), "algorithm_not_allowed");
    // The JWKS key says "alg": "RS256", so even opted in it refuses RS384.
    let wide = verifier(Rules {
        algorithms: vec![Algorithm::RS256, Algorithm::RS384],
        ..Rules::default()
    });
    assert!(wide.verify(&t, NOW).is_ok());
    let t = sign(Algorithm::RS384, "rsa.key.pem", Some("rsa-jwks"), &claims());
    assert_eq!(reason(wide.verify(&t, NOW)), "algorithm_not_allowed");
}

#[test]
fn malformed() {
    let v = verifier(Rules::default());
    let good = hs(Algorithm::HS256, None, &claims());
    let two_parts = good.rsplit_once('.').expect("dots").0.to_string();
    let long = "a".repeat(verify::DEFAULT_MAX_TOKEN_LEN + 1);
    for t in ["", "abc", "a.b.c", "a.b.c.d", &two_parts, "!!.e30.", &long] {
        assert_eq!(reason(v.verify(t, NOW)), "malformed", "{t:.40}");
    }
    // Signed correctly, but the payload is not a JSON object.
    let head = good.split('.').next().expect("header");
    let body = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[1,2]")
    };
    let message = format!("{head}.{body}");
    let key = EncodingKey::from_secret(&secret()).expect("key");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    assert_eq!(
        reason(v.verify(&format!("{message}.{sig}"), NOW)),
        "malformed"
    );
}

#[test]
fn bad_pattern_in_claim_names_it() {
    let v = verifier(Rules::default());
    let t = hs(
        Algorithm::HS256,
        None,
        &json!({"ringfan": {"sub": ["ok.*", "a..b"], "pub": []}}),
    );
    let e = v.verify(&t, NOW).expect_err("bad pattern");
    assert_eq!(e.reason(), "bad_claim");
    assert!(e.to_string().contains("\"a..b\""), "{e}");
    for bad in [
        json!({"ringfan": ["chat.>"]}),
        json!({"ringfan": {"pub": "chat.x"}}),
        json!({"ringfan": {"pub": [1]}}),
        json!({"ringfan": {"pub": [">.x"]}}),
        json!({"sub": 7}),
        json!({"exp": "soon"}),
        json!({"exp": -1}),
        json!({"aud": [1]}),
    ] {
        let t = hs(Algorithm::HS256, None, &bad);
        assert_eq!(reason(v.verify(&t, NOW)), "bad_claim", "{bad}");
    }
}

#[test]
fn missing_claim_gives_no_permissions() {
    let v = verifier(Rules::default());
    let t = hs(Algorithm::HS256, None, &json!({"sub": "bob"}));
    let c = v.verify(&t, NOW).expect("valid");
    assert_eq!(c.subject.as_deref(), Some("bob"));
    assert!(c.sub.is_empty() && c.publ.is_empty());
    let t = hs(Algorithm::HS256, None, &json!({"ringfan": {"sub": ["x"]}}));
    let c = v.verify(&t, NOW).expect("valid");
    assert_eq!(c.sub, ["x"]);
    assert!(c.publ.is_empty());
}

#[test]
fn custom_claim_name() {
    let v = verifier(Rules {
        permissions_claim: "https://example.com/perms".into(),
        ..Rules::default()
    });
    let t = hs(
        Algorithm::HS256,
        None,
        &json!({"https://example.com/perms": {"pub": ["a.b"]}, "ringfan": {"sub": ["x"]}}),
    );
    let c = v.verify(&t, NOW).expect("valid");
    assert_eq!(c.publ, ["a.b"]);
    assert!(c.sub.is_empty(), "the default claim name is ignored");
}

#[test]
fn denylist_parse_and_denied_jti() {
    let d = Denylist::parse("# revoked\n\n  t-1  \nt-2\n   # also a comment\nx#y\n");
    assert_eq!(d.len(), 3);
    assert!(d.contains("t-1") && d.contains("t-2") && d.contains("x#y"));
    assert!(!d.contains("# revoked") && !d.contains(""));
    let mut v = verifier(Rules::default());
    v.denylist = Arc::new(d);
    let t = hs(Algorithm::HS256, None, &claims());
    assert_eq!(reason(v.verify(&t, NOW)), "denied_jti");
    let t = hs(Algorithm::HS256, None, &json!({"jti": "t-3"}));
    assert!(v.verify(&t, NOW).is_ok());
}

#[test]
fn denylist_load() {
    let path = temp_file("deny.txt", b"a\r\nb\n");
    let d = Denylist::load(&path).expect("load");
    assert!(d.contains("a") && d.contains("b"));
    let missing = fixture("no-such-denylist");
    let e = Denylist::load(&missing).expect_err("missing");
    assert!(e.contains("no-such-denylist"), "{e}");
}

#[test]
fn key_load_errors_name_the_source() {
    let load = |cfg: KeyConfig| KeySet::load(&cfg).expect_err("should fail");
    let e = load(KeyConfig {
        pem_files: vec![fixture("rsa.key.pem")],
        ..KeyConfig::default()
    });
    assert!(
        e.contains("rsa.key.pem") && e.contains("PRIVATE KEY"),
        "{e}"
    );
    let short = temp_file("short.secret", b"tooshort\n");
    let e = load(KeyConfig {
        hs_secret_files: vec![short],
        ..KeyConfig::default()
    });
    assert!(
        e.contains("short.secret") && e.contains("fewer than 32"),
        "{e}"
    );
    let e = load(KeyConfig {
        hs_secret_files: vec![fixture("missing.secret")],
        ..KeyConfig::default()
    });
    assert!(e.contains("missing.secret"), "{e}");
    let e = load(KeyConfig {
        pem_files: vec![fixture("hs.secret")],
        ..KeyConfig::default()
    });
    assert!(e.contains("hs.secret") && e.contains("no PEM block"), "{e}");
    let e = load(KeyConfig::default());
    assert!(e.contains("no JWT verification keys"), "{e}");
    // Same kid twice: "rsa" from rsa.pub.pem and from a copy elsewhere.
    let copy = temp_file("rsa.pem", &fixture_bytes("rsa.pub.pem"));
    let e = load(KeyConfig {
        pem_files: vec![fixture("rsa.pub.pem"), copy],
        ..KeyConfig::default()
    });
    assert!(
        e.contains("kid \"rsa\"") && e.contains("rsa.pub.pem"),
        "{e}"
    );
}

#[test]
fn jwks_errors() {
    let load = |text: &str, name: &str| {
        let path = temp_file(name, text.as_bytes());
        KeySet::load(&KeyConfig {
            jwks_file: Some(path),
            ..KeyConfig::default()
        })
    };
    let e = load(
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
        "oct.json",
    )
    .expect_err("oct");
    assert!(e.contains("oct.json") && e.contains("symmetric"), "{e}");
    // A short Ed25519 x must fail the load (jsonwebtoken would panic).
    let e = load(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"AAAA"}]}"#,
        "short-ed.json",
    )
    .expect_err("short ed");
    assert!(e.contains("32 bytes"), "{e}");
    let e = load("{\"keys\": 1}", "notjwks.json").expect_err("not jwks");
    assert!(
        e.contains("notjwks.json") && e.contains("not a JWKS"),
        "{e}"
    );
    // An RSA key too small to trust.
    let e = load(
        r#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}"#,
        "small-rsa.json",
    )
    .expect_err("small rsa");
    assert!(e.contains("fewer than 2048"), "{e}");
    // Encryption keys are skipped, leaving nothing.
    let e = load(
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","use":"enc","x":"AAAA"}]}"#,
        "enc.json",
    )
    .expect_err("only enc");
    assert!(e.contains("no JWT verification keys"), "{e}");
}

#[test]
fn kids_come_from_file_names() {
    let set = KeySet::load(&all_keys()).expect("keys");
    assert_eq!(set.kids(), ["hs", "rsa", "ec", "ed", "rsa-jwks", "ec-jwks"]);
    assert_eq!(set.len(), 6);
}

#[test]
fn mint_hs_refuses_misuse() {
    assert!(mint_hs(Algorithm::RS256, &secret(), None, &claims()).is_err());
    assert!(mint_hs(Algorithm::HS256, b"short", None, &claims()).is_err());
    assert!(mint_hs(Algorithm::HS256, &secret(), None, &json!([1])).is_err());
}
