//! v3's messages of the sandbox's trades and refunds (the query's transaction, the refund, the
//! notifies' plaintexts) and the notifies themselves: sealed with the APIv3 key by
//! [`crate::wxpay::v3::notify::seal`], signed with WeChat Pay's key at each attempt.

use chrono::{DateTime, SecondsFormat, Utc};

use super::super::delivery::Message;
use super::super::refunds::{Split, RECEIVED_BY};
use super::super::state::{Refund, Trade};
use super::super::Sandbox;
use crate::wxpay::time::beijing;
use crate::wxpay::v3::auth::SignedHeaders;
use crate::wxpay::v3::notify::{random_text, seal, Event};
use crate::wxpay::v3::types::{
    self, Payer, RefundAmount, RefundNotice, RefundNoticeAmount, Transaction, TransactionAmount,
};
use crate::wxpay::{RefundStatus, TradeState};

/// An instant as v3 writes it: RFC 3339, Beijing time, `2026-12-01T10:34:56+08:00`.
pub(super) fn rfc3339(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A refund's `success_time` (kept as v2's `yyyy-MM-dd HH:mm:ss`, Beijing) in v3's form.
fn refund_time(v2: &str) -> String {
    format!("{}+08:00", v2.replacen(' ', "T", 1))
}

/// v3's name of a trade state; a state v3 has no name for (one set by the test control) is
/// written as it is, for the merchant's client to meet.
fn trade_state(state: &TradeState) -> Result<types::TradeState, String> {
    Ok(match state {
        TradeState::Success => types::TradeState::Success,
        TradeState::Refund => types::TradeState::Refund,
        TradeState::NotPay => types::TradeState::NotPay,
        TradeState::Closed => types::TradeState::Closed,
        TradeState::Revoked => types::TradeState::Revoked,
        TradeState::UserPaying => types::TradeState::UserPaying,
        TradeState::PayError => types::TradeState::PayError,
        TradeState::Other(other) => return Err(other.clone()),
    })
}

fn trade_state_desc(state: &TradeState) -> &'static str {
    match state {
        TradeState::Success => "支付成功",
        TradeState::Refund => "转入退款",
        TradeState::NotPay => "订单未支付",
        TradeState::Closed => "订单已关闭",
        TradeState::Revoked => "已撤销",
        TradeState::UserPaying => "用户支付中",
        TradeState::PayError => "支付失败，请重新下单支付",
        TradeState::Other(_) => "",
    }
}

/// The transaction as a v3 query answers it (and a payment notify carries it): the payment's
/// fields once paid; before, the amount's total alone, as WeChat's.
pub(super) fn transaction(sandbox: &Sandbox, order: &Trade) -> serde_json::Value {
    let merchant = &sandbox.config.merchant;
    let payment = order.payment.as_ref();
    let cash = order.total_fee - payment.and_then(|p| p.coupon_fee).unwrap_or(0);
    let transaction = Transaction {
        appid: merchant.appid.clone(),
        mchid: merchant.mch_id.clone(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: payment.map(|p| p.transaction_id.clone()),
        trade_type: payment.map(|_| order.trade_type().to_owned()),
        trade_state: trade_state(&order.state).unwrap_or(types::TradeState::NotPay),
        trade_state_desc: trade_state_desc(&order.state).to_owned(),
        bank_type: payment.map(|p| p.bank_type.clone()),
        attach: Some(order.attach.clone().unwrap_or_default()),
        success_time: payment.map(|p| rfc3339(p.time_end)),
        payer: payment.map(|p| Payer {
            openid: p.openid.clone(),
        }),
        amount: Some(TransactionAmount {
            total: Some(order.total_fee),
            payer_total: payment.map(|_| cash),
            currency: payment.map(|_| "CNY".to_owned()),
            payer_currency: Some("CNY".to_owned()),
        }),
    };
    let mut value = serde_json::to_value(&transaction).expect("a transaction serialises");
    if let Err(other) = trade_state(&order.state) {
        value["trade_state"] = serde_json::Value::String(other);
    }
    value
}

/// v3's refund status of a v2 one (`REFUNDCLOSE` is `CLOSED`, `CHANGE` is `ABNORMAL`).
fn refund_status(status: &RefundStatus) -> types::RefundStatus {
    match status {
        RefundStatus::Success => types::RefundStatus::Success,
        RefundStatus::Processing => types::RefundStatus::Processing,
        RefundStatus::RefundClose => types::RefundStatus::Closed,
        _ => types::RefundStatus::Abnormal,
    }
}

/// A refund as v3's refund call and refund query answer it.
pub(super) fn refund(order: &Trade, refund: &Refund) -> types::Refund {
    let split = Split::of(order);
    let entry = &refund.entry;
    types::Refund {
        refund_id: entry.refund_id.clone(),
        out_refund_no: entry.out_refund_no.clone(),
        transaction_id: transaction_id(order),
        out_trade_no: order.out_trade_no.clone(),
        channel: "ORIGINAL".into(),
        user_received_account: RECEIVED_BY.into(),
        success_time: entry.success_time.as_deref().map(refund_time),
        create_time: rfc3339(refund.created_at),
        status: refund_status(&entry.status),
        funds_account: Some("UNSETTLED".into()),
        amount: RefundAmount {
            total: order.total_fee,
            refund: entry.refund_fee,
            payer_total: split.cash(order.total_fee),
            payer_refund: split.cash(entry.refund_fee),
            settlement_refund: Some(split.cash(entry.refund_fee)),
            settlement_total: Some(split.cash(order.total_fee)),
            discount_refund: Some(split.coupon(entry.refund_fee)),
            currency: "CNY".into(),
        },
    }
}

fn transaction_id(order: &Trade) -> String {
    order
        .payment
        .as_ref()
        .map(|p| p.transaction_id.clone())
        .unwrap_or_default()
}

/// A notify's id, as WeChat's: a UUID.
fn notify_id() -> String {
    let hex = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn sealed(sandbox: &Sandbox, event: &Event, now: DateTime<Utc>) -> Message {
    let keys = sandbox.v3_keys();
    // The signature headers made here are dropped: each attempt signs afresh (see `send_notify`).
    let (body, _) = seal(
        event,
        &notify_id(),
        &rfc3339(now),
        &sandbox.apiv3_key,
        keys.pay_signer(),
        keys.pay_key_id(),
        sandbox.v3_timestamp(),
    );
    Message::Json(body)
}

/// The `TRANSACTION.SUCCESS` notify of a paid trade.
pub(in crate::sandbox) fn payment_notify(
    sandbox: &Sandbox,
    order: &Trade,
    now: DateTime<Utc>,
) -> Message {
    let transaction: Transaction = serde_json::from_value(transaction(sandbox, order))
        .expect("a paid trade's transaction reads back");
    sealed(sandbox, &Event::Paid(transaction), now)
}

/// The `REFUND.SUCCESS` / `REFUND.CLOSED` / `REFUND.ABNORMAL` notify of a settled refund.
pub(in crate::sandbox) fn refund_notify(
    sandbox: &Sandbox,
    order: &Trade,
    refund: &Refund,
    now: DateTime<Utc>,
) -> Message {
    let split = Split::of(order);
    let entry = &refund.entry;
    let notice = RefundNotice {
        mchid: sandbox.config.merchant.mch_id.clone(),
        out_trade_no: order.out_trade_no.clone(),
        transaction_id: transaction_id(order),
        out_refund_no: entry.out_refund_no.clone(),
        refund_id: entry.refund_id.clone(),
        refund_status: refund_status(&entry.status),
        success_time: entry.success_time.as_deref().map(refund_time),
        user_received_account: RECEIVED_BY.into(),
        amount: RefundNoticeAmount {
            total: order.total_fee,
            refund: entry.refund_fee,
            payer_total: split.cash(order.total_fee),
            payer_refund: split.cash(entry.refund_fee),
        },
    };
    sealed(sandbox, &Event::Refund(notice), now)
}

/// One v3 notify POST, signed now; true when answered 2xx (WeChat: 200 or 204, no body needed).
pub(in crate::sandbox) async fn send_notify(sandbox: &Sandbox, url: &str, body: &[u8]) -> bool {
    let keys = sandbox.v3_keys();
    let headers = SignedHeaders::sign(
        keys.pay_signer(),
        keys.pay_key_id(),
        body,
        sandbox.v3_timestamp(),
        &random_text(32),
    );
    post(sandbox, url, body, headers).await
}

/// WeChat's signature probe in v3: the notify with a `Wechatpay-Signature` that starts
/// `WECHATPAY/SIGNTEST/`, which a shop must refuse. True when it was acknowledged (wrongly).
pub(in crate::sandbox) async fn send_probe(sandbox: &Sandbox, url: &str, body: &[u8]) -> bool {
    use base64::Engine as _;
    let keys = sandbox.v3_keys();
    let mut headers = SignedHeaders::sign(
        keys.pay_signer(),
        keys.pay_key_id(),
        body,
        sandbox.v3_timestamp(),
        &random_text(32),
    );
    let noise: [u8; 32] = rand::random();
    headers.signature = Some(format!(
        "WECHATPAY/SIGNTEST/{}",
        base64::engine::general_purpose::STANDARD.encode(noise)
    ));
    post(sandbox, url, body, headers).await
}

async fn post(sandbox: &Sandbox, url: &str, body: &[u8], headers: SignedHeaders) -> bool {
    let mut request = sandbox
        .notify_http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let response = tokio::select! {
        _ = sandbox.shutdown.cancelled() => return false,
        response = request.send() => response,
    };
    response.is_ok_and(|r| r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_v3_writes_them() {
        let at = DateTime::parse_from_rfc3339("2026-12-01T02:34:56Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rfc3339(at), "2026-12-01T10:34:56+08:00");
        assert_eq!(
            refund_time("2026-12-01 10:35:56"),
            "2026-12-01T10:35:56+08:00"
        );
        let id = notify_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
