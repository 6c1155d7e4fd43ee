//! WeChat's side of unifiedorder, orderquery, closeorder and refundquery: authentication,
//! validation and the business rules, producing an [`Answer`] (the refund call itself is in
//! `refunds.rs`, the bill in `bill.rs`). No HTTP here; `http.rs` adds transport and faults.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration as TimeDelta, Utc};

use super::bill::BillAnswer;
use super::state::{self, Trade, PREPAY_VALIDITY};
use super::Sandbox;
use crate::wxpay::time::parse_beijing;
use crate::wxpay::{sign, xml, Endpoint, ErrCode, Fields, SignType, TradeState};

/// An answer to an authenticated call (`return_code=SUCCESS`): these fields plus the common
/// ones, signed with `sign_type`. Failures before authentication are a bare `return_msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub sign_type: SignType,
    pub fields: Fields,
}

impl Answer {
    /// A business failure: `result_code=FAIL` with `err_code`.
    pub fn fail(sign_type: SignType, code: ErrCode, des: &str) -> Answer {
        let mut fields = Fields::new();
        fields.insert("result_code".into(), "FAIL".into());
        fields.insert("err_code".into(), code.as_str().into());
        fields.insert("err_code_des".into(), des.into());
        Answer { sign_type, fields }
    }

    pub(super) fn success(sign_type: SignType, mut fields: Fields) -> Answer {
        fields.insert("result_code".into(), "SUCCESS".into());
        Answer { sign_type, fields }
    }
}

/// What an authenticated call comes to, besides an unsigned refusal of its parameters.
pub enum Reply {
    /// Signed XML: every call but the bill.
    Signed(Answer),
    /// `/pay/downloadbill`'s answer: the table, or its own unsigned refusal.
    Bill(BillAnswer),
}

/// WeChat's `return_msg` texts for failures before authentication.
pub mod msg {
    pub const REQUIRE_POST_METHOD: &str = "请使用post方法";
    pub const POST_DATA_EMPTY: &str = "post数据为空";
    pub const NOT_UTF8: &str = "编码格式错误";
    pub const XML_FORMAT_ERROR: &str = "XML格式错误";
    pub const LACK_APPID: &str = "缺少参数appid";
    pub const LACK_MCH_ID: &str = "缺少参数mch_id";
    pub const LACK_NONCE_STR: &str = "缺少参数nonce_str";
    pub const LACK_SIGN: &str = "缺少参数sign";
    pub const BAD_NONCE_STR: &str = "nonce_str参数长度有误";
    pub const BAD_SIGN_TYPE: &str = "sign_type参数格式错误";
    pub const APPID_NOT_EXIST: &str = "appid不存在";
    pub const APPID_MCHID_NOT_MATCH: &str = "商户号mch_id与appid不匹配";
    pub const SIGNERROR: &str = "签名错误，请检查后再试";
    pub const REQUIRE_CERTIFICATE: &str = "证书错误，请使用商户API证书通过HTTPS访问";
}

/// A request that passed authentication.
pub struct Authenticated {
    pub fields: Fields,
    pub sign_type: SignType,
}

impl Sandbox {
    /// Parses and authenticates a request body the way WeChat does, in WeChat's order.
    pub(super) fn authenticate(&self, body: &[u8]) -> Result<Authenticated, &'static str> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(msg::POST_DATA_EMPTY);
        }
        let fields = xml::decode(body).map_err(|e| match e {
            xml::XmlError::NotUtf8 => msg::NOT_UTF8,
            _ => msg::XML_FORMAT_ERROR,
        })?;
        let merchant = &self.config.merchant;
        let appid = non_empty(&fields, "appid").ok_or(msg::LACK_APPID)?;
        let mch_id = non_empty(&fields, "mch_id").ok_or(msg::LACK_MCH_ID)?;
        // One merchant exists here: an unknown appid does not exist; a known one with
        // another mch_id (or the other way round) is a mismatched pair.
        match (appid == merchant.appid, mch_id == merchant.mch_id) {
            (true, true) => {}
            (false, false) => return Err(msg::APPID_NOT_EXIST),
            _ => return Err(msg::APPID_MCHID_NOT_MATCH),
        }
        let nonce = non_empty(&fields, "nonce_str").ok_or(msg::LACK_NONCE_STR)?;
        if nonce.len() > 32 {
            return Err(msg::BAD_NONCE_STR);
        }
        let sign_type = match fields.get("sign_type") {
            None => SignType::Md5,
            Some(name) => name.parse().map_err(|_| msg::BAD_SIGN_TYPE)?,
        };
        if non_empty(&fields, "sign").is_none() {
            return Err(msg::LACK_SIGN);
        }
        sign::verify(&fields, &merchant.key, sign_type).map_err(|_| msg::SIGNERROR)?;
        Ok(Authenticated { fields, sign_type })
    }

    /// Carries out an authenticated call: a signed answer or the bill, or — for a request whose
    /// parameters are wrong, refused before any business processing — an unsigned
    /// `return_code=FAIL` with this `return_msg`. A refund reaches here only over TLS, where the
    /// handshake checked the merchant's certificate (`http.rs` refuses it on the plain listener).
    /// `base` is the sandbox as the caller reached it (`http://host:port`), where an H5
    /// `mweb_url` points.
    pub(super) fn execute(
        self: &Arc<Self>,
        endpoint: Endpoint,
        request: &Authenticated,
        base: &url::Url,
    ) -> Result<Reply, String> {
        let answer = match endpoint {
            Endpoint::UnifiedOrder => self.unified_order(request, base),
            Endpoint::OrderQuery => self.order_query(request),
            Endpoint::CloseOrder => self.close_order(request),
            Endpoint::RefundQuery => self.refund_query(request),
            Endpoint::Refund => self.refund(request),
            Endpoint::DownloadBill => return self.download_bill(request).map(Reply::Bill),
        };
        answer.map(Reply::Signed)
    }

    fn unified_order(&self, request: &Authenticated, base: &url::Url) -> Result<Answer, String> {
        let Authenticated { fields, sign_type } = request;
        let sign_type = *sign_type;
        let now = self.now();
        let mut book = self.book();
        // An order number already in use is judged first: paid and closed orders stay so
        // whatever the parameters, and another trade type is another transaction.
        let existing = non_empty(fields, "out_trade_no").and_then(|no| book.get(no));
        if let Some(existing) = existing {
            match existing.state {
                TradeState::Success | TradeState::Refund => {
                    return Ok(Answer::fail(sign_type, ErrCode::OrderPaid, "该订单已支付"))
                }
                TradeState::Closed => {
                    return Ok(Answer::fail(
                        sign_type,
                        ErrCode::OrderClosed,
                        "该订单已关闭",
                    ))
                }
                _ => {}
            }
            if existing.params.get("trade_type") != fields.get("trade_type") {
                return Ok(Answer::fail(
                    sign_type,
                    ErrCode::OutTradeNoUsed,
                    "商户订单号重复",
                ));
            }
        }
        let checked = match check_unified_order(fields, now) {
            Ok(checked) => checked,
            Err(Refusal::Parameter(message)) => return Err(message),
            Err(Refusal::Business(code, des)) => return Ok(Answer::fail(sign_type, code, &des)),
        };
        if self
            .config
            .notify_only
            .as_ref()
            .is_some_and(|only| only.as_str() != checked.notify_url)
        {
            return Err(FOREIGN_NOTIFY_URL.into());
        }
        // A JSAPI payer is a user of the merchant's official account: an openid issued under
        // another appid (or made up) is refused as WeChat refuses it.
        if let Some(openid) = non_empty(fields, "openid").filter(|_| checked.trade_type == "JSAPI")
        {
            if !self.issued_openid(openid) {
                return Ok(Answer::fail(
                    sign_type,
                    ErrCode::from(PARAM_ERROR),
                    "appid和openid不匹配",
                ));
            }
        }
        // Only the parameters unifiedorder knows are kept (for re-entries), within a budget:
        // what a stranger pads a request with never stays in memory.
        let params: Fields = fields
            .iter()
            .filter(|(k, _)| KNOWN_PARAMETERS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > PARAMETER_BUDGET {
            return Err(TOO_LONG.into());
        }

        if let Some(existing) = book.get(&checked.out_trade_no) {
            // A re-entry must repeat every parameter.
            if existing.params != params {
                return Ok(Answer::fail(
                    sign_type,
                    ErrCode::InvalidRequest,
                    "201 商户订单号重复",
                ));
            }
            if existing.time_expire.is_some_and(|t| t <= now) {
                return Ok(Answer::fail(sign_type, ErrCode::OrderClosed, "订单已过期"));
            }
            let order = if existing.prepay_expires_at <= now {
                book.renew_prepay(&checked.out_trade_no, now)
                    .expect("the order was just found")
            } else {
                existing
            };
            let fields = self.prepay_fields(order, base, now);
            return Ok(Answer::success(sign_type, fields));
        }

        let (prepay_id, code_url) = state::new_prepay(now);
        let order = Trade {
            out_trade_no: checked.out_trade_no,
            params,
            sign_type,
            body: checked.body,
            attach: checked.attach,
            total_fee: checked.total_fee,
            notify_url: checked.notify_url,
            time_expire: checked.time_expire,
            prepay_id,
            code_url,
            prepay_expires_at: now + PREPAY_VALIDITY,
            state: TradeState::NotPay,
            payment: None,
            created_at: now,
            notify_attempts: 0,
            notify_acknowledged: false,
            refunds: Vec::new(),
            v3: None,
        };
        let answer = Answer::success(sign_type, self.prepay_fields(&order, base, now));
        book.insert(order);
        Ok(answer)
    }

    fn order_query(&self, request: &Authenticated) -> Result<Answer, String> {
        let Authenticated { fields, sign_type } = request;
        let sign_type = *sign_type;
        let book = self.book();
        let Some(order) = named_order(&book, fields)? else {
            return Ok(Answer::fail(
                sign_type,
                ErrCode::OrderNotExist,
                "订单不存在",
            ));
        };
        Ok(Answer::success(sign_type, query_fields(order)))
    }

    /// The order's refunds, in WeChat's indexed fields; `REFUNDNOTEXIST` when it has none.
    fn refund_query(&self, request: &Authenticated) -> Result<Answer, String> {
        let Authenticated { fields, sign_type } = request;
        let sign_type = *sign_type;
        let book = self.book();
        let Some(order) = named_order(&book, fields)? else {
            return Ok(Answer::fail(
                sign_type,
                ErrCode::OrderNotExist,
                "订单不存在",
            ));
        };
        if order.refunds.is_empty() {
            return Ok(Answer::fail(
                sign_type,
                ErrCode::RefundNotExist,
                "退款订单查询失败",
            ));
        }
        let answer = crate::wxpay::refund::RefundQueryResponse {
            out_trade_no: order.out_trade_no.clone(),
            transaction_id: order.payment.as_ref().map(|p| p.transaction_id.clone()),
            total_fee: order.total_fee,
            refunds: order.refunds.iter().map(|r| r.entry.clone()).collect(),
        };
        let mut fields = answer.to_fields();
        // What the shopper paid in cash: less than total_fee when a coupon paid part.
        fields.insert("cash_fee".into(), cash_fee(order).to_string());
        Ok(Answer::success(sign_type, fields))
    }

    fn close_order(&self, request: &Authenticated) -> Result<Answer, String> {
        let Authenticated { fields, sign_type } = request;
        let sign_type = *sign_type;
        let Some(no) = non_empty(fields, "out_trade_no") else {
            return Err("缺少参数out_trade_no".into());
        };
        let mut book = self.book();
        let Some(order) = book.get_mut(no) else {
            return Ok(Answer::fail(
                sign_type,
                ErrCode::OrderNotExist,
                "订单不存在",
            ));
        };
        Ok(match order.state {
            TradeState::Success | TradeState::Refund => {
                Answer::fail(sign_type, ErrCode::OrderPaid, "订单已支付，不能发起关单")
            }
            TradeState::Closed => {
                Answer::fail(sign_type, ErrCode::OrderClosed, "订单已关闭，无需继续调用")
            }
            _ => {
                order.state = TradeState::Closed;
                let mut answer = Fields::new();
                answer.insert("result_msg".into(), "OK".into());
                Answer::success(sign_type, answer)
            }
        })
    }
}

/// The order a query names, by `transaction_id` or else `out_trade_no` (one of them is
/// required, as WeChat requires).
pub(super) fn named_order<'b>(
    book: &'b state::Book,
    fields: &Fields,
) -> Result<Option<&'b Trade>, String> {
    match (
        non_empty(fields, "transaction_id"),
        non_empty(fields, "out_trade_no"),
    ) {
        (Some(tid), _) => Ok(book.by_transaction_id(tid)),
        (None, Some(no)) => Ok(book.get(no)),
        (None, None) => Err("缺少参数out_trade_no或transaction_id".into()),
    }
}

pub(super) fn non_empty<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// A unifiedorder's values, validated.
struct CheckedUnifiedOrder {
    /// `NATIVE`, `MWEB` or `JSAPI`.
    trade_type: &'static str,
    out_trade_no: String,
    body: String,
    attach: Option<String>,
    total_fee: i64,
    notify_url: String,
    time_expire: Option<DateTime<Utc>>,
}

/// Why a unifiedorder or a refund is refused, at WeChat's two levels.
pub(super) enum Refusal {
    /// A parameter WeChat rejects before any business processing: unsigned `return_code=FAIL`
    /// with this `return_msg`.
    Parameter(String),
    /// A business rule: signed `result_code=FAIL` with `err_code` and `err_code_des`.
    Business(ErrCode, String),
}

/// The largest amount the sandbox accepts: 100 million yuan, in fen.
const MAX_TOTAL_FEE: i64 = 10_000_000_000;

// The `return_msg` texts of parameter errors. Sources: the `X参数格式错误` form at the
// return_code level as merchants quote WeChat (binarywang/weixin-java-pay-demo#14,
// `{return_msg=mch_id参数格式错误, return_code=FAIL}`), `X参数长度有误` likewise
// (steedos/workflow#1957, `total_fee参数长度有误`), `缺少参数X` as this sandbox already answers for
// appid/mch_id, and `invalid total_fee` / `invalid spbill_create_ip` as the v2 protocol review of
// issue 12 recorded them. The missing-permission text is WeChat's for a trade type the merchant
// has not opened (its shape — 19 characters, `>`, 9 characters — is what
// jwcqc/WechatPayDemo#5 shows mis-decoded).
const NO_PERMISSION: &str = "商户号该产品权限未开通，请前往商户平台>产品中心检查后重试";
/// JSAPI without `openid`, at the `return_code` level (a PHP integration that compares
/// `return_msg` with this text records it).
const JSAPI_NEEDS_OPENID: &str = "JSAPI支付必须传openid";
/// The `err_code` of a JSAPI openid not issued under the order's appid
/// (`err_code_des=appid和openid不匹配`, as merchants' logs of WeChat's answer show it).
const PARAM_ERROR: &str = "PARAM_ERROR";
/// A `scene_info` that is not H5's JSON; WeChat's `X参数格式错误` form, with what is expected.
const BAD_SCENE_INFO: &str = "scene_info参数格式错误: expected {\"h5_info\":{\"type\":\"Wap\",\"wap_url\":…,\"wap_name\":…}}";
/// The sandbox's own refusals (no WeChat text exists for them).
pub(super) const FOREIGN_NOTIFY_URL: &str =
    "notify_url参数格式错误: the built-in sandbox notifies only its own shop";
const TOO_LONG: &str = "订单参数过长: the sandbox keeps at most 8 KiB of an order's parameters";

/// The unifiedorder parameters an order keeps (all but `nonce_str` and `sign`).
const KNOWN_PARAMETERS: [&str; 21] = [
    "appid",
    "mch_id",
    "device_info",
    "sign_type",
    "body",
    "detail",
    "attach",
    "out_trade_no",
    "fee_type",
    "total_fee",
    "spbill_create_ip",
    "time_start",
    "time_expire",
    "goods_tag",
    "notify_url",
    "trade_type",
    "product_id",
    "limit_pay",
    "openid",
    "receipt",
    "scene_info",
];
/// Most bytes of parameters one order keeps.
const PARAMETER_BUDGET: usize = 8 * 1024;

/// A missing required field: a parameter error.
pub(super) fn lack(name: &str) -> Refusal {
    Refusal::Parameter(lack_message(name))
}

/// The `return_msg` of a missing required field.
pub(super) fn lack_message(name: &str) -> String {
    format!("缺少参数{name}")
}

/// A malformed value: a parameter error.
pub(super) fn malformed(message: impl Into<String>) -> Refusal {
    Refusal::Parameter(message.into())
}

/// A value that is well-formed but not acceptable: `INVALID_REQUEST`.
fn invalid(des: impl Into<String>) -> Refusal {
    Refusal::Business(ErrCode::InvalidRequest, des.into())
}

/// WeChat's checks of a unifiedorder: required fields first (the trade type's too), then each
/// value. The merchant has three products: Native, H5 (`MWEB`) and JSAPI.
fn check_unified_order(f: &Fields, now: DateTime<Utc>) -> Result<CheckedUnifiedOrder, Refusal> {
    for name in [
        "body",
        "out_trade_no",
        "total_fee",
        "spbill_create_ip",
        "notify_url",
        "trade_type",
    ] {
        non_empty(f, name).ok_or_else(|| lack(name))?;
    }
    let get = |name: &str| non_empty(f, name).unwrap_or_default();
    let trade_type = match get("trade_type") {
        "NATIVE" => {
            let product_id = non_empty(f, "product_id").ok_or_else(|| lack("product_id"))?;
            if product_id.len() > 32 {
                return Err(malformed("product_id参数长度有误"));
            }
            "NATIVE"
        }
        "MWEB" => {
            let scene_info = non_empty(f, "scene_info").ok_or_else(|| lack("scene_info"))?;
            check_h5_scene_info(scene_info)?;
            "MWEB"
        }
        "JSAPI" => {
            let openid = non_empty(f, "openid").ok_or_else(|| malformed(JSAPI_NEEDS_OPENID))?;
            if !crate::wxpay::oauth::valid_openid(openid) {
                return Err(malformed("openid参数格式错误"));
            }
            "JSAPI"
        }
        // APP, MICROPAY, …: products the sandbox's merchant has not opened.
        _ => return Err(malformed(NO_PERMISSION)),
    };
    // 128 bytes of UTF-8, not characters: a Chinese character is three.
    let body = get("body");
    if body.len() > 128 {
        return Err(malformed("body参数长度有误"));
    }
    let out_trade_no = get("out_trade_no");
    let charset_ok = out_trade_no
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'));
    if out_trade_no.len() > 32 || !charset_ok {
        return Err(malformed("out_trade_no参数格式错误"));
    }
    let total_fee = amount(get("total_fee")).ok_or_else(|| malformed("invalid total_fee"))?;
    if non_empty(f, "fee_type").is_some_and(|t| t != "CNY") {
        return Err(malformed("fee_type参数格式错误"));
    }
    if get("spbill_create_ip").parse::<IpAddr>().is_err() {
        return Err(malformed("invalid spbill_create_ip"));
    }
    let notify_url = get("notify_url");
    check_notify_url(notify_url)?;
    if non_empty(f, "attach").is_some_and(|a| a.len() > 127) {
        return Err(malformed("attach参数长度有误"));
    }
    let time = |name: &str| {
        non_empty(f, name)
            .map(|text| parse_beijing(text).map_err(|_| malformed(format!("{name}参数格式错误"))))
            .transpose()
    };
    time("time_start")?;
    let time_expire = time("time_expire")?;
    // Measured from WeChat's own clock, not from time_start (merchants who set both right still
    // meet this text when their page opened late); the request's transit is forgiven.
    if let Some(expire) = time_expire {
        if expire - now < TimeDelta::minutes(5) - TimeDelta::seconds(2) {
            return Err(invalid("time_expire时间过短，刷卡至少1分钟，其他5分钟"));
        }
    }
    Ok(CheckedUnifiedOrder {
        trade_type,
        out_trade_no: out_trade_no.to_owned(),
        body: body.to_owned(),
        attach: non_empty(f, "attach").map(str::to_owned),
        total_fee,
        notify_url: notify_url.to_owned(),
        time_expire,
    })
}

/// H5's `scene_info`: JSON whose `h5_info` names the site (`type`, `wap_url`, `wap_name`, each
/// a non-empty string), at most 256 bytes.
fn check_h5_scene_info(scene_info: &str) -> Result<(), Refusal> {
    if scene_info.len() > 256 {
        return Err(malformed("scene_info参数长度有误"));
    }
    let json: serde_json::Value =
        serde_json::from_str(scene_info).map_err(|_| malformed(BAD_SCENE_INFO))?;
    let named = |field: &str| {
        json.pointer(&format!("/h5_info/{field}"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|v| !v.trim().is_empty())
    };
    if ["type", "wap_url", "wap_name"].into_iter().all(named) {
        Ok(())
    } else {
        Err(malformed(BAD_SCENE_INFO))
    }
}

/// An amount in fen as a request carries it: digits only, from 1 fen to [`MAX_TOTAL_FEE`].
pub(super) fn amount(text: &str) -> Option<i64> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .filter(|fee| (1..=MAX_TOTAL_FEE).contains(fee))
}

/// A `notify_url` WeChat accepts: absolute http(s), at most 256 bytes, no query string.
pub(super) fn check_notify_url(notify_url: &str) -> Result<(), Refusal> {
    let parsed = url::Url::parse(notify_url).map_err(|_| malformed("notify_url参数格式错误"))?;
    if !matches!(parsed.scheme(), "http" | "https") || notify_url.len() > 256 {
        return Err(malformed("notify_url参数格式错误"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("notify_url不能携带参数"));
    }
    Ok(())
}

/// What the shopper paid in cash: the amount less what a coupon paid.
pub(super) fn cash_fee(order: &Trade) -> i64 {
    order.total_fee
        - order
            .payment
            .as_ref()
            .and_then(|p| p.coupon_fee)
            .unwrap_or(0)
}

impl Sandbox {
    /// A prepay's answer: Native's `code_url`, H5's `mweb_url` (a fresh ticket each time it is
    /// asked for), JSAPI's `prepay_id` alone.
    fn prepay_fields(&self, order: &Trade, base: &url::Url, now: DateTime<Utc>) -> Fields {
        let mut f = Fields::new();
        f.insert("device_info".into(), String::new());
        f.insert("trade_type".into(), order.trade_type().into());
        f.insert("prepay_id".into(), order.prepay_id.clone());
        match order.trade_type() {
            "NATIVE" => {
                f.insert("code_url".into(), order.code_url.clone());
            }
            "MWEB" => {
                f.insert(
                    "mweb_url".into(),
                    self.mweb_url(base, &order.prepay_id, now),
                );
            }
            _ => {}
        }
        f
    }
}

/// An order query's answer as WeChat shapes it: `total_fee` and `trade_state_desc` in every
/// state, empty `device_info` and `attach` elements when there are none (empty values are not
/// signed), the payment fields once paid.
fn query_fields(order: &Trade) -> Fields {
    let mut f = Fields::new();
    f.insert("out_trade_no".into(), order.out_trade_no.clone());
    f.insert("trade_state".into(), order.state.as_str().into());
    f.insert("total_fee".into(), order.total_fee.to_string());
    f.insert("device_info".into(), String::new());
    f.insert("attach".into(), order.attach.clone().unwrap_or_default());
    let desc = match order.state {
        TradeState::Success => "支付成功",
        TradeState::Refund => "转入退款",
        TradeState::NotPay => "订单未支付",
        TradeState::Closed => "订单已关闭",
        TradeState::Revoked => "已撤销",
        TradeState::UserPaying => "用户支付中",
        TradeState::PayError => "支付失败，请重新下单支付",
        TradeState::Other(_) => "",
    };
    f.insert("trade_state_desc".into(), desc.into());
    if let Some(payment) = &order.payment {
        f.extend(payment_fields(order, payment));
    }
    f
}

/// The payment fields shared by orderquery and the notify. A coupon shows as WeChat shows a
/// 免充值 (`NO_CASH`) one: `cash_fee` and `settlement_total_fee` are what the shopper paid,
/// `coupon_fee`, `coupon_count` and the indexed coupon fields what the coupon did.
pub(super) fn payment_fields(order: &Trade, payment: &state::Payment) -> Fields {
    let mut f = Fields::new();
    let total_fee = order.total_fee.to_string();
    let cash_fee = (order.total_fee - payment.coupon_fee.unwrap_or(0)).to_string();
    for (name, value) in [
        ("openid", payment.openid.as_str()),
        ("is_subscribe", "N"),
        ("trade_type", order.trade_type()),
        ("bank_type", payment.bank_type.as_str()),
        ("total_fee", total_fee.as_str()),
        ("cash_fee", cash_fee.as_str()),
        ("fee_type", "CNY"),
        ("transaction_id", payment.transaction_id.as_str()),
        ("out_trade_no", order.out_trade_no.as_str()),
    ] {
        f.insert(name.into(), value.into());
    }
    if let Some(coupon) = payment.coupon_fee {
        let coupon = coupon.to_string();
        for (name, value) in [
            ("coupon_fee", coupon.as_str()),
            ("coupon_count", "1"),
            ("coupon_type_0", "NO_CASH"),
            ("coupon_id_0", "10000"),
            ("coupon_fee_0", coupon.as_str()),
            ("settlement_total_fee", cash_fee.as_str()),
        ] {
            f.insert(name.into(), value.into());
        }
    }
    f.insert(
        "time_end".into(),
        crate::wxpay::time::format_beijing(payment.time_end),
    );
    if let Some(attach) = &order.attach {
        f.insert("attach".into(), attach.clone());
    }
    f
}
