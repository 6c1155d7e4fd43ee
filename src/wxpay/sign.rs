//! Request and response signatures (wxpay-v2.md, "Signing"): MD5 and HMAC-SHA256 over the sorted
//! `k=v&…&key=API_KEY` string. Pure functions over field maps; knows nothing of HTTP or storage.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Fields;

/// The two signature algorithms of WeChat Pay v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignType {
    Md5,
    HmacSha256,
}

impl SignType {
    /// The wire name, as sent in `sign_type` and stored with an order.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Length of the upper-case hex signature this algorithm produces.
    pub fn sign_len(self) -> usize {
        match self {
            SignType::Md5 => 32,
            SignType::HmacSha256 => 64,
        }
    }

    /// The algorithm a received message claims: its `sign_type` field, and MD5 when absent
    /// (WeChat's default). `None` for an unknown name.
    pub fn of_message(fields: &Fields) -> Option<SignType> {
        match fields.get("sign_type") {
            None => Some(SignType::Md5),
            Some(name) => name.parse().ok(),
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `sign_type` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sign type {0:?} (expected MD5 or HMAC-SHA256)")]
pub struct UnknownSignType(pub String);

impl FromStr for SignType {
    type Err = UnknownSignType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "MD5" => Ok(SignType::Md5),
            "HMAC-SHA256" => Ok(SignType::HmacSha256),
            other => Err(UnknownSignType(other.to_owned())),
        }
    }
}

/// Feeds `k1=v1&k2=v2…&key=KEY` into `sink` without building the string: fields in byte-wise key
/// order (the map's order), `sign` and empty values skipped, values raw.
fn feed_sign_string(fields: &Fields, key: &str, mut sink: impl FnMut(&[u8])) {
    for (name, value) in fields {
        if name == "sign" || value.is_empty() {
            continue;
        }
        sink(name.as_bytes());
        sink(b"=");
        sink(value.as_bytes());
        sink(b"&");
    }
    sink(b"key=");
    sink(key.as_bytes());
}

/// Signs `fields` (every field but `sign`, empty values skipped) with the API key; upper-case hex.
pub fn sign(fields: &Fields, key: &SecretString, sign_type: SignType) -> String {
    let key = key.expose_secret();
    match sign_type {
        SignType::Md5 => {
            let mut hasher = Md5::new();
            feed_sign_string(fields, key, |bytes| hasher.update(bytes));
            hex::encode_upper(hasher.finalize())
        }
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                .expect("HMAC accepts keys of any length");
            feed_sign_string(fields, key, |bytes| mac.update(bytes));
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the message carries no sign")]
    Missing,
    #[error("the sign has {got} characters, {expected} expected for {sign_type}")]
    WrongLength {
        sign_type: SignType,
        expected: usize,
        got: usize,
    },
    #[error("the sign does not match")]
    Mismatch,
}

/// Verifies the `sign` of a received message over whatever fields arrived, with `sign_type`
/// (the caller decides which algorithm it expects — for a notify, the one recorded with the order).
/// The comparison is constant-time; upper- and lower-case hex are both accepted.
pub fn verify(fields: &Fields, key: &SecretString, sign_type: SignType) -> Result<(), VerifyError> {
    let received = fields.get("sign").ok_or(VerifyError::Missing)?;
    if received.len() != sign_type.sign_len() {
        return Err(VerifyError::WrongLength {
            sign_type,
            expected: sign_type.sign_len(),
            got: received.len(),
        });
    }
    let expected = sign(fields, key, sign_type);
    let received = received.to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(received.as_bytes())) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key() -> SecretString {
        SecretString::from(KEY)
    }

    fn row1() -> Fields {
        fields(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ])
    }

    fn row2() -> Fields {
        fields(&[("test1", "test1"), ("test2", "test2")])
    }

    #[test]
    fn sign_string_matches_the_documented_one() {
        let mut s = Vec::new();
        feed_sign_string(&row1(), KEY, |b| s.extend_from_slice(b));
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
    }

    #[test]
    fn vector_row_1_md5_and_hmac() {
        assert_eq!(
            sign(&row1(), &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        assert_eq!(
            sign(&row1(), &key(), SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn vector_row_2_md5_and_hmac() {
        assert_eq!(
            sign(&row2(), &key(), SignType::Md5),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
        assert_eq!(
            sign(&row2(), &key(), SignType::HmacSha256),
            "EDAC6D70D2FDF5A2382F8204FC96A1918017E46ACC5297F565ED1A7610ACF659"
        );
    }

    #[test]
    fn sign_and_empty_fields_are_not_signed_but_null_is() {
        let mut with_extras = row1();
        with_extras.insert("sign".into(), "whatever".into());
        with_extras.insert("attach".into(), String::new());
        assert_eq!(
            sign(&with_extras, &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
        with_extras.insert("attach".into(), "null".into());
        assert_ne!(
            sign(&with_extras, &key(), SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn verify_accepts_the_vectors_and_any_extra_fields_that_were_signed() {
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let mut msg = row1();
            msg.insert("coupon_type_0".into(), "CASH".into());
            let s = sign(&msg, &key(), sign_type);
            msg.insert("sign".into(), s.to_ascii_lowercase());
            assert_eq!(verify(&msg, &key(), sign_type), Ok(()));
        }
    }

    #[test]
    fn verify_rejects_missing_wrong_length_tampered_and_wrong_key() {
        let mut msg = row1();
        assert_eq!(
            verify(&msg, &key(), SignType::Md5),
            Err(VerifyError::Missing)
        );
        msg.insert("sign".into(), sign(&msg, &key(), SignType::Md5));
        // An MD5 sign presented where HMAC is expected fails on length before any hashing.
        assert!(matches!(
            verify(&msg, &key(), SignType::HmacSha256),
            Err(VerifyError::WrongLength { got: 32, .. })
        ));
        let other_key = SecretString::from("0".repeat(32));
        assert_eq!(
            verify(&msg, &other_key, SignType::Md5),
            Err(VerifyError::Mismatch)
        );
        msg.insert("body".into(), "tampered".into());
        assert_eq!(
            verify(&msg, &key(), SignType::Md5),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn chinese_body_is_signed_over_utf8_bytes() {
        let msg = fields(&[("body", "腾讯充值中心-QQ会员充值"), ("total_fee", "1")]);
        let mut expected = Md5::new();
        expected.update("body=腾讯充值中心-QQ会员充值&total_fee=1&key=".as_bytes());
        expected.update(KEY.as_bytes());
        assert_eq!(
            sign(&msg, &key(), SignType::Md5),
            hex::encode_upper(expected.finalize())
        );
    }

    #[test]
    fn sign_type_names_round_trip() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            assert_eq!(t.as_str().parse::<SignType>(), Ok(t));
        }
        assert!("SHA1".parse::<SignType>().is_err());
        assert_eq!(SignType::of_message(&Fields::new()), Some(SignType::Md5));
    }
}
