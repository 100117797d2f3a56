//! SNI certificate selection that can be swapped while serving.
//!
//! The map lives behind `RwLock<Arc<CertSet>>`: a handshake takes the read
//! lock only long enough to clone the `Arc`, and [`SniResolver::swap`]
//! replaces the whole set at once, so a handshake sees either the old or the
//! new certificates, never a mix. Established sessions hold their keys
//! already and are untouched by a swap.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One generation of certificates: exact names, `*.suffix` wildcards, and a
/// default for clients that send no SNI or a name we do not serve.
pub struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`; a wildcard covers exactly one label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    /// `certs` in configuration order, each with the DNS names from its
    /// leaf's SANs. The first is the default. When two certificates claim
    /// the same name, the earlier one wins, so order in the configuration
    /// is the tie-break an operator can reason about.
    ///
    /// Returns `None` for an empty list: a TLS listener needs a default.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> Option<Self> {
        let default = certs.first()?.0.clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (key, names) in certs {
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| key.clone());
            }
        }
        Some(Self {
            default,
            exact,
            wildcard,
        })
    }

    /// The certificate for `sni`: exact match, then wildcard, then default.
    pub fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        // rustls hands us the name already validated as a DNS name; clients
        // may still send upper case and DNS is case-insensitive.
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key;
            }
        }
        &self.default
    }
}

/// The `ResolvesServerCert` rustls calls for every full handshake.
pub struct SniResolver {
    current: RwLock<Arc<CertSet>>,
}

impl SniResolver {
    pub fn new(set: CertSet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// New handshakes get `set` from now on.
    pub fn swap(&self, set: CertSet) {
        // A writer cannot panic while holding this lock (it only assigns),
        // so poisoning is impossible in practice; recover rather than
        // propagate a panic into the TLS path if it ever happens.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    pub fn current(&self) -> Arc<CertSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // The unbuffered server connection does not expose the SNI; rustls
        // gives it to us here, on the session's thread (see `unbuffered`).
        super::unbuffered::note_client_hello_sni(client_hello.server_name());
        Some(self.current().pick(client_hello.server_name()).clone())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current();
        let mut names: Vec<&str> = set.exact.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("SniResolver")
            .field("names", &names)
            .field("wildcards", &set.wildcard.len())
            .finish()
    }
}
