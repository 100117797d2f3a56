//! The server's TLS configuration, built from PEM files and reloadable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::resolver::{CertSet, SniResolver};

/// TLS 1.2 session IDs the server remembers (TLS 1.3 and 1.2 clients that
/// take tickets need no server state). Each entry is a few hundred bytes, so
/// this bounds the cache near a few MB while covering a reconnect storm of
/// that many clients that do not use tickets.
pub const SESSION_CACHE_ENTRIES: usize = 16 * 1024;

/// What the command line gives: `(PEM chain, PEM private key)` pairs. The
/// first pair is the default certificate.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub certs: Vec<(PathBuf, PathBuf)>,
}

/// Why a configuration could not be built; every variant names the file.
#[derive(Debug)]
pub enum ConfigError {
    NoCertificates,
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    Pem {
        path: PathBuf,
        error: String,
    },
    EmptyChain {
        path: PathBuf,
    },
    NoKey {
        path: PathBuf,
    },
    UnsupportedKey {
        path: PathBuf,
        error: rustls::Error,
    },
    KeyMismatch {
        key: PathBuf,
        chain: PathBuf,
    },
    BadLeaf {
        path: PathBuf,
        error: String,
    },
    Rustls(rustls::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCertificates => write!(f, "TLS needs at least one certificate and key"),
            Self::Read { path, error } => write!(f, "{}: cannot read: {error}", path.display()),
            Self::Pem { path, error } => write!(f, "{}: bad PEM: {error}", path.display()),
            Self::EmptyChain { path } => {
                write!(f, "{}: no CERTIFICATE in the PEM file", path.display())
            }
            Self::NoKey { path } => write!(f, "{}: no PRIVATE KEY in the PEM file", path.display()),
            Self::UnsupportedKey { path, error } => {
                write!(f, "{}: unsupported private key: {error}", path.display())
            }
            Self::KeyMismatch { key, chain } => write!(
                f,
                "{}: private key does not match the certificate in {}",
                key.display(),
                chain.display()
            ),
            Self::BadLeaf { path, error } => {
                write!(
                    f,
                    "{}: cannot parse the leaf certificate: {error}",
                    path.display()
                )
            }
            Self::Rustls(error) => write!(f, "TLS configuration: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The TLS side of a listener: the `ServerConfig` every connection shares,
/// and the handle to reload its certificates.
pub struct TlsServer {
    config: Arc<ServerConfig>,
    resolver: Arc<SniResolver>,
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
}

impl TlsServer {
    pub fn new(settings: TlsSettings) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let set = load_cert_set(&settings, &provider)?;
        let resolver = Arc::new(SniResolver::new(set));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(ConfigError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Stateless tickets (rotating keys, shared by all connections of this
        // config) let a reconnecting client resume without a certificate
        // signature; the cache covers TLS 1.2 clients that use session IDs.
        config.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(ConfigError::Rustls)?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        // After the handshake a session leaves rustls' connection for the
        // compact `tls::established` state, which needs the traffic
        // secrets: 2.2-2.6 KB less per idle connection (see that module).
        config.enable_secret_extraction = true;
        Ok(Self {
            config: Arc::new(config),
            resolver,
            settings,
            provider,
        })
    }

    /// The configuration to hand each new [`super::TlsSession`].
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Re-read every file named in the settings (SIGHUP). On success new
    /// handshakes get the new certificates; sessions already established
    /// keep theirs. On error nothing changes and the error names the file.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let set = load_cert_set(&self.settings, &self.provider)?;
        self.resolver.swap(set);
        Ok(())
    }
}

fn load_cert_set(
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<CertSet, ConfigError> {
    let mut certs = Vec::with_capacity(settings.certs.len());
    for (chain, key) in &settings.certs {
        certs.push(load_pair(chain, key, provider)?);
    }
    CertSet::new(certs).ok_or(ConfigError::NoCertificates)
}

/// One certificate: its chain, its key, and the DNS names it serves.
fn load_pair(
    chain_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), ConfigError> {
    let chain = read_chain(chain_path)?;
    let key_der = read_key(key_path)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|error| ConfigError::UnsupportedKey {
            path: key_path.to_owned(),
            error,
        })?;
    let names = leaf_dns_names(&chain[0], chain_path)?;
    let certified = CertifiedKey::new(chain, signing_key);
    // `keys_match` compares the key's public half with the leaf's SPKI.
    // `Unknown` means the key type cannot tell; aws-lc-rs keys always can, so
    // treat anything but `Ok` as a mismatch rather than serving a
    // certificate whose handshakes would all fail at the client.
    certified
        .keys_match()
        .map_err(|_| ConfigError::KeyMismatch {
            key: key_path.to_owned(),
            chain: chain_path.to_owned(),
        })?;
    Ok((Arc::new(certified), names))
}

fn read_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ConfigError::Pem {
            path: path.to_owned(),
            error: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(ConfigError::EmptyChain {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls_pki_types::pem::Error::NoItemsFound => ConfigError::NoKey {
            path: path.to_owned(),
        },
        other => ConfigError::Pem {
            path: path.to_owned(),
            error: other.to_string(),
        },
    })
}

/// DNS names (including `*.` wildcards) from the leaf's subjectAltName.
/// A certificate without any still serves as the default.
fn leaf_dns_names(leaf: &CertificateDer<'_>, path: &Path) -> Result<Vec<String>, ConfigError> {
    let cert = webpki::EndEntityCert::try_from(leaf).map_err(|error| ConfigError::BadLeaf {
        path: path.to_owned(),
        error: error.to_string(),
    })?;
    Ok(cert.valid_dns_names().map(str::to_owned).collect())
}
