//! The merchant's API client certificate (`apiclient_cert`), which `/secapi/` calls (refunds)
//! present in the TLS handshake. WeChat hands it out as `apiclient_cert.p12` (PKCS#12, password
//! the mch_id, in the legacy RC2/3DES encryption old OpenSSL wrote) and as a PEM pair
//! (`apiclient_cert.pem` + `apiclient_key.pem`); either loads into the same [`ClientCert`].
//! Parsing is `p12-keystore`'s and `pem`'s; TLS is rustls's (through reqwest).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Largest certificate or key file read (real ones are about 3 KiB).
pub const MAX_CERT_FILE: usize = 64 * 1024;

/// A client certificate chain and its private key. `Debug` never shows the key.
#[derive(Clone)]
pub struct ClientCert {
    /// The certificate chain, leaf first, as PEM.
    chain_pem: String,
    /// The private key as PEM (PKCS#8 from a p12; as given from a PEM file).
    key_pem: SecretString,
    /// The leaf's subject, as `CN=…, OU=…`.
    subject: String,
    /// The leaf's validity, Unix seconds (`notBefore`, `notAfter`).
    validity: (i64, i64),
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("subject", &self.subject)
            .field("validity", &self.validity)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("larger than {MAX_CERT_FILE} bytes: not a certificate file")]
    TooLarge,
    #[error("not a PKCS#12 file this password opens (the password is the mch_id): {0}")]
    P12(String),
    #[error("the PKCS#12 file holds no private key with its certificate")]
    NoKeyChain,
    #[error("not PEM: {0}")]
    Pem(String),
    #[error("no CERTIFICATE block in the certificate file")]
    NoCertificate,
    #[error("no PRIVATE KEY block in the key file")]
    NoKey,
    #[error("the certificate cannot be read: {0}")]
    Certificate(String),
}

const KEY_TAGS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

impl ClientCert {
    /// From `apiclient_cert.p12` opened with `password` (WeChat's is the mch_id).
    pub fn from_p12(der: &[u8], password: &str) -> Result<ClientCert, CertError> {
        if der.len() > MAX_CERT_FILE {
            return Err(CertError::TooLarge);
        }
        let store = p12_keystore::KeyStore::from_pkcs12(
            der,
            password,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| CertError::P12(e.to_string()))?;
        let (_, chain) = store.private_key_chain().ok_or(CertError::NoKeyChain)?;
        let leaf = chain.certs().first().ok_or(CertError::NoKeyChain)?;
        let chain_pem = pem::encode_many(
            &chain
                .certs()
                .iter()
                .map(|c| pem::Pem::new("CERTIFICATE", c.as_der()))
                .collect::<Vec<_>>(),
        );
        let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", chain.key().as_der()));
        Ok(ClientCert {
            chain_pem,
            key_pem: key_pem.into(),
            subject: leaf.subject().to_owned(),
            validity: validity(leaf.as_der())?,
        })
    }

    /// From `apiclient_cert.pem` (the chain, leaf first) and `apiclient_key.pem`.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<ClientCert, CertError> {
        if cert.len() > MAX_CERT_FILE || key.len() > MAX_CERT_FILE {
            return Err(CertError::TooLarge);
        }
        let certs: Vec<pem::Pem> = pem::parse_many(cert)
            .map_err(|e| CertError::Pem(e.to_string()))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .collect();
        let leaf = certs.first().ok_or(CertError::NoCertificate)?;
        let subject = p12_keystore::Certificate::from_der(leaf.contents())
            .map_err(|e| CertError::Certificate(e.to_string()))?
            .subject()
            .to_owned();
        let key = pem::parse_many(key)
            .map_err(|e| CertError::Pem(e.to_string()))?
            .into_iter()
            .find(|p| KEY_TAGS.contains(&p.tag()))
            .ok_or(CertError::NoKey)?;
        Ok(ClientCert {
            validity: validity(leaf.contents())?,
            chain_pem: pem::encode_many(&certs),
            key_pem: pem::encode(&key).into(),
            subject,
        })
    }

    /// The leaf certificate's subject (WeChat's names the mch_id as its `CN`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the leaf certificate starts and stops being valid, Unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        self.validity
    }

    /// The certificate chain as PEM.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// The private key as PEM.
    pub fn key_pem(&self) -> &SecretString {
        &self.key_pem
    }

    /// The identity a reqwest client presents.
    pub fn identity(&self) -> Result<reqwest::Identity, reqwest::Error> {
        let mut both = String::with_capacity(self.chain_pem.len() + 2048);
        both.push_str(self.key_pem.expose_secret());
        both.push_str(&self.chain_pem);
        reqwest::Identity::from_pem(both.as_bytes())
    }

    /// The certificate as WeChat hands it out: a PKCS#12 file under `password`, in the legacy
    /// encryption (3DES, SHA-1 MAC) that every reader opens (the sandbox's side).
    pub fn to_p12(&self, password: &str) -> Result<Vec<u8>, CertError> {
        let p12 = |e: p12_keystore::error::Error| CertError::P12(e.to_string());
        let certs = pem::parse_many(&self.chain_pem)
            .map_err(|e| CertError::Pem(e.to_string()))?
            .iter()
            .map(|p| p12_keystore::Certificate::from_der(p.contents()).map_err(p12))
            .collect::<Result<Vec<_>, _>>()?;
        let key =
            pem::parse(self.key_pem.expose_secret()).map_err(|e| CertError::Pem(e.to_string()))?;
        let key = p12_keystore::PrivateKey::from_der(key.contents()).map_err(p12)?;
        let mut store = p12_keystore::KeyStore::new();
        store.add_entry(
            "apiclient_cert",
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                b"apiclient_cert".to_vec(),
                key,
                certs,
            )),
        );
        store
            .writer(password)
            .encryption_algorithm(p12_keystore::EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(p12_keystore::MacAlgorithm::HmacSha1)
            .encryption_iterations(2048)
            .mac_iterations(2048)
            .write()
            .map_err(p12)
    }
}

/// A DER certificate's validity, Unix seconds.
fn validity(der: &[u8]) -> Result<(i64, i64), CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let validity = cert.validity();
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(cn: &str) -> ClientCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        ClientCert::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }

    #[test]
    fn a_pem_pair_loads_and_round_trips_through_a_legacy_p12() {
        let cert = self_signed("1900000109");
        assert!(
            cert.subject().contains("CN=1900000109"),
            "{}",
            cert.subject()
        );
        cert.identity().expect("reqwest takes the pair");
        // rcgen's default validity: 1975 to 4096.
        assert_eq!(cert.validity().0, 157_766_400);
        assert!(cert.validity().1 > 4_000_000_000);
        let p12 = cert.to_p12("1900000109").unwrap();
        let back = ClientCert::from_p12(&p12, "1900000109").unwrap();
        assert_eq!(back.subject(), cert.subject());
        assert_eq!(back.validity(), cert.validity());
        assert_eq!(back.chain_pem(), cert.chain_pem());
        back.identity().expect("reqwest takes the p12's pair");
        assert!(!format!("{back:?}").contains("PRIVATE"));
    }

    #[test]
    fn wrong_passwords_and_wrong_files_are_named() {
        let cert = self_signed("1900000109");
        let p12 = cert.to_p12("1900000109").unwrap();
        assert!(matches!(
            ClientCert::from_p12(&p12, "1900000108"),
            Err(CertError::P12(_))
        ));
        assert!(matches!(
            ClientCert::from_p12(b"not a p12", "x"),
            Err(CertError::P12(_))
        ));
        let key = cert.key_pem().expose_secret().to_owned();
        assert!(matches!(
            ClientCert::from_pem(key.as_bytes(), key.as_bytes()),
            Err(CertError::NoCertificate)
        ));
        assert!(matches!(
            ClientCert::from_pem(cert.chain_pem().as_bytes(), cert.chain_pem().as_bytes()),
            Err(CertError::NoKey)
        ));
        assert!(matches!(
            ClientCert::from_pem(&vec![b'a'; MAX_CERT_FILE + 1], b""),
            Err(CertError::TooLarge)
        ));
    }
}
