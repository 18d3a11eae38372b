//! TLS in the process (rustls with the `ring` provider), for deployments without a
//! proxy in front: `server.tls_cert` and `server.tls_key`. The handshake is bounded by
//! the same timeout as the HTTP upgrade.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;

/// The acceptor the config asks for (`None`: plain TCP), or why it cannot be made.
pub fn acceptor(server: &ServerConfig) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) else {
        return Ok(None);
    };
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "server.tls_key {}: no usable private key ({e})",
            key.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("server.tls_cert and server.tls_key do not make a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// rustls with the `ring` provider: no C toolchain or CMake to build (aws-lc-rs needs
/// them), at the price of no post-quantum key exchange, which is why rustls marks
/// it deprecated.
#[allow(deprecated)]
pub fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("server.tls_cert {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls_cert {shown}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls_cert {shown}: no certificate in the file"
        ));
    }
    Ok(chain)
}
