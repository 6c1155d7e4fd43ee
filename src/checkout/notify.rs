//! WeChat Pay's payment notify, checked in this order: strict XML → return_code → signature with
//! the algorithm recorded for the order (the sign's length for an unknown one) → appid and
//! mch_id → the order exists → well-formed payment fields → durable record. Nothing is trusted
//! before the signature; a refusal changes nothing. A payment of another amount or currency is
//! recorded as WeChat reported it (the money was taken) and marked due back when applied. (The
//! body's size is bounded before it gets here.)

use super::confirm::{payment_event, Reported};
use super::health::NotifyKind;
use super::{Checkout, CheckoutError, NotifyRefusal};
use crate::domain::{Fen, OutTradeNo};
use crate::store::{Attempt, Order, PaymentEvent, PaymentResult, PaymentSource};
use crate::wxpay::notify::{self, NotifyError};
use crate::wxpay::types::ResultCode;
use crate::wxpay::SignType;

/// Refused notifies logged per second at most; the rest are counted only (`notify_total`).
const REFUSAL_LOGS_PER_SECOND: u32 = 10;

static REFUSAL_LOGS: LogBudget = LogBudget::new(REFUSAL_LOGS_PER_SECOND);

/// At most `per_second` log lines a second, across threads.
struct LogBudget {
    per_second: u32,
    /// The current second (Unix) and the lines logged in it, packed: second << 32 | count.
    state: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    const fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            state: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        use std::sync::atomic::Ordering;
        let second = chrono::Utc::now().timestamp() as u64 & 0xffff_ffff;
        let mut allowed = false;
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |state| {
                let (at, count) = (state >> 32, state & 0xffff_ffff);
                let count = if at == second { count } else { 0 };
                allowed = count < u64::from(self.per_second);
                Some(second << 32 | (count + 1).min(u64::from(u32::MAX)))
            });
        allowed
    }
}

/// Whether `no` has the shape of a payment attempt's number (see `PayWay::attempt_no`).
fn is_attempt_no(no: &OutTradeNo) -> bool {
    no.as_str().len() > 1 && matches!(no.as_str().as_bytes().last(), Some(b'H' | b'J'))
}

/// The order a verified notify pays, and the attempt's number when it was an attempt's (H5,
/// JSAPI): the number the notify names must be the order's or that attempt's.
pub(super) fn paid_order(
    order: Option<Order>,
    attempt: Option<Attempt>,
    named: &str,
) -> Result<(Order, Option<OutTradeNo>), CheckoutError> {
    let unknown = || CheckoutError::notify(NotifyRefusal::UnknownOrder, named);
    let order = order.ok_or_else(unknown)?;
    let wechat_no = attempt
        .filter(|a| a.attempt_no.as_str() == named)
        .map(|a| a.attempt_no);
    if wechat_no.is_none() && named != order.out_trade_no.as_str() {
        return Err(unknown());
    }
    Ok((order, wechat_no))
}

/// A notify recorded durably: answer WeChat SUCCESS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyReceipt {
    /// False for a payment recorded before (a duplicate notify).
    pub new: bool,
    /// The order it paid (or failed).
    pub out_trade_no: OutTradeNo,
}

impl Checkout {
    /// Verifies a notify and records its payment in the inbox before answering; the consumer
    /// applies it. A refusal is logged and counted here (`notify_total` by reason).
    pub async fn receive_notify(&self, body: &[u8]) -> Result<NotifyReceipt, CheckoutError> {
        let result = self.record_notify(body).await;
        self.account_payment_notify(&result);
        result
    }

    /// Logs, counts and notes (the notify log) how a payment notify of either protocol went.
    pub(super) fn account_payment_notify(&self, result: &Result<NotifyReceipt, CheckoutError>) {
        let outcome = match result {
            Ok(receipt) => {
                let outcome = if receipt.new { "accepted" } else { "duplicate" };
                self.note_notify(
                    NotifyKind::Payment,
                    outcome,
                    None,
                    Some(receipt.out_trade_no.as_str()),
                );
                outcome
            }
            Err(CheckoutError::NotifyRefused { refusal, detail }) => {
                // Refusals are what a flood of forgeries produces: logged within a budget,
                // always counted.
                if REFUSAL_LOGS.allow() {
                    tracing::warn!(reason = refusal.reason(), %detail, "payment notify refused");
                }
                self.note_notify(NotifyKind::Payment, "refused", Some(refusal.reason()), None);
                refusal.reason()
            }
            Err(e) => {
                tracing::warn!(error = %e, "payment notify not recorded");
                let reason = "temporarily unavailable";
                self.note_notify(NotifyKind::Payment, "refused", Some(reason), None);
                reason
            }
        };
        metrics::counter!("notify_total", "outcome" => outcome).increment(1);
    }

    /// The order a notify's number names — directly, or through a payment attempt (H5, JSAPI)
    /// — and the attempt. Only an attempt's shape is looked for (an order's number and a
    /// letter): a flood of made-up numbers costs a lookup each (two ending in H or J).
    pub(super) async fn notified_order(
        &self,
        claimed: Option<&OutTradeNo>,
    ) -> Result<(Option<Order>, Option<Attempt>), CheckoutError> {
        Ok(match claimed {
            Some(no) => match self.store().order(no).await? {
                Some(order) => (Some(order), None),
                None if is_attempt_no(no) => match self.store().attempt(no).await? {
                    Some(attempt) => (self.store().order(&attempt.order_no).await?, Some(attempt)),
                    None => (None, None),
                },
                None => (None, None),
            },
            None => (None, None),
        })
    }

    /// Records a verified notify's payment in the inbox (the consumer applies it).
    pub(super) async fn record_notified(
        &self,
        event: PaymentEvent,
    ) -> Result<NotifyReceipt, CheckoutError> {
        let recorded = self.inner.payments.confirm(&event).await?;
        tracing::info!(
            out_trade_no = %event.out_trade_no,
            duplicate = !recorded.new,
            "payment notify accepted"
        );
        Ok(NotifyReceipt {
            new: recorded.new,
            out_trade_no: event.out_trade_no,
        })
    }

    #[tracing::instrument(name = "notify", skip_all, fields(out_trade_no))]
    async fn record_notify(&self, body: &[u8]) -> Result<NotifyReceipt, CheckoutError> {
        let unverified = notify::parse(body).map_err(|e| match e {
            NotifyError::NotSuccess => CheckoutError::notify(NotifyRefusal::NotSuccess, e),
            e => CheckoutError::notify(NotifyRefusal::InvalidXml, e),
        })?;
        // The claimed order number only chooses the algorithm to verify with.
        let claimed = unverified
            .claimed_out_trade_no()
            .and_then(|no| OutTradeNo::parse(no).ok());
        if let Some(no) = &claimed {
            tracing::Span::current().record("out_trade_no", no.as_str());
        }
        // The number may be a payment attempt's (H5, JSAPI): its order is the one it pays.
        let (order, attempt) = self.notified_order(claimed.as_ref()).await?;
        let recorded_sign_type = match &attempt {
            Some(attempt) => attempt.prepay.as_ref().map(|p| p.sign_type),
            None => order
                .as_ref()
                .and_then(|o| o.prepay.as_ref().map(|p| p.sign_type)),
        };
        let sign_type = recorded_sign_type
            .or_else(|| unverified.sign_type_by_length())
            .unwrap_or(SignType::Md5);
        // A v3 shop has no v2 key to check a v2 notify with: nothing it says is believed.
        let Some(v2) = self.wechat().v2() else {
            return Err(CheckoutError::notify(
                NotifyRefusal::InvalidSignature,
                "a v2 notify, and this shop speaks API v3",
            ));
        };
        let merchant = &v2.config().merchant;
        let verified = unverified
            .verify(&merchant.key, sign_type)
            .map_err(|e| match e {
                NotifyError::Signature(_) | NotifyError::SignTypeMismatch { .. } => {
                    CheckoutError::notify(NotifyRefusal::InvalidSignature, e)
                }
                e => CheckoutError::notify(NotifyRefusal::InvalidFields, e),
            })?;
        let paid = verified.notify;
        if paid.appid != merchant.appid || paid.mch_id != merchant.mch_id {
            return Err(CheckoutError::notify(
                NotifyRefusal::MerchantMismatch,
                &paid.mch_id,
            ));
        }
        let (order, wechat_no) = paid_order(order, attempt, &paid.out_trade_no)?;
        // An amount or currency other than the order's is recorded all the same (WeChat took
        // that money): applying it marks the money as due back.
        let event = match paid.result_code {
            ResultCode::Success => {
                let (Some(transaction_id), Some(time_end)) = (paid.transaction_id, paid.time_end)
                else {
                    return Err(CheckoutError::notify(
                        NotifyRefusal::InvalidFields,
                        "payment without transaction",
                    ));
                };
                let reported = Reported {
                    transaction_id: &transaction_id,
                    total_fee: paid.total_fee,
                    fee_type: &paid.fee_type,
                    cash_fee: paid.cash_fee,
                    coupon_fee: paid.coupon_fee,
                    time_end: &time_end,
                };
                let mut event = payment_event(&order, &reported, PaymentSource::Notify)
                    .ok_or_else(|| {
                        CheckoutError::notify(
                            NotifyRefusal::InvalidFields,
                            "malformed payment fields",
                        )
                    })?;
                event.wechat_no = wechat_no;
                event
            }
            ResultCode::Fail => {
                if paid.total_fee <= 0 || !(1..=16).contains(&paid.fee_type.len()) {
                    return Err(CheckoutError::notify(
                        NotifyRefusal::InvalidFields,
                        "malformed failure fields",
                    ));
                }
                PaymentEvent {
                    wechat_no,
                    out_trade_no: order.out_trade_no,
                    result: PaymentResult::Failed,
                    total_fee: Fen(paid.total_fee),
                    fee_type: paid.fee_type,
                    cash_fee: None,
                    coupon_fee: None,
                    source: PaymentSource::Notify,
                }
            }
        };
        self.record_notified(event).await
    }
}
