//! WeChat's side of the v3 calls once authenticated: each request's checks in WeChat's terms
//! (`PARAM_ERROR` and the business codes, with their HTTP statuses) and the same business rules
//! as v2's calls, on the same book. No HTTP here beyond the status of a refusal: `http.rs`
//! authenticates, draws the faults and signs the answers.

use std::sync::Arc;

use actix_web::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;

use super::super::api::FOREIGN_NOTIFY_URL;
use super::super::bill::{BillAnswer, NOT_MADE_YET, NO_BILL_EXIST};
use super::super::faults::RefundFault;
use super::super::state::{self, Refund, Trade, PREPAY_VALIDITY};
use super::super::Sandbox;
use super::notify::{refund as refund_json, transaction};
use super::{BillFile, DOWNLOAD_URL_VALIDITY};
use crate::wxpay::refund::{RefundEntry, MAX_REFUNDS};
use crate::wxpay::v3::types::{
    CloseRequest, NativeAnswer, NativeRequest, RefundRequest, TradeBillAnswer,
};
use crate::wxpay::{Fields, RefundStatus, SignType, TradeState};

/// A refusal: the HTTP status and WeChat's `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 PARAM_ERROR`: a parameter missing or malformed.
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    fn order_not_exist() -> Self {
        Self::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")
    }
}

/// What a call comes to.
#[derive(Debug)]
pub(super) enum Reply {
    /// `200` with this JSON, signed.
    Json(Vec<u8>),
    /// `204`, no body (signed all the same).
    NoContent,
    /// The bill file: `200`, unsigned.
    File(BillFile),
}

fn json(value: &impl serde::Serialize) -> Reply {
    Reply::Json(serde_json::to_vec(value).expect("a message serialises"))
}

/// A JSON body read as `T`; what does not read is `PARAM_ERROR`, with serde's reason.
fn read<T: DeserializeOwned>(body: &str) -> Result<T, Refusal> {
    if body.trim().is_empty() {
        return Err(Refusal::param("请求体为空"));
    }
    serde_json::from_str(body).map_err(|e| Refusal::param(format!("参数错误: {e}")))
}

/// `[A-Za-z0-9_|*-]` (and `@` where `extra_at`), `min` to `max` long.
fn number_ok(no: &str, min: usize, max: usize, extra_at: bool) -> bool {
    (min..=max).contains(&no.len())
        && no.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'|' | b'*')
                || (extra_at && b == b'@')
        })
}

/// A notify URL as WeChat takes it: absolute http(s), no query. (WeChat requires https; the
/// sandbox's shop is usually plain http on loopback.)
fn check_notify_url(name: &str, url: &str) -> Result<(), Refusal> {
    let ok = url::Url::parse(url).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none()
    });
    if ok && url.len() <= 255 {
        Ok(())
    } else {
        Err(Refusal::param(format!("{name}格式错误")))
    }
}

/// One query parameter (the first of the name).
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Sandbox {
    fn check_mchid(&self, mchid: &str) -> Result<(), Refusal> {
        if mchid == self.config.merchant.mch_id {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "MCH_NOT_EXISTS",
                "商户号不存在",
            ))
        }
    }

    /// `POST /v3/pay/transactions/native`: the `code_url`, the same again for a re-entry with
    /// the same parameters (a new one once the old expired).
    pub(super) fn v3_native(&self, body: &str) -> Result<Reply, Refusal> {
        let request: NativeRequest = read(body)?;
        let now = self.now();
        self.check_mchid(&request.mchid)?;
        if request.appid != self.config.merchant.appid {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid和mch_id不匹配",
            ));
        }
        if !number_ok(&request.out_trade_no, 6, 32, false) {
            return Err(Refusal::param("out_trade_no格式错误"));
        }
        let chars = request.description.chars().count();
        if chars == 0 || chars > 127 {
            return Err(Refusal::param("description长度应在1到127之间"));
        }
        if request
            .attach
            .as_ref()
            .is_some_and(|a| a.chars().count() > 128)
        {
            return Err(Refusal::param("attach长度超过128"));
        }
        if request.amount.total <= 0 {
            return Err(Refusal::param("amount.total应大于0"));
        }
        if request.amount.currency != "CNY" {
            return Err(Refusal::param("amount.currency只支持CNY"));
        }
        check_notify_url("notify_url", &request.notify_url)?;
        if self
            .config
            .notify_only
            .as_ref()
            .is_some_and(|only| only.as_str() != request.notify_url)
        {
            return Err(Refusal::param(FOREIGN_NOTIFY_URL));
        }
        let time_expire = match &request.time_expire {
            None => None,
            Some(text) => Some(
                DateTime::parse_from_rfc3339(text)
                    .map_err(|_| Refusal::param("time_expire格式错误，应为rfc3339格式"))?
                    .with_timezone(&Utc),
            ),
        };

        let mut book = self.book();
        if let Some(existing) = book.get(&request.out_trade_no) {
            match existing.state {
                TradeState::Success | TradeState::Refund => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "ORDERPAID",
                        "该订单已支付",
                    ))
                }
                TradeState::Closed => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "ORDER_CLOSED",
                        "订单已关闭",
                    ))
                }
                _ => {}
            }
            // A re-entry repeats every parameter, through v3 and as Native.
            if existing.v3.as_deref() != Some(&request) {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "OUT_TRADE_NO_USED",
                    "商户订单号重复",
                ));
            }
            if existing.time_expire.is_some_and(|t| t <= now) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "ORDER_CLOSED",
                    "订单已过期",
                ));
            }
            let order = if existing.prepay_expires_at <= now {
                book.renew_prepay(&request.out_trade_no, now)
                    .expect("the order was just found")
            } else {
                existing
            };
            return Ok(json(&NativeAnswer {
                code_url: order.code_url.clone(),
            }));
        }

        let (prepay_id, code_url) = state::new_prepay(now);
        let mut params = Fields::new();
        params.insert("trade_type".into(), "NATIVE".into());
        let order = Trade {
            out_trade_no: request.out_trade_no.clone(),
            params,
            // Unused: a v3 trade's notify is v3's.
            sign_type: SignType::Md5,
            body: request.description.clone(),
            attach: request.attach.clone(),
            total_fee: request.amount.total,
            notify_url: request.notify_url.clone(),
            time_expire,
            prepay_id,
            code_url: code_url.clone(),
            prepay_expires_at: now + PREPAY_VALIDITY,
            state: TradeState::NotPay,
            payment: None,
            created_at: now,
            notify_attempts: 0,
            notify_acknowledged: false,
            refunds: Vec::new(),
            v3: Some(Box::new(request)),
        };
        book.insert(order);
        Ok(json(&NativeAnswer { code_url }))
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`.
    pub(super) fn v3_query(&self, no: &str, query: &str) -> Result<Reply, Refusal> {
        let mchid = query_param(query, "mchid").ok_or_else(|| Refusal::param("缺少参数mchid"))?;
        self.check_mchid(&mchid)?;
        let book = self.book();
        let order = book.get(no).ok_or_else(Refusal::order_not_exist)?;
        Ok(json(&transaction(self, order)))
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close`: `204`, also for an order already
    /// closed; a paid one is refused.
    pub(super) fn v3_close(&self, no: &str, body: &str) -> Result<Reply, Refusal> {
        let request: CloseRequest = read(body)?;
        self.check_mchid(&request.mchid)?;
        let mut book = self.book();
        let order = book.get_mut(no).ok_or_else(Refusal::order_not_exist)?;
        match order.state {
            TradeState::Success | TradeState::Refund => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "ORDERPAID",
                "订单已支付",
            )),
            _ => {
                order.state = TradeState::Closed;
                Ok(Reply::NoContent)
            }
        }
    }

    /// `POST /v3/refund/domestic/refunds`. The same `out_refund_no` with the same amounts is the
    /// same refund, answered again; refusals leave nothing behind.
    pub(super) fn v3_refund(self: &Arc<Self>, body: &str) -> Result<Reply, Refusal> {
        let fault = self.faults().draw_refund();
        if fault == RefundFault::FrequencyLimited {
            return Err(Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "FREQUENCY_LIMITED",
                "请求频率过高，请稍后重试",
            ));
        }
        let request: RefundRequest = read(body)?;
        if request.transaction_id.is_none() && request.out_trade_no.is_none() {
            return Err(Refusal::param("transaction_id和out_trade_no必须二选一"));
        }
        if !number_ok(&request.out_refund_no, 1, 64, true) {
            return Err(Refusal::param("out_refund_no格式错误"));
        }
        let amount = &request.amount;
        if amount.refund <= 0 || amount.total <= 0 {
            return Err(Refusal::param("退款金额和订单金额必须大于0"));
        }
        if amount.currency != "CNY" {
            return Err(Refusal::param("amount.currency只支持CNY"));
        }
        if request
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 80)
        {
            return Err(Refusal::param("reason长度超过80"));
        }
        if let Some(url) = &request.notify_url {
            check_notify_url("notify_url", url)?;
            if let Some(only) = &self.config.refund_notify_only {
                if only.as_str() != url {
                    return Err(Refusal::param(FOREIGN_NOTIFY_URL));
                }
            }
        }

        let now = self.now();
        let mut book = self.book();
        let order = match (&request.transaction_id, &request.out_trade_no) {
            (Some(tid), _) => book.by_transaction_id(tid),
            (None, Some(no)) => book.get(no),
            (None, None) => None,
        };
        let order = order.ok_or_else(|| {
            Refusal::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在")
        })?;
        if book
            .refund_owner(&request.out_refund_no)
            .is_some_and(|owner| owner != order.out_trade_no)
        {
            return Err(Refusal::invalid("out_refund_no已用于其他订单"));
        }
        if order.payment.is_none() {
            return Err(Refusal::invalid("订单未支付"));
        }
        if amount.total != order.total_fee {
            return Err(Refusal::param("订单金额与实际支付金额不一致"));
        }
        if let Some(earlier) = order.refund(&request.out_refund_no) {
            if earlier.entry.refund_fee != amount.refund {
                return Err(Refusal::invalid("退款金额与之前请求不一致，请核实后再试"));
            }
            return Ok(json(&refund_json(order, earlier)));
        }
        if order.refunds.len() >= MAX_REFUNDS {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "RULE_LIMIT",
                "每个支付订单的部分退款次数不能超过50次",
            ));
        }
        if amount.refund > order.refundable() {
            return Err(Refusal::param("申请退款金额超过订单可退金额"));
        }
        match fault {
            RefundFault::NotEnough => {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "NOT_ENOUGH",
                    "基本账户余额不足，请充值后重新发起",
                ))
            }
            RefundFault::AccountAbnormal => {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "USER_ACCOUNT_ABNORMAL",
                    "退款请求失败，用户帐号异常",
                ))
            }
            RefundFault::None | RefundFault::FrequencyLimited => {}
        }
        let refund = Refund {
            entry: RefundEntry {
                out_refund_no: request.out_refund_no.clone(),
                refund_id: state::new_refund_id(now),
                refund_fee: amount.refund,
                status: RefundStatus::Processing,
                success_time: None,
            },
            notify_url: request.notify_url.clone(),
            created_at: now,
            notify_attempts: 0,
            notify_acknowledged: false,
            v3: true,
        };
        let no = order.out_trade_no.clone();
        let order = book
            .add_refund(&no, refund)
            .expect("the order was just found");
        let answer = json(&refund_json(
            order,
            order.refunds.last().expect("the refund was just added"),
        ));
        drop(book);
        self.start_settlement(no, request.out_refund_no);
        Ok(answer)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub(super) fn v3_refund_query(&self, out_refund_no: &str) -> Result<Reply, Refusal> {
        let book = self.book();
        let refund = book
            .refund_owner(out_refund_no)
            .and_then(|no| book.get(no))
            .and_then(|order| Some((order, order.refund(out_refund_no)?)));
        let (order, refund) = refund.ok_or_else(|| {
            Refusal::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在")
        })?;
        Ok(json(&refund_json(order, refund)))
    }

    /// `GET /v3/bill/tradebill`: the day's bill (v2's, made by `bill.rs`) kept for download at
    /// `base`'s `/v3/billdownload/file`, with its SHA1 — of the bill itself, also when it is
    /// sent compressed (`tar_type=GZIP`), as WeChat's `hash_value`.
    pub(super) fn v3_trade_bill(&self, query: &str, base: &url::Url) -> Result<Reply, Refusal> {
        let date = query_param(query, "bill_date")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| Refusal::param("缺少参数bill_date"))?;
        let day = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .ok()
            .filter(|_| date.len() == 10)
            .ok_or_else(|| Refusal::param("bill_date格式错误，应为yyyy-MM-dd"))?;
        let bill_type = query_param(query, "bill_type").unwrap_or_else(|| "ALL".into());
        let gzip = match query_param(query, "tar_type").as_deref() {
            None | Some("") => false,
            Some("GZIP") => true,
            Some(_) => return Err(Refusal::param("tar_type只支持GZIP")),
        };
        let mut fields = Fields::new();
        fields.insert("bill_date".into(), day.format("%Y%m%d").to_string());
        fields.insert("bill_type".into(), bill_type);
        let text = match self.bill(&fields) {
            Err(message) => return Err(Refusal::param(message)),
            Ok(BillAnswer::Table { bytes, .. }) => bytes,
            Ok(BillAnswer::Refused(r)) if r == NO_BILL_EXIST => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "NO_STATEMENT_EXIST",
                    "账单文件不存在",
                ))
            }
            Ok(BillAnswer::Refused(r)) if r == NOT_MADE_YET => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "STATEMENT_CREATING",
                    "账单生成中",
                ))
            }
            Ok(BillAnswer::Refused(r)) => return Err(Refusal::param(r.return_msg)),
        };
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &text);
        let bytes = if gzip {
            super::super::bill::gzip(&text)
        } else {
            text
        };
        let token = crate::wxpay::v3::notify::random_text(64);
        let mut download_url = base.join("v3/billdownload/file").expect("a path joins");
        download_url.query_pairs_mut().append_pair("token", &token);
        self.bill_files.lock().expect("bill files lock").insert(
            token,
            BillFile {
                bytes: Arc::new(bytes),
                gzip,
            },
            self.now() + DOWNLOAD_URL_VALIDITY,
        );
        Ok(json(&TradeBillAnswer {
            hash_type: "SHA1".into(),
            hash_value: hex::encode(digest.as_ref()),
            download_url: download_url.to_string(),
        }))
    }

    /// `GET /v3/billdownload/file?token=`: the bill, while its `download_url` is valid.
    pub(super) fn v3_bill_file(&self, query: &str) -> Result<Reply, Refusal> {
        let token = query_param(query, "token").unwrap_or_default();
        let files = self.bill_files.lock().expect("bill files lock");
        files
            .get(&token, self.now())
            .cloned()
            .map(Reply::File)
            .ok_or_else(|| Refusal::invalid("下载地址无效或已过期"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_wechats_charset_and_length() {
        assert!(number_ok("20261201_a|b*c-1", 6, 32, false));
        assert!(!number_ok("12345", 6, 32, false));
        assert!(!number_ok(&"1".repeat(33), 6, 32, false));
        assert!(!number_ok("R 12345", 6, 32, false));
        assert!(!number_ok("R@1", 1, 64, false));
        assert!(number_ok("R@1", 1, 64, true));
    }

    #[test]
    fn notify_urls_are_absolute_without_a_query() {
        assert!(check_notify_url("notify_url", "https://shop.example/notify").is_ok());
        assert!(check_notify_url("notify_url", "http://127.0.0.1:8080/n").is_ok());
        for bad in [
            "/notify",
            "ftp://x/y",
            "https://shop.example/n?a=1",
            "not a url",
        ] {
            assert_eq!(
                check_notify_url("notify_url", bad).unwrap_err().code,
                "PARAM_ERROR",
                "{bad}"
            );
        }
        assert_eq!(
            query_param("mchid=1230000109&x=1", "mchid").unwrap(),
            "1230000109"
        );
        assert_eq!(read::<CloseRequest>("").unwrap_err().status, 400);
        assert_eq!(read::<CloseRequest>("{}").unwrap_err().code, "PARAM_ERROR");
    }
}
