//! Checks of the TLS files named in the options, made before connecting.
//! The client reads them only when the server asks for TLS, and then reports
//! a bad one without naming it (`could not load certs: TrailingData(..)`);
//! here each is read as the handshake will read it, and named when it fails.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::options::{NatsTls, OptionNames};
use crate::transport::ConnectError;

/// One file of [`NatsTls`], with what it should hold.
struct TlsFile<'a> {
    what: &'static str,
    setting: &'static str,
    path: &'a Path,
    pem: &'static str,
}

impl TlsFile<'_> {
    fn read(&self) -> Result<Vec<u8>, ConnectError> {
        std::fs::read(self.path).map_err(|source| ConnectError::TlsFile {
            what: self.what,
            setting: self.setting,
            path: self.path.display().to_string(),
            source,
        })
    }

    fn invalid(&self, reason: String) -> ConnectError {
        ConnectError::TlsInvalid {
            what: self.what,
            setting: self.setting,
            path: self.path.display().to_string(),
            reason,
        }
    }

    fn pem_error(&self, e: pem::Error) -> ConnectError {
        match e {
            pem::Error::NoItemsFound => ConnectError::TlsContent {
                what: self.what,
                setting: self.setting,
                path: self.path.display().to_string(),
                pem: self.pem,
            },
            e => self.invalid(format!("not valid PEM: {e}")),
        }
    }

    /// The certificates in the file, each parsed as X.509.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
        let bytes = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.pem_error(e))?;
        if certs.is_empty() {
            return Err(self.pem_error(pem::Error::NoItemsFound));
        }
        for (i, cert) in certs.iter().enumerate() {
            // Parsing as a trust anchor reads the whole certificate.
            RootCertStore::empty().add(cert.clone()).map_err(|e| {
                // rustls words it for a peer's certificate: keep the cause only.
                let cause = match e {
                    rustls::Error::InvalidCertificate(cause) => format!("{cause:?}"),
                    e => e.to_string(),
                };
                self.invalid(format!(
                    "certificate {} of {} is not a valid X.509 certificate ({cause})",
                    i + 1,
                    certs.len()
                ))
            })?;
        }
        Ok(certs)
    }

    /// The private key in the file, loaded as the handshake will load it.
    fn key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, ConnectError> {
        let bytes = self.read()?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| self.pem_error(e))?;
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| self.invalid(format!("not a private key this client can use: {e}")))
    }
}

/// Reads every file `tls` names; the first that cannot serve is an error
/// naming its setting.
pub(crate) fn check(tls: &NatsTls, names: &OptionNames) -> Result<(), ConnectError> {
    fn file<'a>(
        what: &'static str,
        setting: &'static str,
        path: &'a Option<std::path::PathBuf>,
        pem: &'static str,
    ) -> Option<TlsFile<'a>> {
        path.as_deref().map(|path| TlsFile {
            what,
            setting,
            path,
            pem,
        })
    }
    if let Some(ca) = file(
        "CA certificates",
        names.ca_file,
        &tls.ca_file,
        "CERTIFICATE",
    ) {
        ca.certificates()?;
    }
    let cert = file(
        "client certificate",
        names.cert_file,
        &tls.cert_file,
        "CERTIFICATE",
    );
    let key = file("client key", names.key_file, &tls.key_file, "PRIVATE KEY");
    let certs = cert.as_ref().map(TlsFile::certificates).transpose()?;
    let signing_key = key.as_ref().map(TlsFile::key).transpose()?;
    if let (Some(certs), Some(signing_key), Some(cert), Some(key)) = (certs, signing_key, cert, key)
    {
        let pair = CertifiedKey::new(certs, signing_key);
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            pair.keys_match()
        {
            return Err(ConnectError::TlsKeyMismatch {
                cert: cert.path.display().to_string(),
                cert_setting: cert.setting,
                key: key.path.display().to_string(),
                key_setting: key.setting,
            });
        }
    }
    Ok(())
}
