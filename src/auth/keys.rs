//! The verification keys: where they come from ([`KeyConfig`]) and the
//! loaded, immutable set ([`KeySet`]) a verifier reads.
//!
//! Sources, and the key id (`kid`) each key gets:
//! - HS secret files: the file's bytes are the secret, used as-is (a hex or
//!   base64 text secret is *not* decoded), with trailing CR/LF stripped
//!   because `echo` and editors add them. At least [`MIN_HS_SECRET_LEN`]
//!   bytes. kid = the file name up to its first dot (`2026-01.secret` ->
//!   `2026-01`), so rotating is: add a file, reload, switch the issuer,
//!   remove the old file, reload.
//! - HS secret environment variables: same rules; kid = the variable
//!   name. A process's environment is fixed at start, so a reload re-reads
//!   the same value: rotate with files if a restart is unwelcome.
//! - PEM files: one public key each (SPKI `PUBLIC KEY`, or PKCS#1
//!   `RSA PUBLIC KEY`); RSA (>= 2048 bits), EC P-256/P-384 or Ed25519 is
//!   detected from the key itself. kid as for secret files
//!   (`rsa-2026.pub.pem` -> `rsa-2026`).
//! - One JWKS file (`{"keys": [...]}`, RFC 7517): RSA, EC and OKP/Ed25519
//!   public keys; kid = the JWK's `kid` (a key without one serves only
//!   tokens without one); a JWK `alg` narrows the key to that algorithm;
//!   keys with `"use": "enc"` are skipped; symmetric (`oct`) keys are
//!   refused, secrets belong in secret files.
//!
//! Secrets never come from the command line: they would show in `ps`.
//! Every load error names its source and the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

use super::file::read_capped;

/// RFC 7518 3.2: an HMAC key must be at least as long as the hash output;
/// 32 bytes is that for HS256, and shorter secrets are brute-forceable.
pub const MIN_HS_SECRET_LEN: usize = 32;
/// NIST deprecates RSA below 2048 bits; refuse such keys at load.
pub const MIN_RSA_BITS: usize = 2048;
/// Key files are small; this only stops a wrong path from eating memory.
const MAX_KEY_FILE: usize = 1 << 20;

const HS_ALGS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Where the keys come from; see the module docs for formats and kids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyConfig {
    pub hs_secret_files: Vec<PathBuf>,
    /// Names of environment variables holding HS secrets.
    pub hs_secret_env: Vec<String>,
    pub pem_files: Vec<PathBuf>,
    pub jwks_file: Option<PathBuf>,
}

/// One verification key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
    /// The algorithms this key may verify: its family's, or the one its
    /// JWK names. A token's `alg` must be among them, which is what stops
    /// algorithm confusion (an HS token "signed" with an RSA public key).
    pub(crate) algs: Vec<Algorithm>,
}

/// The loaded keys, in config order: secret files, secret variables, PEM
/// files, then the JWKS file. Tokens without a `kid` try keys in that
/// order. Immutable: a reload builds a new set and swaps the `Arc`.
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    /// For each key, where it came from, for duplicate-kid errors.
    sources: Vec<String>,
}

impl std::fmt::Debug for KeySet {
    // Kids and sources only: never key material in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("sources", &self.sources)
            .finish()
    }
}

impl KeySet {
    /// Load every configured key, or fail naming the first bad source.
    /// An empty result is an error too: a broker that requires tokens but
    /// holds no key would refuse everyone, which is a misconfiguration.
    pub fn load(cfg: &KeyConfig) -> Result<KeySet, String> {
        let mut set = KeySet {
            keys: Vec::new(),
            by_kid: HashMap::new(),
            sources: Vec::new(),
        };
        for path in &cfg.hs_secret_files {
            let kid = kid_from_path(path)?;
            let secret = read_secret_file(path)?;
            let key = hs_key(&secret).map_err(|e| format!("{}: {e}", path.display()))?;
            set.add(Some(kid), key, HS_ALGS.to_vec(), path.display().to_string())?;
        }
        for var in &cfg.hs_secret_env {
            let secret = read_secret_env(var)?;
            let key = hs_key(&secret).map_err(|e| format!("environment variable {var}: {e}"))?;
            set.add(
                Some(var.clone()),
                key,
                HS_ALGS.to_vec(),
                format!("environment variable {var}"),
            )?;
        }
        for path in &cfg.pem_files {
            let kid = kid_from_path(path)?;
            let text = read_capped(path, MAX_KEY_FILE)?;
            let (key, algs) = pem_key(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            set.add(Some(kid), key, algs, path.display().to_string())?;
        }
        if let Some(path) = &cfg.jwks_file {
            let text = read_capped(path, MAX_KEY_FILE)?;
            let jwks: JwkSet = serde_json::from_slice(&text)
                .map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?;
            for (i, jwk) in jwks.keys.iter().enumerate() {
                let source = match &jwk.common.key_id {
                    Some(kid) => format!("{} key {i} (kid {kid:?})", path.display()),
                    None => format!("{} key {i}", path.display()),
                };
                if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                    continue;
                }
                let (key, algs) = jwk_key(jwk).map_err(|e| format!("{source}: {e}"))?;
                set.add(jwk.common.key_id.clone(), key, algs, source)?;
            }
        }
        if set.keys.is_empty() {
            return Err("no JWT verification keys configured".to_string());
        }
        Ok(set)
    }

    fn add(
        &mut self,
        kid: Option<String>,
        key: DecodingKey,
        algs: Vec<Algorithm>,
        source: String,
    ) -> Result<(), String> {
        if let Some(kid) = &kid {
            if let Some(&prev) = self.by_kid.get(kid) {
                return Err(format!(
                    "{source}: kid {kid:?} is already used by {}",
                    self.sources[prev]
                ));
            }
            self.by_kid.insert(kid.clone(), self.keys.len());
        }
        self.keys.push(Key { kid, key, algs });
        self.sources.push(source);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, in load order, for a reload log line.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    pub(crate) fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).map(|&i| &self.keys[i])
    }

    /// Keys that may verify `alg`, in load order.
    pub(crate) fn for_alg(&self, alg: Algorithm) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.algs.contains(&alg))
    }
}

/// Read an HS secret file by the rules in the module docs. Public so the
/// load generator mints with exactly the bytes the broker verifies with.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = read_capped(path, MAX_KEY_FILE)?;
    let secret = trim_secret(&bytes);
    check_secret(secret).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(secret.to_vec())
}

/// Read an HS secret from an environment variable, by the same rules.
pub fn read_secret_env(var: &str) -> Result<Vec<u8>, String> {
    let value = std::env::var_os(var)
        .ok_or_else(|| format!("environment variable {var} is not set"))?
        .into_encoded_bytes();
    let secret = trim_secret(&value);
    check_secret(secret).map_err(|e| format!("environment variable {var}: {e}"))?;
    Ok(secret.to_vec())
}

fn trim_secret(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.len() < MIN_HS_SECRET_LEN {
        return Err(format!(
            "secret is {} bytes, fewer than {MIN_HS_SECRET_LEN}",
            secret.len()
        ));
    }
    Ok(())
}

fn hs_key(secret: &[u8]) -> Result<DecodingKey, String> {
    DecodingKey::from_secret(secret).map_err(|e| format!("bad secret: {e}"))
}

/// kid = the file name up to its first dot (not `file_stem`, which keeps
/// `.pub` of `rsa.pub.pem`).
fn kid_from_path(path: &Path) -> Result<String, String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?;
    let kid = name.split('.').next().unwrap_or_default();
    if kid.is_empty() {
        return Err(format!(
            "{}: file name gives an empty kid (it is the name up to the first dot)",
            path.display()
        ));
    }
    Ok(kid.to_string())
}

/// Detect the key type of a PEM public key and check it is usable now,
/// not at the first token.
fn pem_key(text: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let text = std::str::from_utf8(text).map_err(|_| "not a PEM file (not UTF-8)".to_string())?;
    let label = pem_label(text)?;
    if label.contains("PRIVATE KEY") {
        // A private key on the broker is a leak waiting to happen; and
        // jsonwebtoken would misread it as a public key.
        return Err(format!(
            "holds a {label}; give the public key (openssl pkey -in KEY -pubout)"
        ));
    }
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        "CERTIFICATE" => {
            return Err(
                "holds a certificate; give its public key (openssl x509 -in CERT -pubkey -noout)"
                    .to_string(),
            )
        }
        other => return Err(format!("unsupported PEM block {other:?}")),
    }
    // jsonwebtoken classifies the SPKI by its algorithm OID, so exactly
    // one of these accepts a given key.
    if let Ok(key) = DecodingKey::from_rsa_pem(text.as_bytes()) {
        let der = key.try_get_as_bytes().map_err(|e| e.to_string())?;
        let (n, _e) = rsa_components(der)?;
        check_rsa_bits(&n)?;
        return Ok((key, RSA_ALGS.to_vec()));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(text.as_bytes()) {
        // The uncompressed point 04||x||y: 65 bytes on P-256, 97 on P-384.
        let alg = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => return Err("EC key is not an uncompressed P-256 or P-384 point".to_string()),
        };
        probe(&key, alg)?;
        return Ok((key, vec![alg]));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(text.as_bytes()) {
        check_ed_len(&key)?;
        probe(&key, Algorithm::EdDSA)?;
        return Ok((key, vec![Algorithm::EdDSA]));
    }
    Err("not an RSA, EC (P-256/P-384) or Ed25519 public key".to_string())
}

/// The label of the file's only PEM block.
fn pem_label(text: &str) -> Result<&str, String> {
    const BEGIN: &str = "-----BEGIN ";
    let mut blocks = text.match_indices(BEGIN);
    let (at, _) = blocks
        .next()
        .ok_or_else(|| "no PEM block (-----BEGIN ...-----)".to_string())?;
    if blocks.next().is_some() {
        return Err("more than one PEM block; give one key per file".to_string());
    }
    let rest = &text[at + BEGIN.len()..];
    let end = rest
        .find("-----")
        .ok_or_else(|| "unterminated PEM BEGIN line".to_string())?;
    Ok(&rest[..end])
}

fn jwk_key(jwk: &Jwk) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    let (key, algs) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad RSA key: {e}"))?;
            match key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, .. } => check_rsa_bits(n)?,
                DecodingKeyKind::SecretOrDer(_) => return Err("bad RSA key".to_string()),
            }
            (key, RSA_ALGS.to_vec())
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let alg = match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("EC key on a curve other than P-256/P-384".to_string()),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad EC key: {e}"))?;
            probe(&key, alg)?;
            (key, vec![alg])
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err("OKP key on a curve other than Ed25519".to_string());
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad Ed25519 key: {e}"))?;
            check_ed_len(&key)?;
            probe(&key, Algorithm::EdDSA)?;
            (key, vec![Algorithm::EdDSA])
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) key; put HS secrets in a secret file".to_string())
        }
        // `Other`, and whatever a later jsonwebtoken adds.
        _ => return Err("unsupported key type".to_string()),
    };
    match &jwk.common.key_algorithm {
        None => Ok((key, algs)),
        Some(ka) => {
            let alg = signing_alg(*ka)
                .filter(|a| algs.contains(a))
                .ok_or_else(|| format!("\"alg\" {ka:?} does not fit this key type"))?;
            Ok((key, vec![alg]))
        }
    }
}

fn signing_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// jsonwebtoken parses RSA keys only when verifying, and then a bad key
/// looks like a bad signature; parse it here so the load fails instead.
fn rsa_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let provider = CryptoProvider::try_get_default()
        .ok_or_else(|| "no jsonwebtoken crypto provider".to_string())?;
    (provider.key_utils.rsa_pub_components_from_public_key)(der)
        .map_err(|e| format!("bad RSA key: {e}"))
}

fn check_rsa_bits(n: &[u8]) -> Result<(), String> {
    let n = &n[n.iter().position(|&b| b != 0).unwrap_or(n.len())..];
    let bits = n.first().map_or(0, |&top| {
        (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize)
    });
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA key has {bits} bits, fewer than {MIN_RSA_BITS}"
        ));
    }
    Ok(())
}

/// jsonwebtoken 12 slices an Ed25519 key to 32 bytes without checking its
/// length (a panic on a short JWK `x`); check it first.
fn check_ed_len(key: &DecodingKey) -> Result<(), String> {
    match key.try_get_as_bytes() {
        Ok(b) if b.len() == 32 => Ok(()),
        _ => Err("Ed25519 key is not 32 bytes".to_string()),
    }
}

/// Build a verifier once: for EC and Ed25519 that parses the point, so a
/// bad key fails the load rather than every token.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    jsonwebtoken::crypto::verify("AA", b"", key, alg)
        .map(|_| ())
        .map_err(|e| format!("bad key: {e}"))
}
