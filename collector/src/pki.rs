//! Certificates: the gate's rustls server configuration, and creating a CA, a server
//! certificate and agents' client certificates for onboarding (rcgen). ECDSA P-256 keys.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// The CA's common name. `agent add` rebuilds the CA certificate from its key and this name to
/// sign with (an identical issuer name and key make an identical issuer), so it is fixed.
pub const CA_NAME: &str = "Ember CA";

/// Errors loading or creating certificates; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client CA cannot verify.
    #[error("client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rcgen failed.
    #[error("creating a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn pem_err(path: &Path, reason: impl ToString) -> PkiError {
    PkiError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gate's TLS configuration: the server certificate and key, and if `client_ca` is set,
/// client certificates signed by it (required if `require`, else optional).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    require: bool,
) -> Result<Arc<ServerConfig>, PkiError> {
    let chain = certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| pem_err(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if require {
                verifier.build()?
            } else {
                verifier.allow_unauthenticated().build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config.with_single_cert(chain, key_der)?))
}

/// The subject's common name of a DER certificate (the host id of an agent's certificate).
/// `None` if there is none or the DER is not a certificate.
pub fn common_name(der: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version, serialNumber,
    //   signature, issuer, validity, subject, ... }, ... }
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..4 {
        // serialNumber, signature, issuer, validity
        rest = tlv(rest)?.2;
    }
    let (_, mut subject, _) = tlv(rest)?;
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }
    while !subject.is_empty() {
        let (_, set, next) = tlv(subject)?;
        subject = next;
        let (_, attr, _) = tlv(set)?;
        let (oid_tag, oid, value) = tlv(attr)?;
        if oid_tag == 0x06 && oid == [0x55, 0x04, 0x03] {
            let (tag, v, _) = tlv(value)?;
            // UTF8String, PrintableString, IA5String
            if matches!(tag, 0x0c | 0x13 | 0x16) {
                return String::from_utf8(v.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, start) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = start.checked_add(len)?;
    Some((tag, b.get(start..end)?, b.get(end..)?))
}

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, years: i32) {
    let days = crate::now_ms() / 86_400_000;
    // Good to a few days, which is all a validity start needs.
    let year = 1970 + (days as f64 / 365.2425) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A new CA: its certificate (valid 20 years) and key.
pub fn new_ca() -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, 20);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A CA loaded from its key, to sign with.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// Loads the CA key written by [`new_ca`].
    pub fn load(key_path: &Path) -> Result<Self, PkiError> {
        let pem = std::fs::read_to_string(key_path).map_err(|source| PkiError::File {
            path: key_path.to_path_buf(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem).map_err(|e| pem_err(key_path, e))?;
        let cert = ca_params().self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// A server certificate for `names` (host names and addresses), valid 10 years.
    pub fn server(&self, names: &[String]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        let cn = names.first().map_or("ember", |n| n.as_str());
        params.distinguished_name.push(DnType::CommonName, cn);
        self.issue(params, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate whose common name is `host`, valid 10 years.
    pub fn client(&self, host: &str) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, host);
        self.issue(params, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 10);
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Names a server certificate should carry by default: loopback and this machine's name.
pub fn default_server_names() -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h != "localhost" && h.parse::<IpAddr>().is_err() {
            names.push(h.to_string());
            names.push(format!("{h}.local"));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_names_and_verify() {
        let dir = std::env::temp_dir().join(format!("ember-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = new_ca().unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("ca.key"), &ca.key_pem).unwrap();
        let signer = Ca::load(&dir.join("ca.key")).unwrap();
        let server = signer
            .server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
        let client = signer.client("pi-a").unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(der.as_ref()).as_deref(), Some("pi-a"));
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert_eq!(common_name(ca_der.as_ref()).as_deref(), Some(CA_NAME));
        // The rebuilt CA signs certificates that the CA on disk verifies.
        server_config(
            &dir.join("server.pem"),
            &dir.join("server.key"),
            Some(&dir.join("ca.pem")),
            true,
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        verifier
            .verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now())
            .expect("the CA on disk verifies the client certificate");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn common_name_never_panics_on_garbage() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01],
        ] {
            assert_eq!(common_name(bad), None);
        }
    }
}
