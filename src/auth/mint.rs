//! Minting HS tokens: for the load generator (one token per connection,
//! from the same secret file the broker reads) and for tests.

use jsonwebtoken::{encode, Algorithm, AlgorithmFamily, EncodingKey, Header};

use super::keys::MIN_HS_SECRET_LEN;

/// Sign `claims` (a JSON object) with `secret` using HS256/384/512, with
/// `kid` in the header if given. Refuses secrets the broker would refuse
/// to load, so a load test cannot mint tokens nobody can verify.
pub fn mint_hs(
    alg: Algorithm,
    secret: &[u8],
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> Result<String, String> {
    if alg.family() != AlgorithmFamily::Hmac {
        return Err(format!("{alg:?} is not an HS algorithm"));
    }
    if secret.len() < MIN_HS_SECRET_LEN {
        return Err(format!(
            "secret is {} bytes, fewer than {MIN_HS_SECRET_LEN}",
            secret.len()
        ));
    }
    if !claims.is_object() {
        return Err("claims must be a JSON object".to_string());
    }
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_secret(secret).map_err(|e| e.to_string())?;
    encode(&header, claims, &key).map_err(|e| e.to_string())
}
