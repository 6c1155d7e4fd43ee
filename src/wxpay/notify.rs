//! The payment notify as the merchant receives it: strict parse, `return_code`, signature with
//! the algorithm the merchant expects, then typed fields; and the two answers WeChat understands.
//! Nothing in a notify is trusted before [`UnverifiedNotify::verify`] succeeds, except the
//! `out_trade_no` used to look up which algorithm to expect.

use secrecy::SecretString;

use super::sign::{self, SignType, VerifyError};
use super::types::{FieldError, PaymentNotify};
use super::xml::{self, XmlError};
use super::Fields;

/// The exact answer that stops WeChat's retries.
pub const SUCCESS_ANSWER: &str =
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// A `FAIL` answer with a reason (WeChat will deliver the notify again).
pub fn fail_answer(reason: &str) -> String {
    xml::encode_pairs([("return_code", "FAIL"), ("return_msg", reason)])
}

/// Why a notify was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("bad XML: {0}")]
    Xml(#[from] XmlError),
    #[error("return_code is not SUCCESS")]
    NotSuccess,
    #[error("sign_type {claimed:?} differs from the order's {expected}")]
    SignTypeMismatch { expected: SignType, claimed: String },
    #[error("signature: {0}")]
    Signature(#[from] VerifyError),
    #[error("fields: {0}")]
    Fields(#[from] FieldError),
}

/// A well-formed notify whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedNotify {
    fields: Fields,
}

/// Parses a notify body (strict XML, bounded) and checks `return_code`.
pub fn parse(body: &[u8]) -> Result<UnverifiedNotify, NotifyError> {
    let fields = xml::decode(body)?;
    if fields.get("return_code").map(String::as_str) != Some("SUCCESS") {
        return Err(NotifyError::NotSuccess);
    }
    Ok(UnverifiedNotify { fields })
}

impl UnverifiedNotify {
    /// The order the notify claims to be about — untrusted, for looking up the expected
    /// sign type only.
    pub fn claimed_out_trade_no(&self) -> Option<&str> {
        self.fields.get("out_trade_no").map(String::as_str)
    }

    /// The algorithm the sign's length implies (32 → MD5, 64 → HMAC-SHA256), for a notify
    /// whose order is unknown.
    pub fn sign_type_by_length(&self) -> Option<SignType> {
        match self.fields.get("sign").map(String::len) {
            Some(32) => Some(SignType::Md5),
            Some(64) => Some(SignType::HmacSha256),
            _ => None,
        }
    }

    /// Verifies the signature with `expected` (the algorithm recorded for the order; WeChat
    /// HMAC-signs notifies of HMAC orders even without a `sign_type` field), then reads the
    /// payment fields.
    pub fn verify(
        self,
        key: &SecretString,
        expected: SignType,
    ) -> Result<VerifiedNotify, NotifyError> {
        if let Some(claimed) = self.fields.get("sign_type") {
            if claimed != expected.as_str() {
                return Err(NotifyError::SignTypeMismatch {
                    expected,
                    claimed: claimed.chars().take(16).collect(),
                });
            }
        }
        sign::verify(&self.fields, key, expected)?;
        let notify = PaymentNotify::from_fields(&self.fields)?;
        Ok(VerifiedNotify {
            notify,
            fields: self.fields,
        })
    }
}

/// A notify whose signature verified: the typed payment plus every field as received (for a
/// durable record of exactly what WeChat said).
#[derive(Debug, Clone)]
pub struct VerifiedNotify {
    pub notify: PaymentNotify,
    pub fields: Fields,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wxpay::types::ResultCode;

    fn key() -> SecretString {
        SecretString::from("192006250b4c09247ec02edce69f6a2d")
    }

    fn notify_fields(sign_type: SignType, with_sign_type_field: bool) -> Fields {
        let mut f: Fields = [
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx2421b1c4370ec43b"),
            ("mch_id", "10000100"),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("out_trade_no", "1409811653"),
            ("transaction_id", "1004400740201409030005092168"),
            ("total_fee", "1"),
            ("cash_fee", "1"),
            ("fee_type", "CNY"),
            ("time_end", "20140903131540"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("trade_type", "NATIVE"),
            ("bank_type", "CFT"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if with_sign_type_field {
            f.insert("sign_type".into(), sign_type.as_str().into());
        }
        let s = sign::sign(&f, &key(), sign_type);
        f.insert("sign".into(), s);
        f
    }

    #[test]
    fn a_signed_notify_verifies_with_the_orders_sign_type() {
        for (sign_type, field) in [
            (SignType::Md5, false),
            (SignType::Md5, true),
            (SignType::HmacSha256, false),
            (SignType::HmacSha256, true),
        ] {
            let body = xml::encode(&notify_fields(sign_type, field));
            let parsed = parse(body.as_bytes()).unwrap();
            assert_eq!(parsed.claimed_out_trade_no(), Some("1409811653"));
            assert_eq!(parsed.sign_type_by_length(), Some(sign_type));
            let verified = parsed.verify(&key(), sign_type).unwrap();
            assert_eq!(verified.notify.result_code, ResultCode::Success);
            assert_eq!(verified.notify.total_fee, 1);
        }
    }

    #[test]
    fn an_md5_sign_on_an_hmac_order_is_refused() {
        let body = xml::encode(&notify_fields(SignType::Md5, false));
        let err = parse(body.as_bytes())
            .unwrap()
            .verify(&key(), SignType::HmacSha256)
            .unwrap_err();
        assert!(matches!(
            err,
            NotifyError::Signature(VerifyError::WrongLength { .. })
        ));
        let body = xml::encode(&notify_fields(SignType::Md5, true));
        let err = parse(body.as_bytes())
            .unwrap()
            .verify(&key(), SignType::HmacSha256)
            .unwrap_err();
        assert!(matches!(err, NotifyError::SignTypeMismatch { .. }));
    }

    #[test]
    fn tampering_and_return_fail_are_refused() {
        let mut f = notify_fields(SignType::Md5, false);
        f.insert("total_fee".into(), "100000".into());
        let err = parse(xml::encode(&f).as_bytes())
            .unwrap()
            .verify(&key(), SignType::Md5)
            .unwrap_err();
        assert_eq!(err, NotifyError::Signature(VerifyError::Mismatch));
        f.insert("return_code".into(), "FAIL".into());
        assert_eq!(
            parse(xml::encode(&f).as_bytes()).unwrap_err(),
            NotifyError::NotSuccess
        );
    }

    #[test]
    fn answers_are_wechats_xml() {
        assert_eq!(
            xml::decode(SUCCESS_ANSWER.as_bytes()).unwrap()["return_code"],
            "SUCCESS"
        );
        let fail = xml::decode(fail_answer("sign ]]> bad").as_bytes()).unwrap();
        assert_eq!(fail["return_code"], "FAIL");
        assert_eq!(fail["return_msg"], "sign ]]> bad");
    }
}
