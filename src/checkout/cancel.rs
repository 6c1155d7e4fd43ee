//! The shopper's *Cancel order*: the order closes and its stock goes back — but only once WeChat
//! can take no money for it. An order WeChat never heard of closes at once. One with a prepay
//! (a QR code, a phone attempt) is closed at WeChat first, by the reconciliation job's own close
//! (every attempt, then the QR code's number), and WeChat refuses to close an order in its first
//! 5 minutes: until then the wish is noted, the pay page stops offering the code, and the job
//! closes it at the first moment WeChat allows.

use chrono::{DateTime, Utc};

use super::push::OrderChange;
use super::reconcile::Reconciler;
use super::{Checkout, CheckoutError, MIN_CLOSE_AGE};
use crate::domain::OrderStatus;
use crate::store::Order;

/// Where a cancelled order stands.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// Closed, its stock back.
    Closed(Box<Order>),
    /// Noted: WeChat allows closing it at `by`, and the job does so then.
    Closing {
        order: Box<Order>,
        by: DateTime<Utc>,
    },
    /// Nothing to cancel: it was paid or closed already.
    Finished(Box<Order>),
}

impl Checkout {
    /// Cancels a pending order at the shopper's request (see the module doc).
    pub async fn cancel(&self, no: &str) -> Result<Cancelled, CheckoutError> {
        let no = self.order(no).await?.out_trade_no;
        let order = self.load(&no).await?;
        if order.status != OrderStatus::Pending {
            return Ok(Cancelled::Finished(Box::new(order)));
        }
        let now = Utc::now();
        let may_close = order.created_at + MIN_CLOSE_AGE;
        self.store()
            .request_cancel(&no, now, may_close.max(now))
            .await?;
        tracing::info!(out_trade_no = %no, "the shopper asked to cancel the order");
        if order.prepay.is_none() && order.attempts == 0 {
            // WeChat never heard of it: nothing to close there.
            if self
                .store()
                .close_unprepaid(&no, now, Some(chrono::Duration::zero()))
                .await?
            {
                tracing::info!(out_trade_no = %no, "order cancelled by the shopper; stock restored");
                self.announce(&no, OrderChange::Closed).await;
            }
            return Ok(settled(self.load(&no).await?, now));
        }
        if now >= may_close {
            let order = self.load(&no).await?;
            Reconciler::new(self.clone()).close_now(&order, now).await?;
        }
        Ok(match settled(self.load(&no).await?, now) {
            Cancelled::Closing { order, .. } => Cancelled::Closing {
                order,
                by: may_close.max(now),
            },
            other => other,
        })
    }
}

fn settled(order: Order, now: DateTime<Utc>) -> Cancelled {
    match order.status {
        OrderStatus::Closed => Cancelled::Closed(Box::new(order)),
        OrderStatus::Paid => Cancelled::Finished(Box::new(order)),
        OrderStatus::Pending => Cancelled::Closing {
            order: Box::new(order),
            by: now,
        },
    }
}
