//! The v3 keys the sandbox holds: WeChat Pay's key pair (its private half signs every answer and
//! notify; the public half, named `PUB_KEY_ID_…`, is what a merchant verifies with) and the
//! merchant's API key (RSA 2048, named by its certificate's serial number), whose public half
//! checks every request. The merchant's key is also the key of the client certificate the TLS
//! listener requires for v2's `/secapi/` (see `tls.rs`): WeChat issues one API certificate for
//! both.
//!
//! Making an RSA key takes a while, so one set is made per process, on first use, and shared by
//! every sandbox that was not given its own; the standalone sandbox keeps its set in
//! `SANDBOX_CERT_DIR` and reads it back when restarted, so a shop configured with it keeps
//! working.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::wxpay::v3::crypto::generate_key_pair;
use crate::wxpay::v3::{ApiV3Key, Credentials, KeyError, MerchantKey, PayPublicKey};

/// The files `wxpay-checkout sandbox` writes for v3, beside v2's certificate files (the
/// merchant's private key is v2's `apiclient_key.pem`, [`super::super::tls::KEY_FILE`]).
pub const PUB_KEY_FILE: &str = "pub_key.pem";
/// WeChat Pay's private key: the sandbox's own secret, kept so a restart signs with the same key.
pub const PAY_PRIVATE_KEY_FILE: &str = "sandbox_wechatpay_private_key.pem";
/// `WEIXIN_MCH_SERIAL`, `WEIXIN_PAY_PUBLIC_KEY_ID` and `WEIXIN_APIV3_KEY`, one a line.
pub const ENV_FILE: &str = "wechatpay_v3.env";

/// The sandbox's v3 keys. Cheap to clone; `Debug` shows the ids, never a key.
#[derive(Clone)]
pub struct V3Keys(Arc<Inner>);

struct Inner {
    /// WeChat Pay's private key: signs answers and notifies.
    pay_signer: MerchantKey,
    pay_private_pem: SecretString,
    pay_public_pem: String,
    pay_key_id: String,
    /// The merchant's API private key (handed out, never used by the sandbox to sign).
    merchant_private_pem: SecretString,
    /// Its public half, named by the certificate serial: verifies requests.
    merchant_public: PayPublicKey,
    serial_no: String,
}

impl fmt::Debug for V3Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V3Keys")
            .field("pay_key_id", &self.0.pay_key_id)
            .field("serial_no", &self.0.serial_no)
            .finish_non_exhaustive()
    }
}

impl V3Keys {
    /// The set made once per process (on first use) and shared.
    pub fn shared() -> V3Keys {
        static SHARED: OnceLock<V3Keys> = OnceLock::new();
        SHARED.get_or_init(V3Keys::generate).clone()
    }

    /// A new set: two RSA 2048 key pairs, a public key id and a serial number in WeChat's forms.
    pub fn generate() -> V3Keys {
        let (pay_private, pay_public) = generate_key_pair();
        let (merchant_private, _) = generate_key_pair();
        Self::from_parts(
            pay_private,
            &pay_public,
            new_public_key_id(),
            merchant_private,
            new_serial_no(),
        )
        .expect("freshly made keys read back")
    }

    fn from_parts(
        pay_private_pem: SecretString,
        pay_public_pem: &str,
        pay_key_id: String,
        merchant_private_pem: SecretString,
        serial_no: String,
    ) -> Result<V3Keys, KeyError> {
        let pay_signer = MerchantKey::from_pem(pay_private_pem.expose_secret())?;
        // The public half must be the private key's own, or every answer would fail to verify.
        let probe = pay_signer.sign(PUB_KEY_FILE.as_bytes());
        PayPublicKey::from_pem(pay_key_id.clone(), pay_public_pem)?
            .verify(PUB_KEY_FILE.as_bytes(), &probe)
            .map_err(|_| KeyError::NotRsa("pub_key.pem is not WeChat Pay's key's half".into()))?;
        let merchant = MerchantKey::from_pem(merchant_private_pem.expose_secret())?;
        let merchant_public = PayPublicKey::from_pem(serial_no.clone(), &merchant.public_pem())?;
        Ok(V3Keys(Arc::new(Inner {
            pay_signer,
            pay_private_pem,
            pay_public_pem: pay_public_pem.to_owned(),
            pay_key_id,
            merchant_private_pem,
            merchant_public,
            serial_no,
        })))
    }

    /// WeChat Pay's private key, which signs answers and notifies.
    pub(in crate::sandbox) fn pay_signer(&self) -> &MerchantKey {
        &self.0.pay_signer
    }

    /// The WeChat Pay public key's id (`Wechatpay-Serial`).
    pub fn pay_key_id(&self) -> &str {
        &self.0.pay_key_id
    }

    /// The WeChat Pay public key, PEM (`pub_key.pem`).
    pub fn pay_public_pem(&self) -> &str {
        &self.0.pay_public_pem
    }

    /// The merchant's API private key, PKCS#8 PEM (`apiclient_key.pem`).
    pub fn merchant_private_pem(&self) -> &SecretString {
        &self.0.merchant_private_pem
    }

    /// The merchant's public key, named by its serial: what verifies requests.
    pub(in crate::sandbox) fn merchant_public(&self) -> &PayPublicKey {
        &self.0.merchant_public
    }

    /// The merchant certificate's serial number (`WEIXIN_MCH_SERIAL`): 40 uppercase hex digits.
    pub fn serial_no(&self) -> &str {
        &self.0.serial_no
    }

    /// The keys kept in `dir` by an earlier run, if all of them are there and read; `None` when
    /// there are none (or only some: a set is only ever reused whole).
    pub fn load(dir: &Path) -> anyhow::Result<Option<V3Keys>> {
        let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", dir.join(name).display())),
        };
        let (Some(env), Some(pay_private), Some(pay_public), Some(merchant_private)) = (
            read(ENV_FILE)?,
            read(PAY_PRIVATE_KEY_FILE)?,
            read(PUB_KEY_FILE)?,
            read(super::super::tls::KEY_FILE)?,
        ) else {
            return Ok(None);
        };
        let value = |name: &str| {
            env.lines()
                .filter_map(|line| line.trim().split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
                .with_context(|| format!("{} names no {name}", dir.join(ENV_FILE).display()))
        };
        let keys = Self::from_parts(
            SecretString::from(pay_private),
            &pay_public,
            value("WEIXIN_PAY_PUBLIC_KEY_ID")?,
            SecretString::from(merchant_private),
            value("WEIXIN_MCH_SERIAL")?,
        )
        .with_context(|| format!("reading the v3 keys in {}", dir.display()))?;
        Ok(Some(keys))
    }

    /// Writes the merchant's files into `dir` (made if missing): `apiclient_key.pem`,
    /// `pub_key.pem`, `wechatpay_v3.env` (with the APIv3 key), and the sandbox's own
    /// `sandbox_wechatpay_private_key.pem`. Secrets are readable by the owner only.
    pub fn write_to(&self, dir: &Path, apiv3_key: &SecretString) -> anyhow::Result<()> {
        use super::super::tls::{write_private, KEY_FILE};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_private(
            &dir.join(KEY_FILE),
            self.merchant_private_pem().expose_secret().as_bytes(),
        )?;
        write_private(
            &dir.join(PAY_PRIVATE_KEY_FILE),
            self.0.pay_private_pem.expose_secret().as_bytes(),
        )?;
        std::fs::write(dir.join(PUB_KEY_FILE), self.pay_public_pem())
            .with_context(|| format!("writing {}", dir.join(PUB_KEY_FILE).display()))?;
        let env = format!(
            "# WeChat Pay API v3 for the wxpay-checkout sandbox (keys: apiclient_key.pem, pub_key.pem)\n\
             WEIXIN_MCH_SERIAL={}\nWEIXIN_PAY_PUBLIC_KEY_ID={}\nWEIXIN_APIV3_KEY={}\n",
            self.serial_no(),
            self.pay_key_id(),
            apiv3_key.expose_secret()
        );
        write_private(&dir.join(ENV_FILE), env.as_bytes())
    }
}

/// What a merchant needs to call the sandbox's v3 API: build a [`Credentials`] with
/// [`V3Credentials::credentials`]. `Debug` shows the ids, never a key.
#[derive(Clone)]
pub struct V3Credentials {
    pub appid: String,
    pub mchid: String,
    /// `WEIXIN_MCH_SERIAL`.
    pub serial_no: String,
    /// `apiclient_key.pem`.
    pub merchant_private_pem: SecretString,
    /// `pub_key.pem` and `WEIXIN_PAY_PUBLIC_KEY_ID`.
    pub pay_public_pem: String,
    pub pay_key_id: String,
    /// `WEIXIN_APIV3_KEY`.
    pub apiv3_key: SecretString,
}

impl fmt::Debug for V3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V3Credentials")
            .field("appid", &self.appid)
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("pay_key_id", &self.pay_key_id)
            .finish_non_exhaustive()
    }
}

impl V3Credentials {
    /// The protocol module's credentials for a [`crate::wxpay::v3::Client`].
    pub fn credentials(&self) -> Result<Credentials, KeyError> {
        Ok(Credentials {
            appid: self.appid.clone(),
            mchid: self.mchid.clone(),
            serial_no: self.serial_no.clone(),
            key: Arc::new(MerchantKey::from_pem(
                self.merchant_private_pem.expose_secret(),
            )?),
            pay_key: PayPublicKey::from_pem(self.pay_key_id.clone(), &self.pay_public_pem)?,
            apiv3_key: ApiV3Key::new(&self.apiv3_key)?,
        })
    }
}

/// A WeChat Pay public key id: `PUB_KEY_ID_` and 34 digits (`01`, then 32 random ones), as
/// `PUB_KEY_ID_0114232134912410000000000000000001`.
fn new_public_key_id() -> String {
    let mut rng = rand::rng();
    let digits: String = (0..32)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    format!("PUB_KEY_ID_01{digits}")
}

/// A certificate serial number as WeChat's: 20 bytes, 40 uppercase hex digits, the first
/// between 1 and 7 (a positive DER integer of full length).
fn new_serial_no() -> String {
    let mut bytes: [u8; 20] = rand::rng().random();
    bytes[0] = (bytes[0] & 0x7f).max(0x10);
    hex::encode_upper(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_wechats_forms() {
        let id = new_public_key_id();
        assert_eq!(
            id.len(),
            "PUB_KEY_ID_0114232134912410000000000000000001".len()
        );
        assert!(id["PUB_KEY_ID_".len()..]
            .bytes()
            .all(|b| b.is_ascii_digit()));
        let serial = new_serial_no();
        assert_eq!(serial.len(), 40);
        assert!(serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert!(matches!(serial.as_bytes()[0], b'1'..=b'7'));
    }

    #[test]
    fn keys_written_are_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(V3Keys::load(dir.path()).unwrap().is_none());
        let keys = V3Keys::shared();
        let apiv3 = SecretString::from(super::super::super::DEMO_APIV3_KEY);
        keys.write_to(dir.path(), &apiv3).unwrap();
        let again = V3Keys::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.serial_no(), keys.serial_no());
        assert_eq!(again.pay_key_id(), keys.pay_key_id());
        assert_eq!(again.pay_public_pem(), keys.pay_public_pem());
        let signature = again.pay_signer().sign(b"m");
        PayPublicKey::from_pem("x", keys.pay_public_pem())
            .unwrap()
            .verify(b"m", &signature)
            .unwrap();
        #[cfg(unix)]
        for name in [
            ENV_FILE,
            PAY_PRIVATE_KEY_FILE,
            super::super::super::tls::KEY_FILE,
        ] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} is the owner's only");
        }
        // A set with a part missing is not reused.
        std::fs::remove_file(dir.path().join(PUB_KEY_FILE)).unwrap();
        assert!(V3Keys::load(dir.path()).unwrap().is_none());
    }
}
