//! The pay flow: an order's prepay from WeChat, made once and reused.
//!
//! The first visit of a pending order calls unifiedorder with parameters fixed by the order
//! (`time_start`/`time_expire` included), so a re-entry repeats them exactly and WeChat answers
//! with the same prepay. WeChat measures `time_expire` from its own clock and wants 5 minutes at
//! least: an order first shown with less time left has its deadline moved to
//! [`MIN_TIME_TO_PAY`] from now before WeChat hears of it (the shopper gets that time, the stock
//! stays reserved as long), and the stored deadline is what every re-entry sends. Concurrent first visits in this process share one call
//! ([`Flights::share`](super::Flights::share)); visits afterwards reuse the stored prepay until
//! the order's own expiry. `ORDERPAID` is confirmed by a query — never answered by another
//! unifiedorder — and `ORDERCLOSED` means the order is over.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{trade_state, Checkout, CheckoutError, OrderItem, Shopper, UNPREPAID_HOLD};
use crate::domain::{Fen, OrderStatus, OutTradeNo};
use crate::store::{Order, PaymentSource, Prepay};
use crate::wxpay::time::format_beijing;
use crate::wxpay::types::{Trade, UnifiedOrderRequest};
use crate::wxpay::ErrCode;

/// A stored code_url that dies before its order does is replaced when it has less than this
/// left. (With `ORDER_TTL_SECS` within a code_url's 2 hours it never does.)
const PREPAY_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// WeChat refuses a unifiedorder whose `time_expire` is less than 5 minutes after *its* now
/// (not after `time_start`); a minute more allows for clocks that differ and for a replica's
/// re-entry a little later. An order first shown with less time left gets this much: its
/// deadline moves, once, before WeChat hears of it.
pub const MIN_TIME_TO_PAY: chrono::Duration = chrono::Duration::minutes(6);

/// Where a pending order stands once it has a prepay.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Ready to pay: the order with a valid prepay.
    Ready(Order),
    /// It turned out to be paid (or was paid, closed or failed meanwhile): the order as it now
    /// stands.
    Settled(Order),
    /// Its time is up, or WeChat has closed it.
    Over(Order),
}

/// What the pay page shows.
#[derive(Debug, Clone)]
pub enum PayStep {
    /// The QR code to scan.
    Ready {
        order: Order,
        code_url: String,
        items: Arc<Vec<OrderItem>>,
        /// What the page counts down to; see [`Checkout::pay_deadline`].
        deadline: DateTime<Utc>,
    },
    /// Nothing to pay any more: paid, or over (closed, failed, expired).
    Finished(Order),
}

/// The seed front end's `create/native` answer.
#[derive(Debug, Clone)]
pub struct NativeCode {
    pub code_url: String,
    pub out_trade_no: OutTradeNo,
    pub total_fee: Fen,
}

impl Checkout {
    /// The pay page's flow: the order's QR code, or where it ended.
    pub async fn pay(&self, no: &str) -> Result<PayStep, CheckoutError> {
        let order = self.order(no).await?;
        match self.prepare(order).await? {
            Prepared::Ready(order) => {
                let code_url = code_url(&order)?;
                let items = self.items(&order).await?;
                let deadline = self.pay_deadline(&order);
                Ok(PayStep::Ready {
                    order,
                    code_url,
                    items,
                    deadline,
                })
            }
            Prepared::Settled(order) | Prepared::Over(order) => Ok(PayStep::Finished(order)),
        }
    }

    /// The seed front end's flow: the order's code_url. A `total_fee` the caller claims must
    /// agree with the stored amount, which is the one used.
    pub async fn native_code(
        &self,
        no: &str,
        claimed_total_fee: Option<&str>,
        shopper: &Shopper,
    ) -> Result<NativeCode, CheckoutError> {
        if !self
            .inner
            .native_rate
            .allow(shopper, Utc::now().timestamp())
        {
            return Err(CheckoutError::TooMany);
        }
        let order = self.order(no).await?;
        if let Some(claimed) = claimed_total_fee {
            if claimed.trim().parse::<i64>().ok() != Some(order.total_fee.0) {
                return Err(CheckoutError::AmountMismatch);
            }
        }
        match self.prepare(order).await? {
            Prepared::Ready(order) => Ok(NativeCode {
                code_url: code_url(&order)?,
                out_trade_no: order.out_trade_no,
                total_fee: order.total_fee,
            }),
            Prepared::Settled(order) | Prepared::Over(order) => {
                Err(CheckoutError::NotPayable(trade_state(&order)))
            }
        }
    }

    /// Makes sure a pending order has a valid prepay, calling unifiedorder the first time only.
    #[tracing::instrument(skip_all, fields(out_trade_no = %order.out_trade_no))]
    pub async fn prepare(&self, order: Order) -> Result<Prepared, CheckoutError> {
        let order = match known_without_wechat(order, Utc::now(), self.unprepaid_hold()) {
            Standing::Known(known) => return Ok(known),
            Standing::AskWechat(order) => order,
        };
        let key = order.out_trade_no.to_string();
        let this = self.clone();
        self.inner
            .prepays
            .share(&key, || async move {
                this.fetch_prepay(order.out_trade_no).await
            })
            .await
    }

    /// How long an order without a prepay holds its stock, when per-client limits apply.
    pub(super) fn unprepaid_hold(&self) -> Option<chrono::Duration> {
        self.terms().limits_clients().then_some(UNPREPAID_HOLD)
    }

    /// The one unifiedorder of a flight.
    async fn fetch_prepay(&self, no: OutTradeNo) -> Result<Prepared, CheckoutError> {
        // A flight that finished a moment ago may have stored the prepay: read again.
        let now = Utc::now();
        let mut order =
            match known_without_wechat(self.load(&no).await?, now, self.unprepaid_hold()) {
                Standing::Known(known) => return Ok(known),
                Standing::AskWechat(order) => order,
            };
        if order.prepay.is_none() && order.attempts == 0 && order.expires_at < now + MIN_TIME_TO_PAY
        {
            let until = whole_second(now + MIN_TIME_TO_PAY);
            if self.store().extend_expiry(&no, until).await? {
                tracing::info!(out_trade_no = %no, "payment window extended to WeChat's minimum");
            }
            order = self.load(&no).await?;
            if order.status != OrderStatus::Pending {
                return Ok(Prepared::Settled(order));
            }
        }
        let terms = self.terms();
        let request = UnifiedOrderRequest {
            body: order.body.clone(),
            out_trade_no: no.to_string(),
            total_fee: order.total_fee.0,
            spbill_create_ip: terms.spbill_create_ip.clone(),
            notify_url: terms.notify_url.to_string(),
            trade: Trade::Native {
                product_id: order.product_id.clone(),
            },
            attach: None,
            // Fixed by the order, so every re-entry repeats them exactly.
            time_start: Some(format_beijing(order.created_at)),
            time_expire: Some(format_beijing(order.expires_at)),
        };
        match self.wechat().unified_order(&request).await {
            Ok(answer) => {
                let prepay = Prepay {
                    prepay_id: answer.prepay_id,
                    code_url: answer.code_url.unwrap_or_default(),
                    code_url_expires_at: (now + crate::wxpay::PREPAY_VALIDITY)
                        .min(order.expires_at),
                    sign_type: self.wechat().sign_type(),
                };
                self.store().record_prepay(&no, &prepay).await?;
                // Read back: a payment or a close may have landed meanwhile.
                let order = self.load(&no).await?;
                Ok(match order.status {
                    OrderStatus::Pending => Prepared::Ready(order),
                    _ => Prepared::Settled(order),
                })
            }
            Err(e) if e.err_code() == Some(&ErrCode::OrderPaid) => {
                tracing::info!(out_trade_no = %no, "unifiedorder says paid; confirming");
                let order = self.confirm_by_query(order, PaymentSource::Query).await?;
                if order.status == OrderStatus::Pending {
                    return Err(CheckoutError::NotSettled {
                        why: "paid at WeChat, not confirmed here",
                        retry: no,
                    });
                }
                Ok(Prepared::Settled(order))
            }
            Err(e) if e.err_code() == Some(&ErrCode::OrderClosed) => Ok(Prepared::Over(order)),
            Err(e) => {
                if e.is_transient() {
                    tracing::warn!(out_trade_no = %no, error = %e, "unifiedorder failed");
                } else {
                    tracing::error!(out_trade_no = %no, error = %e, "unifiedorder refused");
                }
                Err(CheckoutError::wechat(e, &no))
            }
        }
    }
}

/// Where an order stands when WeChat need not be asked: not pending, past its time, or with a
/// prepay still good; otherwise the order back. A stored prepay that lives as long as its order
/// is reused until the order's own expiry, so the order's last moments make no new
/// unifiedorder.
fn known_without_wechat(
    order: Order,
    now: DateTime<Utc>,
    unprepaid_hold: Option<chrono::Duration>,
) -> Standing {
    if order.status != OrderStatus::Pending {
        return Standing::Known(Prepared::Settled(order));
    }
    let held_too_long = order.prepay.is_none()
        && order.attempts == 0
        && unprepaid_hold.is_some_and(|hold| order.created_at + hold <= now);
    // Past its time, held too long without a prepay, or cancelled by the shopper (closing as
    // soon as WeChat allows): no code to show.
    if order.expires_at <= now || held_too_long || order.cancel_requested_at.is_some() {
        return Standing::Known(Prepared::Over(order));
    }
    let reusable = order.prepay.as_ref().is_some_and(|p| {
        p.code_url_expires_at >= order.expires_at || p.code_url_expires_at > now + PREPAY_MARGIN
    });
    if reusable {
        Standing::Known(Prepared::Ready(order))
    } else {
        Standing::AskWechat(order)
    }
}

/// `t`, rounded up to a whole second (WeChat's times have no fractions).
pub(super) fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    if floor < t {
        floor + chrono::Duration::seconds(1)
    } else {
        floor
    }
}

/// What [`known_without_wechat`] could tell.
enum Standing {
    Known(Prepared),
    /// WeChat must be asked for a prepay: the order, handed back.
    AskWechat(Order),
}

/// The code_url of an order that is ready to pay.
fn code_url(order: &Order) -> Result<String, CheckoutError> {
    order
        .prepay
        .as_ref()
        .map(|p| p.code_url.clone())
        .ok_or_else(|| CheckoutError::NotSettled {
            why: "no prepay stored",
            retry: order.out_trade_no.clone(),
        })
}
