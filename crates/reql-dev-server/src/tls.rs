//! Driver-port TLS, as RethinkDB's `--driver-tls-key`, `--driver-tls-cert`
//! and `--driver-tls-ca` set it up: the server's certificate and key, and
//! optionally a CA whose signature every client certificate must carry.

use std::path::Path;
use std::sync::Arc;

use reql_client::{certificates_from_pem, private_key_from_pem, provider, PemFile};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The driver port's TLS.
#[derive(Clone)]
pub struct DriverTls {
    /// The rustls server configuration: certificate chain, key, and the
    /// client verifier when client certificates are required.
    pub config: Arc<ServerConfig>,
    /// Whether clients must present a certificate (`--driver-tls-ca`). As
    /// RethinkDB 2.4.4 then sets no session id context, OpenSSL refuses a
    /// resumed session there with `internal_error`; the dev server refuses
    /// it too, so that a client which resumes fails here as it would there.
    pub client_certificates: bool,
}

/// The rustls configuration of the driver port; the error is one line
/// naming the file at fault.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<DriverTls, String> {
    let chain = certificates_from_pem(&PemFile::read(cert)?)?;
    let key = private_key_from_pem(&PemFile::read(key)?)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca = PemFile::read(ca)?;
            let mut roots = RootCertStore::empty();
            for c in certificates_from_pem(&ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("{}: {e}", ca.path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| format!("{}: {e}", ca.path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    Ok(DriverTls {
        config: Arc::new(config),
        client_certificates: client_ca.is_some(),
    })
}
