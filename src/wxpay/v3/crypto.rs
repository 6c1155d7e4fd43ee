//! The keys of WeChat Pay API v3 and what each does:
//!
//! - the merchant's **API private key** (`apiclient_key.pem`, RSA 2048) signs every request
//!   (`SHA256withRSA`, PKCS#1 v1.5) — [`MerchantKey`];
//! - the **WeChat Pay public key** (`pub_key.pem`, named by its id `PUB_KEY_ID_…`) verifies every
//!   answer and notify — [`PayPublicKey`];
//! - the **APIv3 key** (32 characters) decrypts the `resource` of a notify (`AEAD_AES_256_GCM`)
//!   — [`ApiV3Key`].
//!
//! RSA signing and verification are `ring`'s (constant-time); AES-256-GCM is `aes-gcm`'s; the
//! `rsa` crate only reads PEM public keys and makes new key pairs (the sandbox's), never signs.
//! `Debug` never shows a private key.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use rsa::pkcs1::EncodeRsaPublicKey as _;
use rsa::pkcs8::{DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Why a key could not be read. Never carries the key's bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not a PEM file ({0})")]
    NotPem(String),
    #[error("a PEM {found:?} block where a {wanted} was expected")]
    WrongKind { found: String, wanted: &'static str },
    #[error("not an RSA key of 2048 to 8192 bits ({0})")]
    NotRsa(String),
    #[error("the APIv3 key must be 32 characters (it is {0})")]
    ApiV3KeyLength(usize),
}

/// Why a signature or a sealed resource did not check out.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the signature is not base64")]
    SignatureNotBase64,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the ciphertext is not base64")]
    CiphertextNotBase64,
    #[error("the nonce must be 12 bytes (it is {0})")]
    NonceLength(usize),
    #[error("the resource does not decrypt (another APIv3 key, or altered)")]
    DoesNotOpen,
}

/// The merchant's API private key: signs requests (and, in the sandbox, WeChat's own key signs
/// answers and notifies the same way).
pub struct MerchantKey {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantKey")
            .field("bits", &(self.pair.public().modulus_len() * 8))
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl MerchantKey {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what WeChat's certificate tool
    /// writes as `apiclient_key.pem`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text.trim()).map_err(|e| KeyError::NotPem(e.to_string()))?;
        let pair = match block.tag() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
            other => {
                return Err(KeyError::WrongKind {
                    found: other.to_owned(),
                    wanted: "private key",
                })
            }
        }
        .map_err(|e| KeyError::NotRsa(e.to_string()))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// `SHA256withRSA` over `message`, base64 — the `signature` of an `Authorization` header
    /// (or of a `Wechatpay-Signature`).
    pub fn sign(&self, message: &[u8]) -> String {
        let mut out = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, message, &mut out)
            .expect("signing with a valid RSA key into a modulus-sized buffer cannot fail");
        B64.encode(out)
    }

    /// The matching public key as PEM (`BEGIN PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        let der = self.pair.public().as_ref();
        let key = <rsa::RsaPublicKey as rsa::pkcs1::DecodeRsaPublicKey>::from_pkcs1_der(der)
            .expect("ring's public key is PKCS#1 DER");
        key.to_public_key_pem(LineEnding::LF)
            .expect("an RSA public key encodes")
    }
}

/// The WeChat Pay public key (or, in the sandbox, the merchant's) with the id answers name it
/// by: `Wechatpay-Serial` is `PUB_KEY_ID_…` in public-key mode.
#[derive(Clone)]
pub struct PayPublicKey {
    id: String,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl fmt::Debug for PayPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PayPublicKey")
            .field("id", &self.id)
            .finish()
    }
}

impl PayPublicKey {
    /// Reads a PEM public key (`BEGIN PUBLIC KEY`, SubjectPublicKeyInfo), as WeChat's merchant
    /// platform hands out `pub_key.pem`.
    pub fn from_pem(id: impl Into<String>, pem_text: &str) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text.trim()).map_err(|e| KeyError::NotPem(e.to_string()))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(KeyError::WrongKind {
                found: block.tag().to_owned(),
                wanted: "public key",
            });
        }
        let key = rsa::RsaPublicKey::from_public_key_der(block.contents())
            .map_err(|e| KeyError::NotRsa(e.to_string()))?;
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError::NotRsa(format!("{bits} bits")));
        }
        let pkcs1 = key
            .to_pkcs1_der()
            .map_err(|e| KeyError::NotRsa(e.to_string()))?;
        Ok(Self {
            id: id.into(),
            key: UnparsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                pkcs1.as_bytes().to_vec(),
            ),
        })
    }

    /// `PUB_KEY_ID_…` (or a certificate's serial number).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Checks a base64 `SHA256withRSA` signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), CryptoError> {
        let signature = B64
            .decode(signature_b64.trim())
            .map_err(|_| CryptoError::SignatureNotBase64)?;
        self.key
            .verify(message, &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// The APIv3 key: 32 characters set in the merchant platform, used as the 32 bytes of an
/// AES-256-GCM key.
pub struct ApiV3Key(SecretBox<[u8; 32]>);

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key([REDACTED])")
    }
}

impl Clone for ApiV3Key {
    fn clone(&self) -> Self {
        Self(SecretBox::new(Box::new(*self.0.expose_secret())))
    }
}

impl ApiV3Key {
    pub fn new(key: &SecretString) -> Result<Self, KeyError> {
        let bytes = key.expose_secret().as_bytes();
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::ApiV3KeyLength(key.expose_secret().chars().count()))?;
        Ok(Self(SecretBox::new(Box::new(array))))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.expose_secret().into())
    }

    /// Opens a notify's `resource`: `ciphertext` (base64, the 16-byte tag at its end) sealed with
    /// `nonce` (12 characters) and `associated_data`.
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = nonce_bytes(nonce)?;
        let sealed = B64
            .decode(ciphertext_b64)
            .map_err(|_| CryptoError::CiphertextNotBase64)?;
        self.cipher()
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: &sealed,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::DoesNotOpen)
    }

    /// Seals a resource as WeChat does (the sandbox's side), base64.
    pub fn encrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Result<String, CryptoError> {
        let nonce = nonce_bytes(nonce)?;
        let sealed = self
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::DoesNotOpen)?;
        Ok(B64.encode(sealed))
    }
}

fn nonce_bytes(nonce: &str) -> Result<[u8; 12], CryptoError> {
    nonce
        .as_bytes()
        .try_into()
        .map_err(|_| CryptoError::NonceLength(nonce.len()))
}

/// A new RSA 2048 key pair as PEM: (PKCS#8 private key, SubjectPublicKeyInfo public key). For
/// the sandbox, which makes WeChat Pay's key and the merchant's; a real merchant's comes from
/// WeChat's certificate tool. Takes a fraction of a second (more unoptimised).
pub fn generate_key_pair() -> (SecretString, String) {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .expect("generating an RSA 2048 key from the OS's randomness");
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an RSA private key encodes");
    let public_pem = private
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("an RSA public key encodes");
    (SecretString::from(private_pem.as_str()), public_pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    /// One key pair for all tests of this module (generating one takes a while unoptimised).
    static PAIR: LazyLock<(SecretString, String)> = LazyLock::new(generate_key_pair);

    fn signer() -> MerchantKey {
        MerchantKey::from_pem(PAIR.0.expose_secret()).unwrap()
    }

    #[test]
    fn a_signature_verifies_under_the_public_key_and_nothing_else() {
        let key = signer();
        let public =
            PayPublicKey::from_pem("PUB_KEY_ID_0114232134912410000000000000000001", &PAIR.1)
                .unwrap();
        let message = b"POST\n/v3/pay/transactions/native\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n{}\n";
        let sig = key.sign(message);
        assert_eq!(B64.decode(&sig).unwrap().len(), 256);
        assert_eq!(public.verify(message, &sig), Ok(()));
        let mut other = message.to_vec();
        other[0] = b'G';
        assert_eq!(public.verify(&other, &sig), Err(CryptoError::BadSignature));
        assert_eq!(
            public.verify(message, "not base64!"),
            Err(CryptoError::SignatureNotBase64)
        );
        assert_eq!(
            public.verify(message, &B64.encode([0u8; 256])),
            Err(CryptoError::BadSignature)
        );
        // The public key derived from the private one is the one generated with it.
        let again = PayPublicKey::from_pem("x", &key.public_pem()).unwrap();
        assert_eq!(again.verify(message, &sig), Ok(()));
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let (other_private, _) = generate_key_pair();
        let other = MerchantKey::from_pem(other_private.expose_secret()).unwrap();
        let public = PayPublicKey::from_pem("id", &PAIR.1).unwrap();
        assert_eq!(
            public.verify(b"m", &other.sign(b"m")),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_are_named() {
        assert!(matches!(
            MerchantKey::from_pem(&PAIR.1),
            Err(KeyError::WrongKind {
                wanted: "private key",
                ..
            })
        ));
        assert!(matches!(
            PayPublicKey::from_pem("id", PAIR.0.expose_secret()),
            Err(KeyError::WrongKind {
                wanted: "public key",
                ..
            })
        ));
        assert!(matches!(
            MerchantKey::from_pem("hello"),
            Err(KeyError::NotPem(_))
        ));
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            MerchantKey::from_pem(garbage),
            Err(KeyError::NotRsa(_))
        ));
        let shown = format!("{:?}", signer());
        assert!(
            shown.contains("2048") && shown.contains("REDACTED"),
            "{shown}"
        );
    }

    /// WeChat's published decryption example has no key (the docs show the steps, not a
    /// vector), so this checks AES-256-GCM against NIST's test case 16 of the GCM spec (the
    /// 256-bit key, 12-byte IV and AAD one), through the same calls a notify takes.
    #[test]
    fn aes_gcm_matches_a_published_vector() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .unwrap();
        let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let plain = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let expected = hex::decode(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
             76fc6ece0f4e1768cddf8853bb2d551b",
        )
        .unwrap();
        // The vector's key, IV and AAD are binary; WeChat's are text — the cipher is the same.
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let iv: [u8; 12] = iv.try_into().unwrap();
        let sealed = cipher
            .encrypt(
                &iv.into(),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap();
        assert_eq!(sealed, expected);
    }

    #[test]
    fn a_resource_round_trips_and_any_change_is_refused() {
        let key = ApiV3Key::new(&SecretString::from("a7cde1ZJB1kG2e7VfTs3jQzG7Qd2oXvm")).unwrap();
        let sealed = key
            .encrypt("fdasflkja484", "transaction", b"{\"a\":1}")
            .unwrap();
        assert_eq!(
            key.decrypt("fdasflkja484", "transaction", &sealed).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            key.decrypt("fdasflkja485", "transaction", &sealed),
            Err(CryptoError::DoesNotOpen)
        );
        assert_eq!(
            key.decrypt("fdasflkja484", "refund", &sealed),
            Err(CryptoError::DoesNotOpen)
        );
        let mut bytes = B64.decode(&sealed).unwrap();
        bytes[0] ^= 1;
        assert_eq!(
            key.decrypt("fdasflkja484", "transaction", &B64.encode(bytes)),
            Err(CryptoError::DoesNotOpen)
        );
        let other = ApiV3Key::new(&SecretString::from("b7cde1ZJB1kG2e7VfTs3jQzG7Qd2oXvm")).unwrap();
        assert_eq!(
            other.decrypt("fdasflkja484", "transaction", &sealed),
            Err(CryptoError::DoesNotOpen)
        );
        assert_eq!(
            key.decrypt("short", "transaction", &sealed),
            Err(CryptoError::NonceLength(5))
        );
        assert_eq!(
            key.decrypt("fdasflkja484", "transaction", "%%"),
            Err(CryptoError::CiphertextNotBase64)
        );
        assert_eq!(
            ApiV3Key::new(&SecretString::from("short")).unwrap_err(),
            KeyError::ApiV3KeyLength(5)
        );
        assert_eq!(format!("{key:?}"), "ApiV3Key([REDACTED])");
    }
}
