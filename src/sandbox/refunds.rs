//! WeChat's side of refunds: the `/secapi/pay/refund` call (its checks in WeChat's order, and the
//! same `out_refund_no` answered again without refunding twice — what a merchant's exactly-once
//! relies on), then the settlement [`REFUND_SETTLE_SECS`] later and the refund notify. No HTTP
//! here: `http.rs` serves the call on the TLS listener only, with the faults every call has.

use std::sync::Arc;

use super::api::{
    amount, cash_fee, check_notify_url, lack, malformed, named_order, non_empty, Answer,
    Authenticated, Refusal, FOREIGN_NOTIFY_URL,
};
use super::delivery::{self, Message, Subject};
use super::faults::RefundFault;
use super::state::{self, Refund, Trade};
use super::{Sandbox, REFUND_SETTLE_SECS};
use crate::wxpay::refund::{
    refund_notify_body, RefundEntry, RefundNotice, RefundResponse, MAX_REFUNDS,
};
use crate::wxpay::{nonce_str, ErrCode, Fields, RefundStatus};

// WeChat's texts, as merchants quote its answers: the mismatch one for a changed repeat of an
// `out_refund_no` or a `total_fee` that is not the order's, `refund_fee大于可退金额` for a refund
// past what is left, the balance one for NOTENOUGH, the frequency one for FREQUENCY_LIMITED.
// The codes are simplified: merchants see the mismatch text with `REFUND_FEE_MISMATCH`, a
// refund of a fully refunded order as `ERROR` 订单已全额退款, and a `refund_fee` above
// `total_fee` as `return_code=FAIL` `invalid refund_fee`; here all three are `INVALID_REQUEST`,
// one permanent refusal for a client to handle.
const MISMATCH: &str = "订单金额或退款金额与之前请求不一致，请核实后再试";
const NOT_PAID: &str = "订单未支付";
const OVER_AMOUNT: &str = "退款金额大于支付金额";
const OVER_LEFT: &str = "refund_fee大于可退金额";
const TOO_MANY: &str = "每个支付订单的部分退款次数不能超过50次";
const NOT_ENOUGH: &str = "基本账户余额不足，请充值后重新发起";
const ACCOUNT_ABNORMAL: &str = "退款请求失败，用户帐号异常";
const FREQUENCY_LIMITED: &str = "请求频率过高，请稍后重试";
/// The sandbox's own refusal (no WeChat text is known for it).
const REFUND_NO_ELSEWHERE: &str = "out_refund_no已用于其他订单";
/// Where a sandbox refund goes back to: the payer's WeChat balance.
pub(super) const RECEIVED_BY: &str = "支付用户零钱";

/// A refund request's values, checked.
struct CheckedRefund {
    out_refund_no: String,
    total_fee: i64,
    refund_fee: i64,
    notify_url: Option<String>,
}

impl Sandbox {
    /// `/secapi/pay/refund`. A new refund is `PROCESSING` and settles later; the same
    /// `out_refund_no` with the same amounts gets the first answer again, refunding nothing.
    /// Refusals leave nothing behind, so the merchant retries with the same number.
    pub(super) fn refund(self: &Arc<Self>, request: &Authenticated) -> Result<Answer, String> {
        let Authenticated { fields, sign_type } = request;
        let sign_type = *sign_type;
        let fault = self.faults().draw_refund();
        if fault == RefundFault::FrequencyLimited {
            return Ok(Answer::fail(
                sign_type,
                ErrCode::FrequencyLimited,
                FREQUENCY_LIMITED,
            ));
        }
        let checked = match check_refund(fields) {
            Ok(checked) => checked,
            Err(Refusal::Parameter(message)) => return Err(message),
            Err(Refusal::Business(code, des)) => return Ok(Answer::fail(sign_type, code, &des)),
        };
        if let (Some(only), Some(url)) = (&self.config.refund_notify_only, &checked.notify_url) {
            if only.as_str() != url {
                return Err(FOREIGN_NOTIFY_URL.into());
            }
        }
        let fail = |code, des: &str| Ok(Answer::fail(sign_type, code, des));
        let now = self.now();
        let mut book = self.book();
        let Some(order) = named_order(&book, fields)? else {
            return fail(ErrCode::OrderNotExist, "订单不存在");
        };
        if book
            .refund_owner(&checked.out_refund_no)
            .is_some_and(|owner| owner != order.out_trade_no)
        {
            return fail(ErrCode::InvalidRequest, REFUND_NO_ELSEWHERE);
        }
        let Some(payment) = &order.payment else {
            return fail(ErrCode::Error, NOT_PAID);
        };
        if checked.total_fee != order.total_fee {
            return fail(ErrCode::InvalidRequest, MISMATCH);
        }
        if let Some(earlier) = order.refund(&checked.out_refund_no) {
            if earlier.entry.refund_fee != checked.refund_fee {
                return fail(ErrCode::InvalidRequest, MISMATCH);
            }
            return Ok(Answer::success(
                sign_type,
                refund_fields(order, &earlier.entry),
            ));
        }
        if order.refunds.len() >= MAX_REFUNDS {
            return fail(ErrCode::Error, TOO_MANY);
        }
        if checked.refund_fee > order.total_fee {
            return fail(ErrCode::InvalidRequest, OVER_AMOUNT);
        }
        if checked.refund_fee > order.refundable() {
            return fail(ErrCode::InvalidRequest, OVER_LEFT);
        }
        match fault {
            RefundFault::NotEnough => return fail(ErrCode::NotEnough, NOT_ENOUGH),
            RefundFault::AccountAbnormal => {
                return fail(ErrCode::UserAccountAbnormal, ACCOUNT_ABNORMAL)
            }
            RefundFault::None | RefundFault::FrequencyLimited => {}
        }

        let refund = Refund {
            entry: RefundEntry {
                out_refund_no: checked.out_refund_no.clone(),
                refund_id: state::new_refund_id(now),
                refund_fee: checked.refund_fee,
                status: RefundStatus::Processing,
                success_time: None,
            },
            notify_url: checked.notify_url,
            created_at: now,
            notify_attempts: 0,
            notify_acknowledged: false,
            v3: false,
        };
        tracing::debug!(
            out_trade_no = %order.out_trade_no,
            transaction_id = %payment.transaction_id,
            out_refund_no = %refund.entry.out_refund_no,
            refund_fee = refund.entry.refund_fee,
            "sandbox refund accepted"
        );
        let no = order.out_trade_no.clone();
        let order = book
            .add_refund(&no, refund)
            .expect("the order was just found");
        let entry = &order
            .refunds
            .last()
            .expect("the refund was just added")
            .entry;
        let answer = Answer::success(sign_type, refund_fields(order, entry));
        drop(book);
        self.start_settlement(no, checked.out_refund_no);
        Ok(answer)
    }

    /// Settles a refund later, on the application runtime, tracked with the deliveries so that
    /// shutdown cancels it.
    pub(super) fn start_settlement(self: &Arc<Self>, out_trade_no: String, out_refund_no: String) {
        let sandbox = Arc::clone(self);
        self.deliveries.spawn_on(
            settle(sandbox, out_trade_no, out_refund_no),
            self.rt.handle(),
        );
    }
}

/// After [`REFUND_SETTLE_SECS`]: the refund ends `SUCCESS` (or `REFUNDCLOSE` / `CHANGE` as the
/// faults draw), and its notify is delivered when the request gave a `notify_url`.
async fn settle(sandbox: Arc<Sandbox>, out_trade_no: String, out_refund_no: String) {
    tokio::select! {
        _ = sandbox.shutdown.cancelled() => return,
        _ = tokio::time::sleep(sandbox.scaled(REFUND_SETTLE_SECS)) => {}
    }
    let status = sandbox.faults().draw_refund_outcome();
    let now = sandbox.now();
    let notify = {
        let mut book = sandbox.book();
        // Forgotten meanwhile (beyond max_orders): nothing is left to settle.
        let Some(order) = book.get_mut(&out_trade_no) else {
            return;
        };
        let transaction_id = order
            .payment
            .as_ref()
            .map(|p| p.transaction_id.clone())
            .unwrap_or_default();
        let (total_fee, split) = (order.total_fee, Split::of(order));
        let Some(refund) = order.refund_mut(&out_refund_no) else {
            return;
        };
        refund.entry.status = status.clone();
        refund.entry.success_time =
            (status == RefundStatus::Success).then(|| state::refund_success_time(now));
        if refund.v3 {
            let refund = refund.clone();
            let order = &*order;
            refund.notify_url.clone().map(|url| {
                let message = super::v3::refund_notify(&sandbox, order, &refund, now);
                (url, message)
            })
        } else {
            refund.notify_url.clone().map(|url| {
                let notice = RefundNotice {
                    out_trade_no: out_trade_no.clone(),
                    transaction_id,
                    out_refund_no: out_refund_no.clone(),
                    refund_id: refund.entry.refund_id.clone(),
                    total_fee,
                    refund_fee: refund.entry.refund_fee,
                    settlement_refund_fee: Some(split.cash(refund.entry.refund_fee)),
                    status,
                    success_time: refund.entry.success_time.clone(),
                    refund_recv_accout: Some(RECEIVED_BY.into()),
                    settlement_total_fee: Some(split.cash(total_fee)),
                    refund_account: Some("REFUND_SOURCE_UNSETTLED_FUNDS".into()),
                    refund_request_source: Some("API".into()),
                };
                let body = refund_notify_body(&sandbox.config.merchant, &notice, &nonce_str());
                (url, Message::Xml(body))
            })
        }
    };
    tracing::debug!(%out_trade_no, %out_refund_no, "sandbox refund settled");
    let Some((url, message)) = notify else {
        return;
    };
    let subject = Subject::Refund {
        out_trade_no,
        out_refund_no,
    };
    delivery::deliver(sandbox, subject, url, message).await;
}

/// WeChat's checks of a refund request's parameters, before any order is looked at.
fn check_refund(f: &Fields) -> Result<CheckedRefund, Refusal> {
    if non_empty(f, "transaction_id").is_none() && non_empty(f, "out_trade_no").is_none() {
        return Err(lack("out_trade_no或transaction_id"));
    }
    for name in ["out_refund_no", "total_fee", "refund_fee"] {
        non_empty(f, name).ok_or_else(|| lack(name))?;
    }
    let get = |name: &str| non_empty(f, name).unwrap_or_default();
    let out_refund_no = get("out_refund_no");
    let charset_ok = out_refund_no
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'));
    if out_refund_no.len() > 64 || !charset_ok {
        return Err(malformed("out_refund_no参数格式错误"));
    }
    let total_fee = amount(get("total_fee")).ok_or_else(|| malformed("invalid total_fee"))?;
    let refund_fee = amount(get("refund_fee")).ok_or_else(|| malformed("invalid refund_fee"))?;
    if non_empty(f, "refund_fee_type").is_some_and(|t| t != "CNY") {
        return Err(malformed("refund_fee_type参数格式错误"));
    }
    if non_empty(f, "refund_desc").is_some_and(|d| d.chars().count() > 80) {
        return Err(malformed("refund_desc参数长度有误"));
    }
    let notify_url = non_empty(f, "notify_url");
    if let Some(url) = notify_url {
        check_notify_url(url)?;
    }
    Ok(CheckedRefund {
        out_refund_no: out_refund_no.to_owned(),
        total_fee,
        refund_fee,
        notify_url: notify_url.map(str::to_owned),
    })
}

/// How a payment splits between cash and a (免充值, `NO_CASH`) coupon; a refund goes back in
/// the same proportion.
#[derive(Debug, Clone, Copy)]
pub(super) struct Split {
    total_fee: i64,
    coupon_fee: i64,
}

impl Split {
    pub(super) fn of(order: &Trade) -> Split {
        Split {
            total_fee: order.total_fee,
            coupon_fee: order.total_fee - cash_fee(order),
        }
    }

    /// The coupon's part of a refund (rounded down; a full refund returns the whole coupon).
    pub(super) fn coupon(self, refund_fee: i64) -> i64 {
        if self.total_fee == 0 {
            return 0;
        }
        // i128: fen times fen can pass i64 for the largest amounts.
        (i128::from(refund_fee) * i128::from(self.coupon_fee) / i128::from(self.total_fee)) as i64
    }

    /// The cash part of a refund: what goes back to the payer (`cash_refund_fee`, and
    /// `settlement_refund_fee` since a `NO_CASH` coupon is not settled).
    pub(super) fn cash(self, refund_fee: i64) -> i64 {
        refund_fee - self.coupon(refund_fee)
    }
}

/// A refund's success answer: [`RefundResponse`]'s fields with the cash and coupon split
/// WeChat adds.
fn refund_fields(order: &Trade, entry: &RefundEntry) -> Fields {
    let response = RefundResponse {
        out_trade_no: order.out_trade_no.clone(),
        out_refund_no: entry.out_refund_no.clone(),
        transaction_id: order.payment.as_ref().map(|p| p.transaction_id.clone()),
        refund_id: entry.refund_id.clone(),
        refund_fee: entry.refund_fee,
        total_fee: order.total_fee,
    };
    let mut f = response.to_fields();
    let split = Split::of(order);
    let coupon = split.coupon(entry.refund_fee);
    f.insert("cash_fee".into(), cash_fee(order).to_string());
    f.insert(
        "cash_refund_fee".into(),
        split.cash(entry.refund_fee).to_string(),
    );
    f.insert("coupon_refund_fee".into(), coupon.to_string());
    f.insert(
        "coupon_refund_count".into(),
        if coupon > 0 { "1" } else { "0" }.into(),
    );
    if coupon > 0 {
        f.insert("coupon_type_0".into(), "NO_CASH".into());
        f.insert("coupon_refund_id_0".into(), "10000".into());
        f.insert("coupon_refund_fee_0".into(), coupon.to_string());
    }
    if split.coupon_fee > 0 {
        f.insert(
            "settlement_total_fee".into(),
            (order.total_fee - split.coupon_fee).to_string(),
        );
        f.insert(
            "settlement_refund_fee".into(),
            split.cash(entry.refund_fee).to_string(),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parameter_error(f: &Fields) -> String {
        match check_refund(f) {
            Err(Refusal::Parameter(message)) => message,
            Err(Refusal::Business(code, des)) => panic!("business {code} {des}"),
            Ok(_) => panic!("accepted {f:?}"),
        }
    }

    #[test]
    fn refund_parameters_are_checked_before_any_order() {
        let good = [
            ("out_trade_no", "o1"),
            ("out_refund_no", "R1"),
            ("total_fee", "100"),
            ("refund_fee", "40"),
        ];
        let checked = check_refund(&fields(&good)).ok().unwrap();
        assert_eq!((checked.total_fee, checked.refund_fee), (100, 40));
        assert_eq!(
            parameter_error(&fields(&good[1..])),
            "缺少参数out_trade_no或transaction_id"
        );
        for (i, name) in ["out_refund_no", "total_fee", "refund_fee"]
            .into_iter()
            .enumerate()
        {
            let mut missing = good.to_vec();
            missing.remove(i + 1);
            assert_eq!(
                parameter_error(&fields(&missing)),
                format!("缺少参数{name}")
            );
        }
        for (name, value, message) in [
            ("refund_fee", "0", "invalid refund_fee"),
            ("refund_fee", "1.5", "invalid refund_fee"),
            ("total_fee", "-1", "invalid total_fee"),
            ("out_refund_no", "R 1", "out_refund_no参数格式错误"),
            ("refund_fee_type", "USD", "refund_fee_type参数格式错误"),
            ("notify_url", "ftp://x/y", "notify_url参数格式错误"),
        ] {
            let mut bad = fields(&good);
            bad.insert(name.into(), value.into());
            assert_eq!(parameter_error(&bad), message, "{name}={value}");
        }
        let mut with_query = fields(&good);
        with_query.insert("notify_url".into(), "http://shop/n?x=1".into());
        assert!(matches!(
            check_refund(&with_query),
            Err(Refusal::Business(ErrCode::InvalidRequest, _))
        ));
    }

    #[test]
    fn a_coupon_is_refunded_in_proportion() {
        let split = Split {
            total_fee: 1000,
            coupon_fee: 300,
        };
        assert_eq!((split.coupon(1000), split.cash(1000)), (300, 700));
        assert_eq!((split.coupon(333), split.cash(333)), (99, 234));
        let none = Split {
            total_fee: 1000,
            coupon_fee: 0,
        };
        assert_eq!(none.cash(250), 250);
    }
}
