//! The shopper's payment and WeChat's notify delivery: a notify POSTed to its `notify_url` —
//! a payment's signed, a refund's with encrypted content (see `refunds.rs`) — retried on
//! WeChat's schedule (scaled by `time_scale`) until the answer is the SUCCESS XML, also while
//! the shop is down. A v3 order's or refund's notify is v3's (sealed JSON, see `v3/notify.rs`),
//! signed afresh at each attempt and delivered once answered any 2xx.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::api::payment_fields;
use super::state::{self, Payment};
use super::{Sandbox, NOTIFY_RETRY_SCHEDULE_SECS};
use crate::wxpay::{nonce_str, sign, xml, Fields, SignType, TradeState};

/// What the shopper does on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShopperAction {
    /// Confirms and the payment goes through.
    Pay,
    /// Confirms and the bank declines: `trade_state=PAYERROR`; no notify unless the
    /// `fail_notify` fault draws one.
    Fail,
}

/// Why a payment could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayRefusal {
    #[error("二维码无效 (unknown code_url)")]
    UnknownCode,
    #[error("支付单无效 (unknown prepay_id)")]
    UnknownPrepay,
    #[error("支付单已过期 (the prepay is older than 2 hours)")]
    PrepayExpired,
    #[error("订单已过期 (past time_expire)")]
    OrderExpired,
    #[error("订单已支付 (already paid)")]
    AlreadyPaid,
    #[error("订单已关闭 (closed)")]
    Closed,
    #[error("代金券金额无效 (a coupon must pay part of the order, not all)")]
    BadCoupon,
}

/// The order after the shopper acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub out_trade_no: String,
    pub total_fee: i64,
    pub trade_state: TradeState,
    pub transaction_id: Option<String>,
}

/// Which order the shopper pays: a Native QR code's, or any order by its prepay (the H5 page,
/// the JSAPI bridge).
#[derive(Debug, Clone, Copy)]
pub(super) enum PayKey<'a> {
    CodeUrl(&'a str),
    PrepayId(&'a str),
}

/// Why an order cannot be paid now, if it cannot (what the phone shows before the shopper
/// confirms; [`pay`] decides again, with the `late_payment` fault).
pub(super) fn unpayable(order: &state::Trade, now: DateTime<Utc>) -> Option<PayRefusal> {
    match order.state {
        TradeState::Success | TradeState::Refund => Some(PayRefusal::AlreadyPaid),
        TradeState::Closed => Some(PayRefusal::Closed),
        _ if order.time_expire.is_some_and(|t| t <= now) => Some(PayRefusal::OrderExpired),
        _ if order.prepay_expires_at <= now => Some(PayRefusal::PrepayExpired),
        _ => None,
    }
}

/// Pays (or fails to pay) the order behind `key`; a successful payment starts the notify
/// delivery. The payer of a JSAPI order is its openid; of the others, a payer made up now.
pub(super) fn pay(
    sandbox: &Arc<Sandbox>,
    key: PayKey<'_>,
    outcome: ShopperAction,
    coupon_fee: Option<i64>,
) -> Result<Receipt, PayRefusal> {
    let now = sandbox.now();
    let mut book = sandbox.book();
    let order = match key {
        PayKey::CodeUrl(code_url) => book.by_code_url(code_url).ok_or(PayRefusal::UnknownCode)?,
        PayKey::PrepayId(prepay_id) => book
            .by_prepay_id(prepay_id)
            .ok_or(PayRefusal::UnknownPrepay)?,
    };
    if matches!(order.state, TradeState::Success | TradeState::Refund) {
        return Err(PayRefusal::AlreadyPaid);
    }
    // What WeChat should refuse, it sometimes takes (the `late_payment` fault).
    let late = order.state == TradeState::Closed || order.time_expire.is_some_and(|t| t <= now);
    if late && !sandbox.faults().draw_late_payment() {
        return Err(if order.state == TradeState::Closed {
            PayRefusal::Closed
        } else {
            PayRefusal::OrderExpired
        });
    }
    if order.prepay_expires_at <= now {
        return Err(PayRefusal::PrepayExpired);
    }
    if coupon_fee.is_some_and(|c| c <= 0 || c >= order.total_fee) {
        return Err(PayRefusal::BadCoupon);
    }
    let no = order.out_trade_no.clone();
    if outcome == ShopperAction::Fail {
        let order = book.get_mut(&no).expect("the order was just found");
        order.state = TradeState::PayError;
        let receipt = Receipt {
            out_trade_no: no.clone(),
            total_fee: order.total_fee,
            trade_state: TradeState::PayError,
            transaction_id: None,
        };
        // v3 has no notify for a failed payment.
        if order.v3.is_none() && sandbox.faults().draw_fail_notify() {
            let mut notify = Fields::new();
            for (name, value) in [
                ("return_code", "SUCCESS"),
                ("result_code", "FAIL"),
                ("err_code", "BANKERROR"),
                ("err_code_des", "银行系统异常"),
                ("trade_type", order.trade_type()),
                ("fee_type", "CNY"),
                ("out_trade_no", no.as_str()),
            ] {
                notify.insert(name.into(), value.into());
            }
            notify.insert("total_fee".into(), order.total_fee.to_string());
            let (url, sign_type) = (order.notify_url.clone(), order.sign_type);
            drop(book);
            let message = v2_message(sandbox, sign_type, notify);
            start_delivery(sandbox, no, url, message);
        }
        return Ok(receipt);
    }
    let openid = order
        .jsapi_openid()
        .map_or_else(state::new_openid, str::to_owned);
    let payment = Payment {
        transaction_id: state::new_transaction_id(now),
        time_end: now,
        openid,
        bank_type: "OTHERS".into(),
        coupon_fee,
    };
    let order = book
        .pay(&no, payment.clone())
        .expect("the order was just found");
    let receipt = Receipt {
        out_trade_no: no.clone(),
        total_fee: order.total_fee,
        trade_state: TradeState::Success,
        transaction_id: Some(payment.transaction_id.clone()),
    };

    let url = order.notify_url.clone();
    let message = if order.v3.is_some() {
        super::v3::payment_notify(sandbox, order, now)
    } else {
        let mut notify = payment_fields(order, &payment);
        notify.insert("return_code".into(), "SUCCESS".into());
        notify.insert("result_code".into(), "SUCCESS".into());
        let sign_type = order.sign_type;
        v2_message(sandbox, sign_type, notify)
    };
    drop(book);
    start_delivery(sandbox, no, url, message);
    Ok(receipt)
}

/// A notify as it goes out.
#[derive(Debug, Clone)]
pub(super) enum Message {
    /// v2: signed XML, delivered once answered the SUCCESS XML.
    Xml(String),
    /// v3: the sealed JSON, whose signature headers are made at each attempt (a retry a day
    /// later must still be within the shop's 5 minutes), delivered once answered any 2xx.
    Json(Vec<u8>),
}

/// Signs a v2 notify as WeChat does — the order's algorithm, usually without a sign_type field
/// even for HMAC (with one under the `notify_sign_type` fault).
fn v2_message(sandbox: &Sandbox, sign_type: SignType, mut notify: Fields) -> Message {
    let merchant = &sandbox.config.merchant;
    notify.insert("appid".into(), merchant.appid.clone());
    notify.insert("mch_id".into(), merchant.mch_id.clone());
    notify.insert("nonce_str".into(), nonce_str());
    if sandbox.faults().draw_notify_sign_type() {
        notify.insert("sign_type".into(), sign_type.as_str().into());
    }
    let signature = sign::sign(&notify, &merchant.key, sign_type);
    notify.insert("sign".into(), signature);
    Message::Xml(xml::encode(&notify))
}

/// Starts delivering a payment's notify.
fn start_delivery(sandbox: &Arc<Sandbox>, no: String, url: String, message: Message) {
    let task_sandbox = Arc::clone(sandbox);
    // On the application runtime, with the connections it opens: a delivery outlives the
    // sandbox worker that took the payment.
    let subject = Subject::Payment { out_trade_no: no };
    sandbox.deliveries.spawn_on(
        deliver(task_sandbox, subject, url, message),
        sandbox.rt.handle(),
    );
}

/// What a notify is about: where its attempts are counted and which faults apply to it.
#[derive(Debug, Clone)]
pub(super) enum Subject {
    /// A payment's notify (or a declined payment's, under the `fail_notify` fault).
    Payment { out_trade_no: String },
    /// A refund's notify, once the refund settled.
    Refund {
        out_trade_no: String,
        out_refund_no: String,
    },
}

impl Subject {
    /// Counts one attempt, for the sandbox and for the order or refund.
    fn record(&self, sandbox: &Sandbox, acknowledged: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut book = sandbox.book();
        match self {
            Subject::Payment { out_trade_no } => {
                sandbox.counters.notify_attempts.fetch_add(1, Relaxed);
                if let Some(order) = book.get_mut(out_trade_no) {
                    order.notify_attempts += 1;
                    order.notify_acknowledged |= acknowledged;
                }
            }
            Subject::Refund {
                out_trade_no,
                out_refund_no,
            } => {
                sandbox
                    .counters
                    .refund_notify_attempts
                    .fetch_add(1, Relaxed);
                let refund = book
                    .get_mut(out_trade_no)
                    .and_then(|order| order.refund_mut(out_refund_no));
                if let Some(refund) = refund {
                    refund.notify_attempts += 1;
                    refund.notify_acknowledged |= acknowledged;
                }
            }
        }
    }
}

/// Delivers one notify: at once, then after each wait of the schedule, until acknowledged.
/// Payment notifies may be dropped or doubled by faults, refund notifies dropped.
pub(super) async fn deliver(sandbox: Arc<Sandbox>, subject: Subject, url: String, body: Message) {
    if matches!(subject, Subject::Payment { .. }) && sandbox.faults().draw_probe_notify() {
        probe(&sandbox, &url, &body).await;
    }
    for attempt in 0..=NOTIFY_RETRY_SCHEDULE_SECS.len() {
        if attempt > 0 {
            let wait = sandbox.scaled(NOTIFY_RETRY_SCHEDULE_SECS[attempt - 1]);
            tokio::select! {
                _ = sandbox.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let faults = sandbox.faults();
        let (dropped, doubled) = match subject {
            Subject::Payment { .. } => (faults.draw_drop_notify(), faults.draw_duplicate_notify()),
            Subject::Refund { .. } => (faults.draw_drop_refund_notify(), false),
        };
        let acknowledged = if dropped {
            false
        } else if doubled {
            let (a, b) = tokio::join!(send(&sandbox, &url, &body), send(&sandbox, &url, &body));
            a || b
        } else {
            send(&sandbox, &url, &body).await
        };
        subject.record(&sandbox, acknowledged);
        if acknowledged {
            tracing::debug!(?subject, attempt, "sandbox notify acknowledged");
            return;
        }
    }
    tracing::warn!(
        ?subject,
        "sandbox notify never acknowledged; giving up as WeChat does"
    );
}

/// WeChat's signature probe: the notify with a signature made with another key (v3: a
/// `Wechatpay-Signature` starting `WECHATPAY/SIGNTEST/`), which a shop that checks signatures
/// refuses. Its answer is counted, never retried.
async fn probe(sandbox: &Sandbox, url: &str, message: &Message) {
    let body = match message {
        Message::Xml(body) => body,
        Message::Json(body) => {
            let answered = super::v3::send_probe(sandbox, url, body).await;
            count_probe(sandbox, answered);
            return;
        }
    };
    let Ok(mut fields) = xml::decode(body.as_bytes()) else {
        return;
    };
    let sign_type = fields
        .get("sign_type")
        .and_then(|t| t.parse().ok())
        .unwrap_or(SignType::Md5);
    fields.remove("sign");
    let other_key = secrecy::SecretString::from("0123456789abcdef0123456789abcdef");
    let forged = sign::sign(&fields, &other_key, sign_type);
    fields.insert("sign".into(), forged);
    let answered = send(sandbox, url, &Message::Xml(xml::encode(&fields))).await;
    count_probe(sandbox, answered);
}

fn count_probe(sandbox: &Sandbox, acknowledged: bool) {
    let counter = if acknowledged {
        tracing::warn!("the shop acknowledged a mis-signed probe notify");
        &sandbox.counters.probe_notifies_acknowledged
    } else {
        &sandbox.counters.probe_notifies_refused
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// One POST; true when the answer acknowledges it.
async fn send(sandbox: &Sandbox, url: &str, message: &Message) -> bool {
    let body = match message {
        Message::Xml(body) => body,
        Message::Json(body) => return super::v3::send_notify(sandbox, url, body).await,
    };
    let request = sandbox
        .notify_http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/xml")
        .body(body.to_owned())
        .send();
    let response = tokio::select! {
        _ = sandbox.shutdown.cancelled() => return false,
        response = request => response,
    };
    let Ok(response) = response else {
        return false;
    };
    if !response.status().is_success() {
        return false;
    }
    match response.bytes().await {
        Ok(answer) => xml::decode(&answer)
            .is_ok_and(|f| f.get("return_code").map(String::as_str) == Some("SUCCESS")),
        Err(_) => false,
    }
}
