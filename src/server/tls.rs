//! Optional TLS (rustls) for the RESP protocol, on a port of its own as Redis's `tls-port`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig as RustlsConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{ConfigError, Error};

/// TLS settings of the server config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TlsConfig {
    /// Port of the TLS listener (the plain port keeps serving).
    pub port: u16,
    /// PEM file with the certificate chain.
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::Config(ConfigError::Invalid { field, reason })
}

impl TlsConfig {
    /// Loads the certificate and key.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable PEM.
    pub fn acceptor(&self) -> Result<TlsAcceptor, Error> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect)
            .map_err(|e| invalid("tls.cert", format!("{}: {e}", self.cert.display())))?;
        if certs.is_empty() {
            return Err(invalid(
                "tls.cert",
                format!("{}: no certificate", self.cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| invalid("tls.key", format!("{}: {e}", self.key.display())))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = RustlsConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| invalid("tls", e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
