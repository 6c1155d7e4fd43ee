//! The sandbox's TLS side, standing in for WeChat's certificate authority: a CA made at start
//! (rcgen), a server certificate for the sandbox's own addresses, and the merchant's API client
//! certificate (`CN` = the mch_id, as WeChat's `apiclient_cert`; given the v3 keys, for the
//! RSA key and serial number v3 signs requests with, as WeChat has one API certificate for both)
//! that `/secapi/` calls must present. The TLS listener requires a client certificate issued by this CA: a call without
//! one is refused in the handshake, as WeChat refuses it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::wxpay::cert::ClientCert;

/// What a merchant needs to call the sandbox's `/secapi/`: its client certificate, and the
/// sandbox CA to trust for the server's.
#[derive(Clone)]
pub struct SandboxCredentials {
    /// The sandbox's CA certificate, PEM: trust it to reach the TLS listener.
    pub ca_pem: String,
    /// The merchant's `apiclient_cert`, issued by that CA.
    pub merchant: ClientCert,
}

/// The file names `wxpay-checkout sandbox` writes, WeChat's own where WeChat has one.
pub const P12_FILE: &str = "apiclient_cert.p12";
pub const CERT_FILE: &str = "apiclient_cert.pem";
pub const KEY_FILE: &str = "apiclient_key.pem";
pub const CA_FILE: &str = "sandbox_ca.pem";

impl SandboxCredentials {
    /// Writes `apiclient_cert.p12` (password = `mch_id`), `apiclient_cert.pem`,
    /// `apiclient_key.pem` (both keys readable by the owner only) and `sandbox_ca.pem` into
    /// `dir`, creating it.
    pub fn write_to(&self, dir: &Path, mch_id: &str) -> anyhow::Result<()> {
        use secrecy::ExposeSecret;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let p12 = self.merchant.to_p12(mch_id)?;
        write_private(&dir.join(P12_FILE), &p12)?;
        write_private(
            &dir.join(KEY_FILE),
            self.merchant.key_pem().expose_secret().as_bytes(),
        )?;
        for (name, text) in [
            (CERT_FILE, self.merchant.chain_pem()),
            (CA_FILE, self.ca_pem.as_str()),
        ] {
            std::fs::write(dir.join(name), text)
                .with_context(|| format!("writing {}", dir.join(name).display()))?;
        }
        Ok(())
    }
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// A freshly made CA with the server's and the merchant's certificates.
pub struct SandboxTls {
    pub credentials: SandboxCredentials,
    pub server_config: rustls::ServerConfig,
}

impl SandboxTls {
    /// Makes a CA, a server certificate for `localhost`, the loopback addresses and `ip`, and
    /// the merchant certificate for `mch_id` — for the merchant's API key and serial number
    /// `v3` names (RSA, PKCS#8 PEM; hex), as v3 signs with them, or else for a key of its own;
    /// the server requires client certificates from that CA.
    pub fn generate(
        mch_id: &str,
        ip: IpAddr,
        v3: Option<(&secrecy::SecretString, &str)>,
    ) -> anyhow::Result<SandboxTls> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "wxpay-checkout sandbox CA");
        ca_params
            .distinguished_name
            .push(DnType::OrganizationName, "Tenpay.com");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca = Issuer::new(ca_params, ca_key);

        let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        if !ip.is_unspecified() && !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "api.mch.weixin.qq.com (sandbox)");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (from, until) = validity();
        server_params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        server_params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        let client_key = match v3 {
            Some((key, serial_no)) => {
                client_params.serial_number = Some(rcgen::SerialNumber::from_slice(
                    &hex::decode(serial_no).context("the serial number is hex")?,
                ));
                KeyPair::from_pem_and_sign_algo(
                    secrecy::ExposeSecret::expose_secret(key),
                    &rcgen::PKCS_RSA_SHA256,
                )?
            }
            None => KeyPair::generate()?,
        };
        client_params
            .distinguished_name
            .push(DnType::CommonName, mch_id);
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "微信商户系统");
        client_params.distinguished_name.push(
            DnType::OrganizationalUnitName,
            "wxpay-checkout sandbox merchant",
        );
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // Five years from yesterday, as WeChat issues them (a certificate's age is checkable).
        let (from, until) = validity();
        client_params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        client_params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let client_cert = client_params.signed_by(&client_key, &ca)?;
        let merchant = ClientCert::from_pem(
            client_cert.pem().as_bytes(),
            client_key.serialize_pem().as_bytes(),
        )?;

        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()?;
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )?;
        Ok(SandboxTls {
            credentials: SandboxCredentials {
                ca_pem: ca_cert.pem(),
                merchant,
            },
            server_config,
        })
    }
}

/// From yesterday to five years on, as (year, month, day).
fn validity() -> ((i32, u8, u8), (i32, u8, u8)) {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let ymd = |d: chrono::NaiveDate| (d.year(), d.month() as u8, d.day() as u8);
    let yesterday = today.pred_opt().unwrap_or(today);
    let later = today
        .with_year(today.year() + 5)
        .unwrap_or_else(|| today + chrono::Duration::days(5 * 365));
    (ymd(yesterday), ymd(later))
}
