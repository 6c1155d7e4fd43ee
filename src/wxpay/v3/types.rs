//! The JSON messages of v3's Native flow, refunds, notifies and the trade bill, named and shaped
//! as WeChat Pay's reference pages give them. Amounts are integer fen. Answers are read leniently
//! (WeChat adds fields over time; unknown ones are ignored); requests leave out what is unset.

use serde::{Deserialize, Serialize};

/// `POST /v3/pay/transactions/native`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeRequest {
    pub appid: String,
    pub mchid: String,
    /// The goods' description (at most 127 characters).
    pub description: String,
    /// 6–32 of `[A-Za-z0-9_|*-]`.
    pub out_trade_no: String,
    /// RFC 3339 with the offset, `2026-12-01T10:34:56+08:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_expire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    pub notify_url: String,
    pub amount: OrderAmount,
}

/// An order's amount as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAmount {
    /// Fen.
    pub total: i64,
    #[serde(default = "cny")]
    pub currency: String,
}

fn cny() -> String {
    "CNY".to_owned()
}

impl OrderAmount {
    pub fn cny(total: i64) -> Self {
        Self {
            total,
            currency: cny(),
        }
    }
}

/// The answer to a Native order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeAnswer {
    /// `weixin://wxpay/bizpayurl?pr=…`, for the QR code; valid for 2 hours.
    pub code_url: String,
}

/// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` (answered `204`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRequest {
    pub mchid: String,
}

/// A transaction's state (`trade_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TradeState {
    Success,
    Refund,
    #[serde(rename = "NOTPAY")]
    NotPay,
    Closed,
    Revoked,
    #[serde(rename = "USERPAYING")]
    UserPaying,
    #[serde(rename = "PAYERROR")]
    PayError,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::NotPay => "NOTPAY",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::UserPaying => "USERPAYING",
            TradeState::PayError => "PAYERROR",
        }
    }

    /// Money was taken: `SUCCESS`, or `REFUND` (paid, then refunded in part or whole).
    pub fn is_paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

/// A transaction: the answer to a query, and the plaintext of a `TRANSACTION.SUCCESS` notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    /// WeChat's number, once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// `NATIVE`, `JSAPI`, `MWEB`, …; absent before payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_type: Option<String>,
    pub trade_state: TradeState,
    #[serde(default)]
    pub trade_state_desc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// RFC 3339, once paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    #[serde(default)]
    pub openid: String,
}

/// What a transaction came to. Before payment WeChat may send only some of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionAmount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_currency: Option<String>,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_trade_no: Option<String>,
    /// The idempotency key: the same number is the same refund.
    pub out_refund_no: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    pub amount: RefundRequestAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequestAmount {
    /// Fen to give back.
    pub refund: i64,
    /// Fen the order was paid.
    pub total: i64,
    #[serde(default = "cny")]
    pub currency: String,
}

/// A refund's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Success,
    Closed,
    Processing,
    Abnormal,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Closed => "CLOSED",
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Abnormal => "ABNORMAL",
        }
    }
}

/// A refund: the answer to a refund request and to a refund query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub out_refund_no: String,
    pub transaction_id: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub channel: String,
    #[serde(default)]
    pub user_received_account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default)]
    pub create_time: String,
    pub status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funds_account: Option<String>,
    pub amount: RefundAmount,
}

/// What a refund came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default)]
    pub payer_total: i64,
    #[serde(default)]
    pub payer_refund: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_refund: Option<i64>,
    #[serde(default = "cny")]
    pub currency: String,
}

/// The plaintext of a `REFUND.SUCCESS` / `REFUND.ABNORMAL` / `REFUND.CLOSED` notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    pub mchid: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_status: RefundStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default)]
    pub user_received_account: String,
    pub amount: RefundNoticeAmount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNoticeAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default)]
    pub payer_total: i64,
    #[serde(default)]
    pub payer_refund: i64,
}

/// A notify's envelope: signed by WeChat Pay, its `resource` sealed with the APIv3 key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub id: String,
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`.
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    #[serde(default)]
    pub summary: String,
    pub resource: Resource,
}

/// The sealed part of a notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: String,
    /// `transaction` or `refund`.
    #[serde(default)]
    pub original_type: String,
    pub nonce: String,
}

/// The algorithm of every notify's resource.
pub const AEAD_AES_256_GCM: &str = "AEAD_AES_256_GCM";

/// `GET /v3/bill/tradebill?bill_date=…`: where the bill is, and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeBillAnswer {
    /// `SHA1`.
    pub hash_type: String,
    pub hash_value: String,
    /// A signed GET on this URL (valid 5 minutes) brings the file.
    pub download_url: String,
}

/// The body of every refusal (HTTP 4xx/5xx): `{"code":"PARAM_ERROR","message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of WeChat's reference pages, as published, read and written back.
    #[test]
    fn wechats_examples_read() {
        let query = r#"{"amount":{"currency":"CNY","payer_currency":"CNY","payer_total":1,"total":1},"appid":"wxdace645e0bc2cXXX","attach":"","bank_type":"OTHERS","mchid":"1900006XXX","out_trade_no":"44_2126281063_5504","payer":{"openid":"o4GgauJP_mgWEWictzA15WT15XXX"},"promotion_detail":[],"success_time":"2021-03-22T10:29:05+08:00","trade_state":"SUCCESS","trade_state_desc":"支付成功","trade_type":"JSAPI","transaction_id":"4200000891202103228088184743"}"#;
        let t: Transaction = serde_json::from_str(query).unwrap();
        assert_eq!(t.trade_state, TradeState::Success);
        assert_eq!(t.amount.as_ref().unwrap().payer_total, Some(1));
        assert_eq!(t.payer.unwrap().openid, "o4GgauJP_mgWEWictzA15WT15XXX");

        let unpaid = r#"{"amount":{"payer_currency":"CNY","total":1},"appid":"wxdace645e0bc2cXXX","mchid":"1900006XXX","out_trade_no":"44_2126281063_5504","promotion_detail":[],"scene_info":{"device_id":""},"trade_state":"NOTPAY","trade_state_desc":"订单未支付"}"#;
        let t: Transaction = serde_json::from_str(unpaid).unwrap();
        assert_eq!(
            (t.trade_state, t.transaction_id),
            (TradeState::NotPay, None)
        );

        let notify = r#"{"id":"EV-2018022511223320873","create_time":"2015-05-20T13:29:35+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"","associated_data":"","nonce":""}}"#;
        let n: Notify = serde_json::from_str(notify).unwrap();
        assert_eq!(n.event_type, "TRANSACTION.SUCCESS");
        assert_eq!(n.resource.algorithm, AEAD_AES_256_GCM);

        let refund = r#"{"refund_id":"50000000382019052709732678859","out_refund_no":"1217752501201407033233368018","transaction_id":"1217752501201407033233368018","out_trade_no":"1217752501201407033233368018","channel":"ORIGINAL","user_received_account":"招商银行信用卡0403","success_time":"2020-12-01T16:18:12+08:00","create_time":"2020-12-01T16:18:12+08:00","status":"SUCCESS","funds_account":"UNSETTLED","amount":{"total":100,"refund":100,"from":[],"payer_total":90,"payer_refund":90,"settlement_refund":100,"settlement_total":100,"discount_refund":10,"currency":"CNY","refund_fee":0},"promotion_detail":[]}"#;
        let r: Refund = serde_json::from_str(refund).unwrap();
        assert_eq!((r.status, r.amount.refund), (RefundStatus::Success, 100));

        let error = r#"{"code":"PARAM_ERROR","detail":{"field":"/amount/currency","value":"XYZ","issue":"Currency code is invalid","location":"body"},"message":"参数错误"}"#;
        let e: ErrorAnswer = serde_json::from_str(error).unwrap();
        assert_eq!(e.code, "PARAM_ERROR");
    }

    #[test]
    fn requests_leave_out_what_is_unset() {
        let request = NativeRequest {
            appid: "wxd678efh567hg6787".into(),
            mchid: "1230000109".into(),
            description: "Image形象店-深圳腾大-QQ公仔".into(),
            out_trade_no: "1217752501201407033233368018".into(),
            time_expire: None,
            attach: None,
            notify_url: "https://www.weixin.qq.com/wxpay/pay.php".into(),
            amount: OrderAmount::cny(100),
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php","amount":{"total":100,"currency":"CNY"}}"#
        );
        assert_eq!(
            serde_json::from_str::<TradeState>("\"USERPAYING\"").unwrap(),
            TradeState::UserPaying
        );
        assert!(serde_json::from_str::<TradeState>("\"PAID\"").is_err());
        for state in [
            TradeState::Success,
            TradeState::Refund,
            TradeState::NotPay,
            TradeState::Closed,
            TradeState::Revoked,
            TradeState::UserPaying,
            TradeState::PayError,
        ] {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
    }
}
