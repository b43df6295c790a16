//! A certificate authority made for one test: server and client
//! certificates signed by it, written as PEM files for the database's
//! `--driver-tls-*` options and for `rethinkdbs://...?ca=`.

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A CA whose certificate is at [`TestCa::ca_path`].
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        std::fs::create_dir_all(dir)?;
        let ca = Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer,
        };
        std::fs::write(ca.ca_path(), ca.issuer.pem())?;
        Ok(ca)
    }

    /// The CA's certificate, PEM.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> anyhow::Result<CertFiles> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{file}.pem", self.name)),
            key: self.dir.join(format!("{}-{file}-key.pem", self.name)),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }

    /// A server certificate for `names` (host names or IP addresses);
    /// `expired` makes one that ended in 2021.
    pub fn server(&self, file: &str, names: &[&str], expired: bool) -> anyhow::Result<CertFiles> {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, expired)
    }

    /// A client certificate.
    pub fn client(&self, file: &str) -> anyhow::Result<CertFiles> {
        self.issue(file, &[], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}
