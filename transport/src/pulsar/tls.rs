//! TLS for the admin REST API: the public roots plus the configured trust certificates.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::config::PulsarConfig;
use crate::TransportError;

/// The configured trust certificates, PEM-decoded.
pub(crate) fn trust_certificates(config: &PulsarConfig) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let Some(path) = &config.tls_trust_certs else {
        return Ok(Vec::new());
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TransportError::Config(format!("Pulsar TLS trust certificates {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TransportError::Config(format!(
            "Pulsar TLS trust certificates {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// A rustls client configuration (ring provider) trusting the public roots and the configured
/// certificates.
pub(crate) fn rustls_client_config(config: &PulsarConfig) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in trust_certificates(config)? {
        roots
            .add(cert)
            .map_err(|e| TransportError::Config(format!("Pulsar TLS trust certificate rejected: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Config(format!("TLS: {e}")))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}
