//! JSAPI payment inside WeChat's browser: the parameters of `getBrandWCPayRequest`, signed for
//! the page. WeChat's rule: the five fields `appId`, `timeStamp`, `nonceStr`, `package`
//! (`prepay_id=…`) and `signType`, sorted by name, joined as `k=v&…&key=API_KEY`, hashed with
//! the sign type (MD5, or HMAC-SHA256 keyed with the API key), upper-case hex: the same rule as
//! every v2 message, over these names. The bridge's `get_brand_wcpay_request:ok` is only a
//! hint; the payment is known by notify or query.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{sign, Fields, SignType};

/// What the page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`, field names as
/// WeChat spells them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrandWcPayRequest {
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds, as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=…`.
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl BrandWcPayRequest {
    /// The signed parameters for `prepay_id`, as of `time_stamp` with `nonce_str`.
    pub fn new(
        app_id: &str,
        prepay_id: &str,
        key: &SecretString,
        sign_type: SignType,
        time_stamp: i64,
        nonce_str: &str,
    ) -> Self {
        let mut request = BrandWcPayRequest {
            app_id: app_id.to_owned(),
            time_stamp: time_stamp.to_string(),
            nonce_str: nonce_str.to_owned(),
            package: format!("prepay_id={prepay_id}"),
            sign_type: sign_type.as_str().to_owned(),
            pay_sign: String::new(),
        };
        request.pay_sign = sign::sign(&request.signed_fields(), key, sign_type);
        request
    }

    /// The fields `paySign` covers.
    pub fn signed_fields(&self) -> Fields {
        [
            ("appId", &self.app_id),
            ("timeStamp", &self.time_stamp),
            ("nonceStr", &self.nonce_str),
            ("package", &self.package),
            ("signType", &self.sign_type),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    /// The prepay this request pays, from `package`.
    pub fn prepay_id(&self) -> Option<&str> {
        self.package.strip_prefix("prepay_id=")
    }

    /// Whether `paySign` is right for the other fields under `key`.
    pub fn verify(&self, key: &SecretString) -> bool {
        let Ok(sign_type) = self.sign_type.parse::<SignType>() else {
            return false;
        };
        let expected = sign::sign(&self.signed_fields(), key, sign_type);
        subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), self.pay_sign.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use md5::{Digest, Md5};
    use secrecy::ExposeSecret;

    /// WeChat's rule written out by hand, independently of [`sign::sign`]: the string is
    /// spelled literally in name order (`appId` < `nonceStr` < `package` < `signType` <
    /// `timeStamp` byte-wise).
    fn by_hand(r: &BrandWcPayRequest, key: &str) -> String {
        let text = format!(
            "appId={}&nonceStr={}&package={}&signType={}&timeStamp={}&key={}",
            r.app_id, r.nonce_str, r.package, r.sign_type, r.time_stamp, key
        );
        match r.sign_type.as_str() {
            "MD5" => hex::encode_upper(Md5::digest(text.as_bytes())),
            _ => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
                mac.update(text.as_bytes());
                hex::encode_upper(mac.finalize().into_bytes())
            }
        }
    }

    #[test]
    fn pay_sign_follows_wechats_rule_for_both_sign_types() {
        let key = SecretString::from("192006250b4c09247ec02edce69f6a2d".to_owned());
        for sign_type in [SignType::Md5, SignType::HmacSha256] {
            let r = BrandWcPayRequest::new(
                "wx2421b1c4370ec43b",
                "wx20141226163005f1e1a5e2c10000000001",
                &key,
                sign_type,
                1_414_561_699,
                "e61463f8efa94090b1f366cccfbbb444",
            );
            assert_eq!(r.package, "prepay_id=wx20141226163005f1e1a5e2c10000000001");
            assert_eq!(r.time_stamp, "1414561699");
            assert_eq!(r.pay_sign, by_hand(&r, key.expose_secret()));
            assert!(r.verify(&key));
            let json = serde_json::to_value(&r).unwrap();
            for name in [
                "appId",
                "timeStamp",
                "nonceStr",
                "package",
                "signType",
                "paySign",
            ] {
                assert!(json.get(name).is_some(), "{name} missing from {json}");
            }
        }
    }

    #[test]
    fn a_changed_field_or_key_does_not_verify() {
        let key = SecretString::from("192006250b4c09247ec02edce69f6a2d".to_owned());
        let r = BrandWcPayRequest::new("wxa", "wx1", &key, SignType::Md5, 1, "n");
        let mut tampered = r.clone();
        tampered.package = "prepay_id=wx2".into();
        assert!(!tampered.verify(&key));
        let other = SecretString::from("0".repeat(32));
        assert!(!r.verify(&other));
    }
}
