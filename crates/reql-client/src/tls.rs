//! TLS settings: which certificates to trust, and the client certificate to
//! show, read from PEM files once and turned into a rustls configuration.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider of every TLS configuration here: aws-lc-rs, the one
/// rustls (and so reqwest) uses by default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The contents of a PEM file and the path it was read from (for messages).
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where the file was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub pem: Vec<u8>,
}

impl fmt::Debug for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes may be a private key.
        write!(f, "PemFile({})", self.path.display())
    }
}

impl PemFile {
    /// Reads `path`; the error names it.
    pub fn read(path: &Path) -> Result<Self, String> {
        std::fs::read(path)
            .map(|pem| PemFile {
                path: path.to_owned(),
                pem,
            })
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
}

/// Every certificate in a PEM file; an error if there is none.
pub fn certificates_from_pem(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&file.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", file.path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", file.path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key_from_pem(file: &PemFile) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(&file.pem)
        .map_err(|e| format!("{}: no PEM private key in it ({e})", file.path.display()))
}

/// How to speak TLS to the database: whom to trust, and what to show.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA certificates to trust instead of the system's roots.
    pub ca: Option<PemFile>,
    /// A client certificate chain and its key, for a server that requires one.
    pub client: Option<(PemFile, PemFile)>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("ca", &self.ca)
            .field("client_cert", &self.client.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl TlsSettings {
    /// Reads the files named (any may be absent; `cert` and `key` go
    /// together) and checks that a configuration can be made of them, so
    /// that a wrong file is refused at start.
    pub fn load(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, String> {
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((PemFile::read(cert)?, PemFile::read(key)?)),
            (None, None) => None,
            (Some(_), None) => return Err("cert= needs key= (the client certificate's key)".into()),
            (None, Some(_)) => return Err("key= needs cert= (the client certificate)".into()),
        };
        let settings = TlsSettings {
            ca: ca.map(PemFile::read).transpose()?,
            client,
        };
        settings.client_config()?;
        Ok(settings)
    }

    /// The rustls configuration: server certificates verified against the
    /// CA file or else the system's roots, host names checked.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in certificates_from_pem(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca.path.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    return Err(
                        "no system root certificates found; name the server's CA with ca=".into(),
                    );
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match &self.client {
            Some((cert, key)) => builder
                .with_client_auth_cert(certificates_from_pem(cert)?, private_key_from_pem(key)?)
                .map_err(|e| format!("client certificate {}: {e}", cert.path.display()))?,
            None => builder.with_no_client_auth(),
        };
        // No session resumption: RethinkDB 2.4.4 started with
        // `--driver-tls-ca` sets no session id context, so OpenSSL answers a
        // resumed handshake with an `internal_error` alert, and a pool's
        // second connection would fail where the first succeeded. Database
        // connections live long; a full handshake each costs nothing that
        // matters.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }
}
