//! The client side's configuration, for the runtime's outbound `wss://`
//! connections (the load generator): trust a CA from a PEM file, or, for
//! measuring against a server with a throwaway certificate, trust any
//! certificate (`--insecure`, still checking the handshake's signatures so
//! the cost measured is the real one).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::config::ConfigError;

/// Whom an outbound connection trusts.
#[derive(Clone, Debug)]
pub enum Trust<'a> {
    /// The CA certificates in this PEM file.
    Ca(&'a Path),
    /// Any certificate (its signature over the handshake is still checked).
    Insecure,
}

/// A client configuration: TLS 1.3 and 1.2, ALPN `http/1.1`, session
/// resumption on (rustls' default in-memory store), aws-lc-rs.
pub fn client_config(trust: Trust<'_>) -> Result<Arc<ClientConfig>, ConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(ConfigError::Rustls)?;
    let mut config = match trust {
        Trust::Ca(path) => {
            let pem = std::fs::read(path).map_err(|error| ConfigError::Read {
                path: path.to_owned(),
                error,
            })?;
            let mut roots = RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(&pem) {
                let der = der.map_err(|error| ConfigError::Pem {
                    path: path.to_owned(),
                    error: error.to_string(),
                })?;
                roots.add(der).map_err(|error| ConfigError::BadLeaf {
                    path: path.to_owned(),
                    error: error.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(ConfigError::EmptyChain {
                    path: path.to_owned(),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate chain and name; checks the handshake
/// signatures with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
