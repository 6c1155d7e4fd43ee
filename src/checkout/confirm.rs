//! What an order query's answer means for the order: a payment WeChat reports is confirmed
//! through the payments channel (like a notify) and the caller waits briefly for the consumer
//! to apply it.

use std::time::Duration;

use super::{Checkout, CheckoutError};
use crate::payments;
use crate::store::{Order, PaymentEvent, PaymentResult, PaymentSource};
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
        let query = self
            .wechat()
            .order_query(order.out_trade_no.as_str())
            .await
            .map_err(|e| CheckoutError::wechat(e, &order.out_trade_no))?;
        self.apply_query(order, &query, source).await
    }

    /// Confirms the payment a query reports (if any) and returns the order as it then stands.
    pub(super) async fn apply_query(
        &self,
        order: Order,
        query: &OrderQueryResponse,
        source: PaymentSource,
    ) -> Result<Order, CheckoutError> {
        let Some(event) = event_from_query(&order, query, source) else {
            return Ok(order);
        };
        let mut applied = self.inner.payments.subscribe();
        let recorded = self.inner.payments.confirm(&event).await?;
        if !recorded.applied {
            payments::wait_applied(&mut applied, &order.out_trade_no, APPLY_WAIT).await;
        }
        self.load(&order.out_trade_no).await
    }
}

/// The payment an order query reports, when WeChat says SUCCESS for exactly this order's amount
/// (the query's signature was verified by the client). A SUCCESS with another amount is logged
/// and never applied.
pub(super) fn event_from_query(
    order: &Order,
    query: &OrderQueryResponse,
    source: PaymentSource,
) -> Option<PaymentEvent> {
    if query.trade_state != TradeState::Success || query.out_trade_no != order.out_trade_no.as_str()
    {
        return None;
    }
    let (Some(transaction_id), Some(total_fee), Some(time_end)) =
        (&query.transaction_id, query.total_fee, &query.time_end)
    else {
        return None;
    };
    if total_fee != order.total_fee.0 {
        tracing::error!(
            out_trade_no = %order.out_trade_no,
            expected = order.total_fee.0,
            reported = total_fee,
            "WeChat reports a payment of another amount; not applied"
        );
        return None;
    }
    let pay_time = crate::wxpay::time::parse_beijing(time_end).ok()?;
    Some(PaymentEvent {
        out_trade_no: order.out_trade_no.clone(),
        result: PaymentResult::Paid {
            transaction_id: transaction_id.clone(),
            pay_time,
        },
        total_fee: order.total_fee,
        source,
    })
}
