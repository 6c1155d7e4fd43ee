//! WeChat Pay v2 (XML API) as the checkout speaks it (Native, H5 and JSAPI): signatures, the XML
//! codec, typed messages, the client, the JSAPI page's signed parameters, the official account's
//! OAuth (the JSAPI payer's openid), the payment notify, refunds (request, query, the encrypted refund
//! notify), the daily trade bill and Beijing time. It has no web-framework or
//! database types, and of this crate it uses only [`crate::rt`] (the client's connections live
//! on the application runtime), so it could be published on its own with that one file; the
//! built-in sandbox is the server side of the same module.

pub mod bill;
pub mod cert;
pub mod client;
pub mod jsapi;
pub mod notify;
pub mod oauth;
pub mod refund;
pub mod sign;
pub mod time;
pub mod types;
pub mod v3;
pub mod xml;

use std::collections::BTreeMap;
use std::fmt;

use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;

pub use client::{Client, ClientConfig, Endpoint, RetryPolicy, SecApi, WxError};
pub use sign::{SignType, VerifyError};
pub use types::{ErrCode, RefundStatus, TradeState};

/// How long a prepay (`prepay_id` and `code_url`) stays valid after unifiedorder.
pub const PREPAY_VALIDITY: chrono::Duration = chrono::Duration::hours(2);

/// The fields of one message. A `BTreeMap` keeps them in byte-wise name order, which is the
/// order the signature needs, and makes a duplicate field impossible to represent.
pub type Fields = BTreeMap<String, String>;

/// A merchant's identity and API key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Merchant {
    pub appid: String,
    pub mch_id: String,
    pub key: SecretString,
}

impl fmt::Debug for Merchant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Merchant")
            .field("appid", &self.appid)
            .field("mch_id", &self.mch_id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

/// A 32-character `nonce_str` from the thread-local CSPRNG (ChaCha, seeded by the OS).
pub fn nonce_str() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merchant_debug_hides_the_key() {
        let m = Merchant {
            appid: "wx1".into(),
            mch_id: "1".into(),
            key: SecretString::from("super-secret-api-key-0123456789ab"),
        };
        let shown = format!("{m:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("wx1"));
    }

    #[test]
    fn nonces_are_32_alphanumerics_and_differ() {
        let a = nonce_str();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, nonce_str());
    }

    proptest! {
        /// Any field map, signed, encoded and decoded again, still verifies — and fails to once
        /// a value changes.
        #[test]
        fn sign_encode_decode_verify_round_trips(
            map in proptest::collection::btree_map(
                "[a-z_][a-z0-9_]{0,15}",
                "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x0d\\u{fffe}\\u{ffff}]{0,24}",
                1..24,
            ),
            hmac in any::<bool>(),
        ) {
            let key = SecretString::from("192006250b4c09247ec02edce69f6a2d");
            let sign_type = if hmac { SignType::HmacSha256 } else { SignType::Md5 };
            let mut map = map;
            map.remove("sign");
            let s = sign::sign(&map, &key, sign_type);
            map.insert("sign".into(), s);
            let decoded = xml::decode(xml::encode(&map).as_bytes()).unwrap();
            prop_assert_eq!(&decoded, &map);
            prop_assert_eq!(sign::verify(&decoded, &key, sign_type), Ok(()));

            let mut tampered = decoded;
            let victim = tampered.keys().find(|k| *k != "sign").cloned();
            if let Some(victim) = victim {
                tampered.get_mut(&victim).unwrap().push('x');
                prop_assert_eq!(sign::verify(&tampered, &key, sign_type), Err(VerifyError::Mismatch));
            }
        }
    }
}
