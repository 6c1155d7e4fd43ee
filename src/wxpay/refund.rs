//! Refunds in WeChat Pay v2: the refund request (sent to `/secapi/pay/refund` over TLS with the
//! merchant's client certificate; `SUCCESS` there means *accepted*), the refund query's indexed
//! answer, and the refund notify — which is not signed: its content, `req_info`, is encrypted
//! with AES-256-ECB (PKCS#7 padding) under the lowercase hex MD5 of the API key, and whoever can
//! produce content that decrypts, unpads and parses holds the key.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use base64::Engine;
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};

use super::types::{fen, optional, optional_fen, required, FieldError, RefundStatus};
use super::xml::{self, Limits, XmlError};
use super::{Fields, Merchant};

/// The most refunds a query answer may list (WeChat lists up to 50 per order).
pub const MAX_REFUNDS: usize = 50;
/// The largest `req_info` accepted, in Base64 characters (real ones are under 2 KiB).
pub const MAX_REQ_INFO: usize = 8 * 1024;

/// A refund of (part of) a paid order. The client adds `appid`, `mch_id`, `nonce_str`,
/// `sign_type` and `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub out_trade_no: String,
    /// The merchant's number for this refund: the same number repeated is the same refund, so
    /// a retry can never refund twice.
    pub out_refund_no: String,
    /// The order's amount, fen.
    pub total_fee: i64,
    /// This refund's amount, fen.
    pub refund_fee: i64,
    pub refund_desc: Option<String>,
    pub notify_url: Option<String>,
}

impl RefundRequest {
    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        f.insert("out_refund_no".into(), self.out_refund_no.clone());
        f.insert("total_fee".into(), self.total_fee.to_string());
        f.insert("refund_fee".into(), self.refund_fee.to_string());
        if let Some(desc) = &self.refund_desc {
            f.insert("refund_desc".into(), desc.clone());
        }
        if let Some(url) = &self.notify_url {
            f.insert("notify_url".into(), url.clone());
        }
        f
    }

    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(RefundRequest {
            out_trade_no: required(f, "out_trade_no")?,
            out_refund_no: required(f, "out_refund_no")?,
            total_fee: fen(f, "total_fee")?,
            refund_fee: fen(f, "refund_fee")?,
            refund_desc: optional(f, "refund_desc"),
            notify_url: optional(f, "notify_url"),
        })
    }
}

/// WeChat's acceptance of a refund request (`result_code=SUCCESS`): the refund is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundResponse {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub transaction_id: Option<String>,
    /// WeChat's number for the refund.
    pub refund_id: String,
    pub refund_fee: i64,
    pub total_fee: i64,
}

impl RefundResponse {
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(RefundResponse {
            out_trade_no: required(f, "out_trade_no")?,
            out_refund_no: required(f, "out_refund_no")?,
            transaction_id: optional(f, "transaction_id"),
            refund_id: required(f, "refund_id")?,
            refund_fee: fen(f, "refund_fee")?,
            total_fee: fen(f, "total_fee")?,
        })
    }

    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        f.insert("out_refund_no".into(), self.out_refund_no.clone());
        if let Some(tid) = &self.transaction_id {
            f.insert("transaction_id".into(), tid.clone());
        }
        f.insert("refund_id".into(), self.refund_id.clone());
        f.insert("refund_fee".into(), self.refund_fee.to_string());
        f.insert("total_fee".into(), self.total_fee.to_string());
        f.insert("cash_fee".into(), self.total_fee.to_string());
        f
    }
}

/// One refund of an order, as a refund query lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundEntry {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: i64,
    pub status: RefundStatus,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time, once it succeeded.
    pub success_time: Option<String>,
}

/// The answer of `/pay/refundquery`: every refund of the order, in WeChat's indexed fields
/// (`refund_count`, then `out_refund_no_$n`, `refund_status_$n`, … for n from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundQueryResponse {
    pub out_trade_no: String,
    pub transaction_id: Option<String>,
    pub total_fee: i64,
    pub refunds: Vec<RefundEntry>,
}

impl RefundQueryResponse {
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let count: usize = required(f, "refund_count")?
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REFUNDS).contains(n))
            .ok_or(FieldError::Malformed("refund_count"))?;
        let mut refunds = Vec::with_capacity(count);
        for n in 0..count {
            let indexed = |name: &str| format!("{name}_{n}");
            let get = |name: &'static str| {
                f.get(&indexed(name))
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .ok_or(FieldError::Missing(name))
            };
            let refund_fee = get("refund_fee")?;
            refunds.push(RefundEntry {
                out_refund_no: get("out_refund_no")?,
                refund_id: get("refund_id")?,
                refund_fee: refund_fee
                    .parse()
                    .ok()
                    .filter(|fee: &i64| *fee > 0 && refund_fee.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or(FieldError::Malformed("refund_fee"))?,
                status: RefundStatus::from(get("refund_status")?.as_str()),
                success_time: f
                    .get(&indexed("refund_success_time"))
                    .filter(|v| !v.is_empty())
                    .cloned(),
            });
        }
        Ok(RefundQueryResponse {
            out_trade_no: required(f, "out_trade_no")?,
            transaction_id: optional(f, "transaction_id"),
            total_fee: fen(f, "total_fee")?,
            refunds,
        })
    }

    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        if let Some(tid) = &self.transaction_id {
            f.insert("transaction_id".into(), tid.clone());
        }
        f.insert("total_fee".into(), self.total_fee.to_string());
        f.insert("cash_fee".into(), self.total_fee.to_string());
        f.insert("refund_count".into(), self.refunds.len().to_string());
        for (n, r) in self.refunds.iter().enumerate() {
            f.insert(format!("out_refund_no_{n}"), r.out_refund_no.clone());
            f.insert(format!("refund_id_{n}"), r.refund_id.clone());
            f.insert(format!("refund_fee_{n}"), r.refund_fee.to_string());
            f.insert(format!("refund_status_{n}"), r.status.as_str().into());
            if let Some(t) = &r.success_time {
                f.insert(format!("refund_success_time_{n}"), t.clone());
            }
        }
        f
    }
}

/// What a refund notify says, once decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundNotice {
    pub out_trade_no: String,
    pub transaction_id: String,
    pub out_refund_no: String,
    pub refund_id: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    /// What actually went back (less than `refund_fee` when coupons paid part).
    pub settlement_refund_fee: Option<i64>,
    pub status: RefundStatus,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing time, when it succeeded.
    pub success_time: Option<String>,
    /// Where the money went (`支付用户零钱`, a bank card, …).
    pub refund_recv_accout: Option<String>,
    /// The order's amount less coupons (`settlement_total_fee`).
    pub settlement_total_fee: Option<i64>,
    /// Which merchant account the money came from (`REFUND_SOURCE_RECHARGE_FUNDS`, …).
    pub refund_account: Option<String>,
    /// Who asked for it (`API`, `VENDOR_PLATFORM`: by hand in the merchant platform).
    pub refund_request_source: Option<String>,
}

impl RefundNotice {
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        Ok(RefundNotice {
            out_trade_no: required(f, "out_trade_no")?,
            transaction_id: required(f, "transaction_id")?,
            out_refund_no: required(f, "out_refund_no")?,
            refund_id: required(f, "refund_id")?,
            total_fee: fen(f, "total_fee")?,
            refund_fee: fen(f, "refund_fee")?,
            settlement_refund_fee: optional_fen(f, "settlement_refund_fee")?,
            status: RefundStatus::from(required(f, "refund_status")?.as_str()),
            success_time: optional(f, "success_time"),
            // WeChat's own spelling.
            refund_recv_accout: optional(f, "refund_recv_accout"),
            settlement_total_fee: optional_fen(f, "settlement_total_fee")?,
            refund_account: optional(f, "refund_account"),
            refund_request_source: optional(f, "refund_request_source"),
        })
    }

    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        f.insert("transaction_id".into(), self.transaction_id.clone());
        f.insert("out_refund_no".into(), self.out_refund_no.clone());
        f.insert("refund_id".into(), self.refund_id.clone());
        f.insert("total_fee".into(), self.total_fee.to_string());
        f.insert("refund_fee".into(), self.refund_fee.to_string());
        if let Some(fee) = self.settlement_refund_fee {
            f.insert("settlement_refund_fee".into(), fee.to_string());
        }
        f.insert("refund_status".into(), self.status.as_str().into());
        if let Some(t) = &self.success_time {
            f.insert("success_time".into(), t.clone());
        }
        if let Some(a) = &self.refund_recv_accout {
            f.insert("refund_recv_accout".into(), a.clone());
        }
        if let Some(fee) = self.settlement_total_fee {
            f.insert("settlement_total_fee".into(), fee.to_string());
        }
        if let Some(a) = &self.refund_account {
            f.insert("refund_account".into(), a.clone());
        }
        if let Some(s) = &self.refund_request_source {
            f.insert("refund_request_source".into(), s.clone());
        }
        f
    }
}

/// Why a refund notify was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundNotifyError {
    #[error("bad XML: {0}")]
    Xml(#[from] XmlError),
    #[error("return_code is not SUCCESS")]
    NotSuccess,
    #[error("appid or mch_id is not this merchant's")]
    WrongMerchant,
    #[error("req_info is missing or too long")]
    NoReqInfo,
    #[error("req_info is not Base64")]
    NotBase64,
    /// Wrong key, or not encrypted content at all: a forgery or a misconfiguration.
    #[error("req_info does not decrypt with this merchant's key")]
    Undecryptable,
    #[error("decrypted content: {0}")]
    Content(XmlError),
    #[error("fields: {0}")]
    Fields(#[from] FieldError),
}

/// The notify's AES-256 key: the lowercase hex MD5 of the API key, as 32 ASCII bytes.
fn notify_key(api_key: &SecretString) -> [u8; 32] {
    let digest = Md5::digest(api_key.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(hex::encode(digest).as_bytes());
    key
}

/// Encrypts a notice's content as WeChat does: XML under `<root>`, AES-256-ECB with PKCS#7, in
/// Base64 (the sandbox's side).
pub fn encrypt_req_info(content: &Fields, api_key: &SecretString) -> String {
    let mut plain = xml::encode(content);
    // The content's root is `root`, not `xml`.
    plain = format!(
        "<root>{}</root>",
        plain
            .strip_prefix("<xml>")
            .and_then(|p| p.strip_suffix("</xml>"))
            .unwrap_or(&plain)
    );
    let cipher = ecb::Encryptor::<aes::Aes256>::new(&notify_key(api_key).into())
        .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(cipher)
}

/// Decrypts `req_info` to its fields.
pub fn decrypt_req_info(
    req_info: &str,
    api_key: &SecretString,
) -> Result<Fields, RefundNotifyError> {
    if req_info.is_empty() || req_info.len() > MAX_REQ_INFO {
        return Err(RefundNotifyError::NoReqInfo);
    }
    let cipher = base64::engine::general_purpose::STANDARD
        .decode(req_info.trim())
        .map_err(|_| RefundNotifyError::NotBase64)?;
    if cipher.is_empty() || cipher.len() % 16 != 0 {
        return Err(RefundNotifyError::Undecryptable);
    }
    let plain = ecb::Decryptor::<aes::Aes256>::new(&notify_key(api_key).into())
        .decrypt_padded_vec_mut::<Pkcs7>(&cipher)
        .map_err(|_| RefundNotifyError::Undecryptable)?;
    xml::decode_with(
        &plain,
        Limits {
            root: "root",
            max_bytes: MAX_REQ_INFO,
            ..Limits::DEFAULT
        },
    )
    .map_err(RefundNotifyError::Content)
}

/// Parses a refund notify for `merchant`: strict outer XML, `return_code`, the merchant's own
/// appid and mch_id, then the decrypted content's fields.
pub fn parse_refund_notify(
    body: &[u8],
    merchant: &Merchant,
) -> Result<RefundNotice, RefundNotifyError> {
    let outer = xml::decode(body)?;
    if outer.get("return_code").map(String::as_str) != Some("SUCCESS") {
        return Err(RefundNotifyError::NotSuccess);
    }
    if outer.get("appid") != Some(&merchant.appid) || outer.get("mch_id") != Some(&merchant.mch_id)
    {
        return Err(RefundNotifyError::WrongMerchant);
    }
    let req_info = outer.get("req_info").ok_or(RefundNotifyError::NoReqInfo)?;
    let content = decrypt_req_info(req_info, &merchant.key)?;
    Ok(RefundNotice::from_fields(&content)?)
}

/// A refund notify's body as WeChat sends it (the sandbox's side).
pub fn refund_notify_body(merchant: &Merchant, notice: &RefundNotice, nonce_str: &str) -> String {
    let req_info = encrypt_req_info(&notice.to_fields(), &merchant.key);
    xml::encode_pairs([
        ("return_code", "SUCCESS"),
        ("appid", merchant.appid.as_str()),
        ("mch_id", merchant.mch_id.as_str()),
        ("nonce_str", nonce_str),
        ("req_info", req_info.as_str()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant() -> Merchant {
        Merchant {
            appid: "wx8888888888888888".into(),
            mch_id: "1900000109".into(),
            key: SecretString::from("8934e7d15453e97507ef794cf7b0519d"),
        }
    }

    fn notice() -> RefundNotice {
        RefundNotice {
            out_trade_no: "20261130120000123456789012345".into(),
            transaction_id: "4200000123202611301234567890".into(),
            out_refund_no: "R20261130120000123456789012".into(),
            refund_id: "50000000012026113012345678901".into(),
            total_fee: 29_500,
            refund_fee: 12_800,
            settlement_refund_fee: Some(12_800),
            status: RefundStatus::Success,
            success_time: Some("2026-11-30 12:05:00".into()),
            refund_recv_accout: Some("支付用户零钱".into()),
            settlement_total_fee: Some(29_500),
            refund_account: Some("REFUND_SOURCE_UNSETTLED_FUNDS".into()),
            refund_request_source: Some("API".into()),
        }
    }

    #[test]
    fn a_notify_round_trips_and_a_wrong_key_changes_nothing() {
        let body = refund_notify_body(&merchant(), &notice(), "n0nce");
        assert_eq!(
            parse_refund_notify(body.as_bytes(), &merchant()),
            Ok(notice())
        );
        let mut other = merchant();
        other.key = SecretString::from("0123456789abcdef0123456789abcdef");
        let forged = refund_notify_body(&other, &notice(), "n0nce");
        assert_eq!(
            parse_refund_notify(forged.as_bytes(), &merchant()),
            Err(RefundNotifyError::Undecryptable)
        );
        let mut elsewhere = merchant();
        elsewhere.mch_id = "1900000110".into();
        assert_eq!(
            parse_refund_notify(body.as_bytes(), &elsewhere),
            Err(RefundNotifyError::WrongMerchant)
        );
        for bad in ["", "not base64!", "AAAA", &"A".repeat(MAX_REQ_INFO + 4)] {
            assert!(decrypt_req_info(bad, &merchant().key).is_err(), "{bad:.20}");
        }
    }

    /// The same encryption as OpenSSL's `aes-256-ecb` with PKCS#7 padding, key = the hex MD5
    /// of the API key: a vector made with `openssl enc`, independently of this code.
    #[test]
    fn req_info_decrypts_an_openssl_made_vector() {
        // key=$(printf %s 8934e7d15453e97507ef794cf7b0519d | md5sum | cut -c1-32)
        // printf '<root><out_refund_no><![CDATA[R1]]></out_refund_no><refund_status>…</root>' \
        //   | openssl enc -aes-256-ecb -K "$(printf %s "$key" | xxd -p -c 64)" | base64 -w0
        let vector = include_str!("../../tests/vectors/refund_req_info.txt").trim();
        let fields = decrypt_req_info(vector, &merchant().key).unwrap();
        assert_eq!(fields.get("out_refund_no").map(String::as_str), Some("R1"));
    }

    #[test]
    fn a_refund_query_reads_its_indexed_refunds() {
        let answer = RefundQueryResponse {
            out_trade_no: "o1".into(),
            transaction_id: Some("t1".into()),
            total_fee: 29_500,
            refunds: vec![
                RefundEntry {
                    out_refund_no: "R1".into(),
                    refund_id: "W1".into(),
                    refund_fee: 100,
                    status: RefundStatus::Success,
                    success_time: Some("2026-11-30 12:05:00".into()),
                },
                RefundEntry {
                    out_refund_no: "R2".into(),
                    refund_id: "W2".into(),
                    refund_fee: 200,
                    status: RefundStatus::Processing,
                    success_time: None,
                },
            ],
        };
        let fields = answer.to_fields();
        assert_eq!(fields["refund_status_1"], "PROCESSING");
        assert_eq!(RefundQueryResponse::from_fields(&fields), Ok(answer));
        let mut broken = fields.clone();
        broken.insert("refund_count".into(), "3".into());
        assert_eq!(
            RefundQueryResponse::from_fields(&broken),
            Err(FieldError::Missing("refund_fee"))
        );
        broken.insert("refund_count".into(), "100".into());
        assert!(RefundQueryResponse::from_fields(&broken).is_err());
    }
}
