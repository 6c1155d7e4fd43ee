//! WeChat Pay's payment notify, checked in this order: strict XML → return_code → signature with
//! the algorithm recorded for the order (the sign's length for an unknown one) → appid and
//! mch_id → the order exists → amount and currency → durable record. Nothing is trusted before
//! the signature; a refusal changes nothing. (The body's size is bounded before it gets here.)

use super::{Checkout, CheckoutError, NotifyRefusal};
use crate::domain::{Fen, OutTradeNo};
use crate::store::{PaymentEvent, PaymentResult, PaymentSource};
use crate::wxpay::notify::{self, NotifyError};
use crate::wxpay::types::ResultCode;
use crate::wxpay::SignType;

/// A notify recorded durably: answer WeChat SUCCESS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyReceipt {
    /// False for a payment recorded before (a duplicate notify).
    pub new: bool,
}

impl Checkout {
    /// Verifies a notify and records its payment in the inbox before answering; the consumer
    /// applies it. A refusal is logged and counted here (`notify_total` by reason).
    pub async fn receive_notify(&self, body: &[u8]) -> Result<NotifyReceipt, CheckoutError> {
        let result = self.record_notify(body).await;
        let outcome = match &result {
            Ok(receipt) if receipt.new => "accepted",
            Ok(_) => "duplicate",
            Err(CheckoutError::NotifyRefused { refusal, detail }) => {
                tracing::warn!(reason = refusal.reason(), %detail, "payment notify refused");
                refusal.reason()
            }
            Err(e) => {
                tracing::warn!(error = %e, "payment notify not recorded");
                "temporarily unavailable"
            }
        };
        metrics::counter!("notify_total", "outcome" => outcome).increment(1);
        result
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
        let order = match &claimed {
            Some(no) => self.store().order(no).await?,
            None => None,
        };
        let sign_type = order
            .as_ref()
            .and_then(|o| o.prepay.as_ref().map(|p| p.sign_type))
            .or_else(|| unverified.sign_type_by_length())
            .unwrap_or(SignType::Md5);
        let merchant = &self.wechat().config().merchant;
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
        let Some(order) = order else {
            return Err(CheckoutError::notify(
                NotifyRefusal::UnknownOrder,
                &paid.out_trade_no,
            ));
        };
        if paid.total_fee != order.total_fee.0 || paid.fee_type != "CNY" {
            return Err(CheckoutError::notify(
                NotifyRefusal::AmountMismatch,
                format_args!(
                    "{} {} for {}",
                    paid.total_fee, paid.fee_type, order.total_fee.0
                ),
            ));
        }
        let result = match paid.result_code {
            ResultCode::Success => {
                let (Some(transaction_id), Some(time_end)) = (paid.transaction_id, paid.time_end)
                else {
                    return Err(CheckoutError::notify(
                        NotifyRefusal::InvalidFields,
                        "payment without transaction",
                    ));
                };
                let Ok(pay_time) = crate::wxpay::time::parse_beijing(&time_end) else {
                    return Err(CheckoutError::notify(
                        NotifyRefusal::InvalidFields,
                        "time_end",
                    ));
                };
                PaymentResult::Paid {
                    transaction_id,
                    pay_time,
                }
            }
            ResultCode::Fail => PaymentResult::Failed,
        };
        let event = PaymentEvent {
            out_trade_no: order.out_trade_no,
            result,
            total_fee: Fen(paid.total_fee),
            source: PaymentSource::Notify,
        };
        let recorded = self.inner.payments.confirm(&event).await?;
        tracing::info!(
            out_trade_no = %event.out_trade_no,
            duplicate = !recorded.new,
            "payment notify accepted"
        );
        Ok(NotifyReceipt { new: recorded.new })
    }
}
