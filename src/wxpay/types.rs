//! Typed messages of the Native flow: unifiedorder, orderquery, closeorder and the payment
//! notify, with their conversions to and from [`Fields`]. Enumerated wire values keep values
//! they do not know (`Other`), because WeChat adds codes over time.

use super::Fields;

/// Defines a wire enum: known values as variants, anything else kept in `Other`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know, kept as received.
            Other(String),
        }

        impl $name {
            /// The value as WeChat writes it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)+
                    $name::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($wire => $name::$variant,)+
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// `trade_state` of an order query.
    TradeState {
        Success = "SUCCESS",
        Refund = "REFUND",
        NotPay = "NOTPAY",
        Closed = "CLOSED",
        Revoked = "REVOKED",
        UserPaying = "USERPAYING",
        PayError = "PAYERROR",
    }
}

wire_enum! {
    /// `err_code` of a business failure (`result_code=FAIL`).
    ErrCode {
        InvalidRequest = "INVALID_REQUEST",
        NoAuth = "NOAUTH",
        NotEnough = "NOTENOUGH",
        OrderPaid = "ORDERPAID",
        OrderClosed = "ORDERCLOSED",
        OrderNotExist = "ORDERNOTEXIST",
        SystemError = "SYSTEMERROR",
        AppidNotExist = "APPID_NOT_EXIST",
        MchidNotExist = "MCHID_NOT_EXIST",
        AppidMchidNotMatch = "APPID_MCHID_NOT_MATCH",
        LackParams = "LACK_PARAMS",
        OutTradeNoUsed = "OUT_TRADE_NO_USED",
        SignError = "SIGNERROR",
        XmlFormatError = "XML_FORMAT_ERROR",
        RequirePostMethod = "REQUIRE_POST_METHOD",
        PostDataEmpty = "POST_DATA_EMPTY",
        NotUtf8 = "NOT_UTF8",
        BankError = "BANKERROR",
        // The refund's and the refund query's.
        Error = "ERROR",
        UserAccountAbnormal = "USER_ACCOUNT_ABNORMAL",
        FrequencyLimited = "FREQUENCY_LIMITED",
        RefundNotExist = "REFUNDNOTEXIST",
        CertError = "CERT_ERROR",
    }
}

wire_enum! {
    /// Where a refund stands (`refund_status` of a refund query or notify).
    RefundStatus {
        Success = "SUCCESS",
        Processing = "PROCESSING",
        // Closed without refunding.
        RefundClose = "REFUNDCLOSE",
        // Failed into an abnormal account: the merchant resolves it in the merchant platform.
        Change = "CHANGE",
    }
}

/// A received message lacks a field or carries a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("field {0} is malformed")]
    Malformed(&'static str),
}

pub(super) fn required(fields: &Fields, name: &'static str) -> Result<String, FieldError> {
    match fields.get(name) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(FieldError::Missing(name)),
    }
}

pub(super) fn optional(fields: &Fields, name: &str) -> Option<String> {
    fields.get(name).filter(|v| !v.is_empty()).cloned()
}

pub(super) fn fen(fields: &Fields, name: &'static str) -> Result<i64, FieldError> {
    let text = required(fields, name)?;
    parse_fen(&text).ok_or(FieldError::Malformed(name))
}

pub(super) fn optional_fen(fields: &Fields, name: &'static str) -> Result<Option<i64>, FieldError> {
    optional(fields, name)
        .map(|text| parse_fen(&text).ok_or(FieldError::Malformed(name)))
        .transpose()
}

/// An amount in fen as WeChat writes it: plain decimal digits, no sign, no leading `+`.
fn parse_fen(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A unified order: Native (QR code), H5 (`MWEB`, a phone browser outside WeChat) or JSAPI
/// (inside WeChat). Amount in fen; times in Beijing `yyyyMMddHHmmss`. The client adds `appid`,
/// `mch_id`, `nonce_str`, `sign_type` and `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedOrderRequest {
    pub body: String,
    pub out_trade_no: String,
    pub total_fee: i64,
    /// Native: the server's address. H5: the shopper's (WeChat compares it with the browser
    /// that opens `mweb_url`).
    pub spbill_create_ip: String,
    pub notify_url: String,
    pub trade: Trade,
    pub attach: Option<String>,
    pub time_start: Option<String>,
    pub time_expire: Option<String>,
}

/// The trade type of a unified order, with what each one requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trade {
    /// `NATIVE`: `product_id` is required.
    Native { product_id: String },
    /// `MWEB` (H5 payment): `scene_info` names the site the shopper pays from.
    Mweb { wap_url: String, wap_name: String },
    /// `JSAPI`: the payer's `openid` under the official account's appid.
    Jsapi { openid: String },
}

impl Trade {
    /// WeChat's `trade_type`.
    pub fn trade_type(&self) -> &'static str {
        match self {
            Trade::Native { .. } => "NATIVE",
            Trade::Mweb { .. } => "MWEB",
            Trade::Jsapi { .. } => "JSAPI",
        }
    }
}

/// H5's `scene_info`: `{"h5_info":{"type":"Wap","wap_url":…,"wap_name":…}}`.
pub fn h5_scene_info(wap_url: &str, wap_name: &str) -> String {
    serde_json::json!({
        "h5_info": {"type": "Wap", "wap_url": wap_url, "wap_name": wap_name}
    })
    .to_string()
}

impl UnifiedOrderRequest {
    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("body".into(), self.body.clone());
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        f.insert("total_fee".into(), self.total_fee.to_string());
        f.insert("spbill_create_ip".into(), self.spbill_create_ip.clone());
        f.insert("notify_url".into(), self.notify_url.clone());
        f.insert("trade_type".into(), self.trade.trade_type().into());
        match &self.trade {
            Trade::Native { product_id } => {
                f.insert("product_id".into(), product_id.clone());
            }
            Trade::Mweb { wap_url, wap_name } => {
                f.insert("scene_info".into(), h5_scene_info(wap_url, wap_name));
            }
            Trade::Jsapi { openid } => {
                f.insert("openid".into(), openid.clone());
            }
        }
        f.insert("fee_type".into(), "CNY".into());
        for (name, value) in [
            ("attach", &self.attach),
            ("time_start", &self.time_start),
            ("time_expire", &self.time_expire),
        ] {
            if let Some(value) = value {
                f.insert(name.into(), value.clone());
            }
        }
        f
    }
}

/// The prepay WeChat created (valid 2 hours): Native's `code_url` is what the QR code carries;
/// H5's `mweb_url` (valid 5 minutes) is where the shopper's browser goes; JSAPI has the
/// `prepay_id` alone, for the page's `getBrandWCPayRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedOrderResponse {
    pub trade_type: String,
    pub prepay_id: String,
    pub code_url: Option<String>,
    pub mweb_url: Option<String>,
}

impl UnifiedOrderResponse {
    /// The answer, with the field its trade type needs.
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let answer = UnifiedOrderResponse {
            trade_type: required(f, "trade_type")?,
            prepay_id: required(f, "prepay_id")?,
            code_url: optional(f, "code_url"),
            mweb_url: optional(f, "mweb_url"),
        };
        match answer.trade_type.as_str() {
            "NATIVE" if answer.code_url.is_none() => Err(FieldError::Missing("code_url")),
            "MWEB" if answer.mweb_url.is_none() => Err(FieldError::Missing("mweb_url")),
            _ => Ok(answer),
        }
    }

    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("trade_type".into(), self.trade_type.clone());
        f.insert("prepay_id".into(), self.prepay_id.clone());
        for (name, value) in [("code_url", &self.code_url), ("mweb_url", &self.mweb_url)] {
            if let Some(value) = value {
                f.insert(name.into(), value.clone());
            }
        }
        f
    }
}

/// The answer of an order query. Payment fields are present when `trade_state` is SUCCESS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQueryResponse {
    pub out_trade_no: String,
    pub trade_state: TradeState,
    pub trade_state_desc: Option<String>,
    pub transaction_id: Option<String>,
    pub total_fee: Option<i64>,
    /// What the shopper paid in cash: less than `total_fee` when a coupon paid part.
    pub cash_fee: Option<i64>,
    /// What coupons paid.
    pub coupon_fee: Option<i64>,
    pub fee_type: Option<String>,
    pub time_end: Option<String>,
    pub openid: Option<String>,
    pub bank_type: Option<String>,
    pub attach: Option<String>,
}

impl OrderQueryResponse {
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let trade_state = TradeState::from(required(f, "trade_state")?.as_str());
        let response = OrderQueryResponse {
            out_trade_no: required(f, "out_trade_no")?,
            trade_state_desc: optional(f, "trade_state_desc"),
            transaction_id: optional(f, "transaction_id"),
            total_fee: optional_fen(f, "total_fee")?,
            cash_fee: optional_fen(f, "cash_fee")?,
            coupon_fee: optional_fen(f, "coupon_fee")?,
            fee_type: optional(f, "fee_type"),
            time_end: optional(f, "time_end"),
            openid: optional(f, "openid"),
            bank_type: optional(f, "bank_type"),
            attach: optional(f, "attach"),
            trade_state,
        };
        if response.trade_state == TradeState::Success {
            for (name, present) in [
                ("transaction_id", response.transaction_id.is_some()),
                ("total_fee", response.total_fee.is_some()),
                ("time_end", response.time_end.is_some()),
            ] {
                if !present {
                    return Err(FieldError::Missing(name));
                }
            }
        }
        Ok(response)
    }

    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("out_trade_no".into(), self.out_trade_no.clone());
        f.insert("trade_state".into(), self.trade_state.as_str().into());
        let optional_text = [
            ("trade_state_desc", &self.trade_state_desc),
            ("transaction_id", &self.transaction_id),
            ("fee_type", &self.fee_type),
            ("time_end", &self.time_end),
            ("openid", &self.openid),
            ("bank_type", &self.bank_type),
            ("attach", &self.attach),
        ];
        for (name, value) in optional_text {
            if let Some(value) = value {
                f.insert(name.into(), value.clone());
            }
        }
        for (name, value) in [
            ("total_fee", self.total_fee),
            ("cash_fee", self.cash_fee),
            ("coupon_fee", self.coupon_fee),
        ] {
            if let Some(value) = value {
                f.insert(name.into(), value.to_string());
            }
        }
        f
    }
}

/// A payment notify (WeChat → `notify_url`), after its signature has been checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentNotify {
    pub appid: String,
    pub mch_id: String,
    pub result_code: ResultCode,
    pub err_code: Option<ErrCode>,
    pub err_code_des: Option<String>,
    pub out_trade_no: String,
    /// WeChat's transaction id; absent only on a `result_code=FAIL` notify.
    pub transaction_id: Option<String>,
    pub total_fee: i64,
    /// What the shopper paid in cash: less than `total_fee` when a coupon paid part (the
    /// coupon's own fields, `coupon_count`, `coupon_fee_$n`, …, are covered by the signature).
    pub cash_fee: Option<i64>,
    /// What coupons paid.
    pub coupon_fee: Option<i64>,
    /// `CNY` when absent, as WeChat documents.
    pub fee_type: String,
    /// Beijing `yyyyMMddHHmmss`; absent only on a `result_code=FAIL` notify.
    pub time_end: Option<String>,
    pub openid: Option<String>,
    pub trade_type: Option<String>,
    pub bank_type: Option<String>,
    pub attach: Option<String>,
}

/// `result_code`: the business outcome of a call whose `return_code` was SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultCode {
    Success,
    Fail,
}

impl ResultCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::Success => "SUCCESS",
            ResultCode::Fail => "FAIL",
        }
    }

    fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        match required(f, "result_code")?.as_str() {
            "SUCCESS" => Ok(ResultCode::Success),
            "FAIL" => Ok(ResultCode::Fail),
            _ => Err(FieldError::Malformed("result_code")),
        }
    }
}

impl PaymentNotify {
    /// Reads the payment fields of a notify whose `return_code` is SUCCESS.
    pub fn from_fields(f: &Fields) -> Result<Self, FieldError> {
        let result_code = ResultCode::from_fields(f)?;
        let paid = result_code == ResultCode::Success;
        let notify = PaymentNotify {
            appid: required(f, "appid")?,
            mch_id: required(f, "mch_id")?,
            err_code: optional(f, "err_code").map(|c| ErrCode::from(c.as_str())),
            err_code_des: optional(f, "err_code_des"),
            out_trade_no: required(f, "out_trade_no")?,
            transaction_id: if paid {
                Some(required(f, "transaction_id")?)
            } else {
                optional(f, "transaction_id")
            },
            total_fee: fen(f, "total_fee")?,
            cash_fee: optional_fen(f, "cash_fee")?,
            coupon_fee: optional_fen(f, "coupon_fee")?,
            fee_type: optional(f, "fee_type").unwrap_or_else(|| "CNY".into()),
            time_end: if paid {
                Some(required(f, "time_end")?)
            } else {
                optional(f, "time_end")
            },
            openid: optional(f, "openid"),
            trade_type: optional(f, "trade_type"),
            bank_type: optional(f, "bank_type"),
            attach: optional(f, "attach"),
            result_code,
        };
        if notify.transaction_id.as_ref().is_some_and(|t| t.len() > 32) {
            return Err(FieldError::Malformed("transaction_id"));
        }
        if let Some(time_end) = &notify.time_end {
            super::time::parse_beijing(time_end).map_err(|_| FieldError::Malformed("time_end"))?;
        }
        Ok(notify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_wire_values_are_kept() {
        assert_eq!(TradeState::from("NOTPAY"), TradeState::NotPay);
        assert_eq!(
            TradeState::from("ACCEPT"),
            TradeState::Other("ACCEPT".into())
        );
        assert_eq!(TradeState::from("ACCEPT").as_str(), "ACCEPT");
        assert_eq!(ErrCode::from("ORDERPAID"), ErrCode::OrderPaid);
        assert_eq!(
            ErrCode::from("FREQUENCY_LIMITED").to_string(),
            "FREQUENCY_LIMITED"
        );
    }

    #[test]
    fn unified_order_request_carries_native_and_optional_fields() {
        let req = UnifiedOrderRequest {
            body: "腾讯充值中心-QQ会员充值".into(),
            out_trade_no: "20150806125346".into(),
            total_fee: 888,
            spbill_create_ip: "123.12.12.123".into(),
            notify_url: "http://www.weixin.qq.com/wxpay/pay.php".into(),
            trade: Trade::Native {
                product_id: "12235413214070356458058".into(),
            },
            attach: None,
            time_start: Some("20091225091010".into()),
            time_expire: None,
        };
        let f = req.to_fields();
        assert_eq!(f["trade_type"], "NATIVE");
        assert_eq!(f["total_fee"], "888");
        assert_eq!(f["time_start"], "20091225091010");
        assert!(!f.contains_key("attach") && !f.contains_key("time_expire"));
    }

    #[test]
    fn order_query_success_needs_payment_fields() {
        let mut f: Fields = [
            ("out_trade_no", "o1"),
            ("trade_state", "SUCCESS"),
            ("transaction_id", "4200000001"),
            ("total_fee", "101"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            OrderQueryResponse::from_fields(&f),
            Err(FieldError::Missing("time_end"))
        );
        f.insert("time_end".into(), "20261128120000".into());
        let q = OrderQueryResponse::from_fields(&f).unwrap();
        assert_eq!(q.total_fee, Some(101));
        assert_eq!(OrderQueryResponse::from_fields(&q.to_fields()), Ok(q));
        f.insert("total_fee".into(), "-5".into());
        assert_eq!(
            OrderQueryResponse::from_fields(&f),
            Err(FieldError::Malformed("total_fee"))
        );
    }

    #[test]
    fn notify_reads_payment_fields_and_refuses_bad_ones() {
        let mut f: Fields = [
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("appid", "wx1"),
            ("mch_id", "m1"),
            ("out_trade_no", "o1"),
            ("transaction_id", "4200000001"),
            ("total_fee", "1"),
            ("time_end", "20140903131540"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let n = PaymentNotify::from_fields(&f).unwrap();
        assert_eq!(n.fee_type, "CNY");
        assert_eq!(n.result_code, ResultCode::Success);
        f.insert("time_end".into(), "2014-09-03".into());
        assert_eq!(
            PaymentNotify::from_fields(&f),
            Err(FieldError::Malformed("time_end"))
        );
        f.insert("time_end".into(), "20140903131540".into());
        f.insert("total_fee".into(), "1.00".into());
        assert_eq!(
            PaymentNotify::from_fields(&f),
            Err(FieldError::Malformed("total_fee"))
        );
        f.insert("total_fee".into(), "1".into());
        f.remove("transaction_id");
        assert_eq!(
            PaymentNotify::from_fields(&f),
            Err(FieldError::Missing("transaction_id"))
        );
        f.insert("result_code".into(), "FAIL".into());
        assert!(PaymentNotify::from_fields(&f).is_ok());
    }
}
