//! What an order query's answer means for the order: a payment WeChat reports is confirmed
//! through the payments channel (like a notify) and the caller waits briefly for the consumer
//! to apply it.

use std::time::Duration;

use super::{Checkout, CheckoutError};
use crate::domain::{Fen, OutTradeNo};
use crate::payments;
use crate::store::{Order, PaymentEvent, PaymentResult, PaymentSource, CNY};
use crate::wxpay::types::OrderQueryResponse;
use crate::wxpay::TradeState;

/// How long a caller waits for the consumer to apply a payment it just confirmed.
pub const APPLY_WAIT: Duration = Duration::from_secs(2);

impl Checkout {
    /// Asks WeChat about an order and, if it was paid, confirms the payment and waits briefly
    /// for it to be applied. Returns the order as it then stands.
    pub(super) async fn confirm_by_query(
        &self,
        order: Order,
        source: PaymentSource,
    ) -> Result<Order, CheckoutError> {
        let no = order.out_trade_no.clone();
        self.confirm_attempt_by_query(order, &no, source).await
    }

    /// Asks WeChat about one of the order's numbers (its own, or a payment attempt's) and, if
    /// it was paid, confirms the payment and waits briefly for it to be applied.
    pub(super) async fn confirm_attempt_by_query(
        &self,
        order: Order,
        wechat_no: &OutTradeNo,
        source: PaymentSource,
    ) -> Result<Order, CheckoutError> {
        let query = self
            .wechat()
            .order_query(wechat_no.as_str())
            .await
            .map_err(|e| CheckoutError::wechat(e, &order.out_trade_no))?;
        self.apply_query(order, wechat_no, &query, source).await
    }

    /// Confirms the payment a query reports (if any) and returns the order as it then stands.
    /// A failed attempt (`PAYERROR`) or a refund made outside the shop (`REFUND`) is noted on
    /// the order, for the shopper and the merchant to see.
    pub(super) async fn apply_query(
        &self,
        order: Order,
        wechat_no: &OutTradeNo,
        query: &OrderQueryResponse,
        source: PaymentSource,
    ) -> Result<Order, CheckoutError> {
        let state = query.trade_state.as_str();
        let noted = matches!(query.trade_state, TradeState::PayError | TradeState::Refund)
            && order.wechat_state.as_deref() != Some(state);
        if noted {
            self.store()
                .note_wechat_state(&order.out_trade_no, state)
                .await?;
        }
        if *wechat_no != order.out_trade_no && noted {
            self.store().note_attempt_state(wechat_no, state).await?;
        }
        if noted && query.trade_state == TradeState::PayError {
            self.announce(&order.out_trade_no, super::push::OrderChange::PayError)
                .await;
        }
        let Some(event) = event_from_query(&order, wechat_no, query, source) else {
            return match noted {
                true => self.load(&order.out_trade_no).await,
                false => Ok(order),
            };
        };
        let mut applied = self.inner.payments.subscribe();
        let recorded = self.inner.payments.confirm(&event).await?;
        if !recorded.applied {
            payments::wait_applied(&mut applied, &order.out_trade_no, APPLY_WAIT).await;
        }
        self.load(&order.out_trade_no).await
    }
}

/// The payment an order query reports — `SUCCESS`, or `REFUND` (paid, then refunded outside the
/// shop) — as WeChat reports it (the query's signature was verified by the client). An amount
/// or currency other than the order's is recorded as reported: applying it marks the money as
/// due back. A malformed transaction id is logged and never recorded.
pub(super) fn event_from_query(
    order: &Order,
    wechat_no: &OutTradeNo,
    query: &OrderQueryResponse,
    source: PaymentSource,
) -> Option<PaymentEvent> {
    let paid = matches!(query.trade_state, TradeState::Success | TradeState::Refund);
    if !paid || query.out_trade_no != wechat_no.as_str() {
        return None;
    }
    let (Some(transaction_id), Some(total_fee), Some(time_end)) =
        (&query.transaction_id, query.total_fee, &query.time_end)
    else {
        return None;
    };
    let reported = Reported {
        transaction_id,
        total_fee,
        fee_type: query.fee_type.as_deref().unwrap_or(CNY),
        cash_fee: query.cash_fee,
        coupon_fee: query.coupon_fee,
        time_end,
    };
    let event = payment_event(order, &reported, source).map(|mut event| {
        event.wechat_no = (*wechat_no != order.out_trade_no).then(|| wechat_no.clone());
        event
    });
    if event.is_none() {
        tracing::error!(
            out_trade_no = %order.out_trade_no,
            "WeChat reports a payment this shop cannot record (malformed fields); not recorded"
        );
    }
    event
}

/// A payment as WeChat reported it, in a notify or a query (signature verified).
pub(super) struct Reported<'a> {
    pub transaction_id: &'a str,
    pub total_fee: i64,
    pub fee_type: &'a str,
    /// What the shopper paid in cash, and what coupons paid, when WeChat says.
    pub cash_fee: Option<i64>,
    pub coupon_fee: Option<i64>,
    pub time_end: &'a str,
}

/// A payment WeChat reported for `order`, if its fields are well-formed: a transaction id of
/// 1–32 letters and digits, a positive amount, a currency code, a Beijing `time_end`. (Cash and
/// coupon parts are recorded as reported: money WeChat took is never refused for its details.)
pub(super) fn payment_event(
    order: &Order,
    paid: &Reported<'_>,
    source: PaymentSource,
) -> Option<PaymentEvent> {
    let well_formed = (1..=32).contains(&paid.transaction_id.len())
        && paid
            .transaction_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        && paid.total_fee > 0
        && (1..=16).contains(&paid.fee_type.len())
        && paid.fee_type.bytes().all(|b| b.is_ascii_alphabetic());
    if !well_formed {
        return None;
    }
    if paid.total_fee != order.total_fee.0 || paid.fee_type != CNY {
        tracing::error!(
            out_trade_no = %order.out_trade_no,
            expected = order.total_fee.0,
            reported = paid.total_fee,
            fee_type = paid.fee_type,
            "WeChat reports a payment of another amount: recorded, and due back"
        );
    }
    let pay_time = crate::wxpay::time::parse_beijing(paid.time_end).ok()?;
    Some(PaymentEvent {
        wechat_no: None,
        out_trade_no: order.out_trade_no.clone(),
        result: PaymentResult::Paid {
            transaction_id: paid.transaction_id.to_owned(),
            pay_time,
        },
        total_fee: Fen(paid.total_fee),
        fee_type: paid.fee_type.to_owned(),
        cash_fee: paid.cash_fee.map(Fen),
        coupon_fee: paid.coupon_fee.map(Fen),
        source,
    })
}
