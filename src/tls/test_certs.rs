//! A throwaway PKI for tests: a CA generated at test time and leaf
//! certificates it signs, written as PEM files in a private temp directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

pub struct TestPki {
    dir: PathBuf,
    ca_der: CertificateDer<'static>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    files: AtomicUsize,
}

impl TestPki {
    pub fn new() -> Self {
        static DIRS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringfan-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            dir,
            ca_der: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
            files: AtomicUsize::new(0),
        }
    }

    /// A leaf for `names`, signed by the CA: `(chain.pem, key.pem)`.
    pub fn leaf(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let chain = self.write("chain", &cert.pem());
        let key = self.write("key", &key.serialize_pem());
        (chain, key)
    }

    /// A PEM file with arbitrary contents, for the error cases.
    pub fn write(&self, what: &str, contents: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{n}-{what}.pem"));
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The CA certificate, PEM (what a client's `--ca` file holds).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client that trusts this CA, for the given protocol versions.
    pub fn client(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
